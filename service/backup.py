"""`python -m service.backup create|restore …`, the documented command: the backup itself is
service/ops/backup.py."""

from service.ops.backup import main

if __name__ == "__main__":
    raise SystemExit(main())
