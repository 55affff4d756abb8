"""Where the client finds its server and token: the arguments, a profile saved by `sweeplab
login` in the user's config folder (a file only its owner reads: mode 0600), or the
environment's SWEEPLAB_URL and SWEEPLAB_TOKEN."""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    """No server to talk to, or a config file that cannot be read."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    profile: str | None  # the profile it came from; None when from the environment


def config_dir() -> Path:
    """The user's config folder for sweeplab, as each platform names it."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "sweeplab"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sweeplab"


def config_path() -> Path:
    return config_dir() / "config.ini"


def _read() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    path = config_path()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    return parser


def save_profile(name: str, url: str, token: str) -> Path:
    """Store `url` and `token` as profile `name`, the file readable by its owner only."""
    parser = _read()
    parser[name] = {"url": url.rstrip("/"), "token": token}
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # created 0600 before anything is written; an older file made otherwise is narrowed too
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


def profiles() -> dict[str, str]:
    """Profile name -> its server URL."""
    parser = _read()
    return {name: parser[name].get("url", "") for name in parser.sections()}


def resolve(url: str | None = None, token: str | None = None,
            profile: str | None = None) -> Target:
    """The server and token to use. A profile named (argument or SWEEPLAB_PROFILE) wins over
    the environment's URL and token; without one, the environment wins over the default
    profile."""
    named = profile or os.environ.get("SWEEPLAB_PROFILE")
    env_url, env_token = os.environ.get("SWEEPLAB_URL"), os.environ.get("SWEEPLAB_TOKEN")
    if url:
        return Target(url.rstrip("/"), token if token is not None else env_token, None)
    parser = _read()
    if named and not parser.has_section(named):
        raise ConfigError(f"no profile {named!r} in {config_path()}: "
                          f"run `sweeplab login URL --profile {named}`")
    if not named and env_url:
        return Target(env_url.rstrip("/"), token if token is not None else env_token, None)
    section = named or DEFAULT_PROFILE
    if parser.has_section(section) and parser[section].get("url"):
        saved = parser[section]
        return Target(saved["url"].rstrip("/"), token or saved.get("token") or None, section)
    raise ConfigError("no server given: run `sweeplab login URL` or set SWEEPLAB_URL "
                      "(and SWEEPLAB_TOKEN)")
