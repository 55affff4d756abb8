"""`python -m sweeplab_client`: the `sweeplab` command."""

from sweeplab_client.cli import main

main()
