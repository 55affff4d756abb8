"""`python -m service [--host H] [--port P]`: serve the API (loopback by default)."""

from __future__ import annotations

import argparse
import ipaddress
import logging

from aiohttp import web

from service.app import create_app
from service.execution.sandbox import SandboxUnavailable, check_sandbox
from service.settings import load_settings
from service.web.accesslog import run_app_options


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--private-network", action="store_true",
                        help="allow a non-loopback address without SWEEPLAB_API_TOKEN")
    args = parser.parse_args()
    settings = load_settings()
    if not is_loopback(args.host) and not settings.api_token and not args.private_network:
        parser.error(f"refusing to listen on {args.host} without SWEEPLAB_API_TOKEN; set a "
                     f"token, or pass --private-network if only trusted hosts can reach it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)  # a dozen lines per connection
    try:  # the API starts prediction scripts
        check_sandbox(settings.sandbox, settings.script_network)
    except SandboxUnavailable as error:
        raise SystemExit(f"python -m service: {error}") from None
    web.run_app(create_app(settings), host=args.host, port=args.port,
                **run_app_options(settings.access_log))


if __name__ == "__main__":
    main()
