"""The client's wheel, served by the service it matches (`pip install http://HOST/client/
sweeplab_client-VERSION-py3-none-any.whl`), so a laptop's client always matches its server.
scripts/setup.sh builds it into client/dist/; its version is client/pyproject.toml's.

Not under /api and open without the token: it is the client's code, which holds no secret,
and pip sends no bearer token."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from aiohttp import web

from service.core.errors import NotFound

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
WHEEL_DIR = CLIENT_DIR / "dist"
BUILD_HINT = ("build it on the server: scripts/setup.sh, or .venv/bin/pip wheel --no-deps "
              "-w client/dist ./client")


@cache
def client_version() -> str | None:
    """client/pyproject.toml's version; None where the client's sources are absent."""
    try:
        project = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    version = project.get("project", {}).get("version")
    return version if isinstance(version, str) else None


def wheel_name() -> str | None:
    version = client_version()
    return f"sweeplab_client-{version}-py3-none-any.whl" if version else None


def install_line(request: web.Request) -> str | None:
    """`pip install <this server's wheel URL>`, as the request reached us; None while the
    wheel is not built."""
    name = wheel_name()
    if name is None or not (WHEEL_DIR / name).is_file():
        return None
    return f"pip install {request.url.origin()}/client/{name}"


def _wheel_path() -> Path:
    name = wheel_name()
    if name is None:
        raise NotFound("this server has no client sources (client/pyproject.toml)")
    path = WHEEL_DIR / name
    if not path.is_file():
        raise NotFound(f"the client's wheel {name} is not built: {BUILD_HINT}")
    return path


async def index(request: web.Request) -> web.Response:
    """The current wheel: its version, URL and install line."""
    path = _wheel_path()
    return web.json_response({"version": client_version(), "wheel": f"/client/{path.name}",
                              "install": install_line(request)})


async def wheel(request: web.Request) -> web.FileResponse:
    path = _wheel_path()
    if request.match_info["name"] != path.name:
        raise NotFound(f"no such wheel; this server's client is /client/{path.name}")
    return web.FileResponse(path, headers={"Content-Type": "application/zip"})
