"""`python -m service [--host H] [--port P]`: serve the API (loopback by default)."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from service.app import create_app
from service.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(create_app(load_settings()), host=args.host, port=args.port,
                access_log_format='%a "%r" %s %b %Tfs')


if __name__ == "__main__":
    main()
