"""The `sweeplab` command: the group, its errors as one line and an exit code (0 done, 1 a
failed sweep or run, 2 usage or connection errors), and `login`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from sweeplab_client import __version__
from sweeplab_client.cli_support import State
from sweeplab_client.client import Client
from sweeplab_client.config import ConfigError, config_path, save_profile
from sweeplab_client.output import emit_json, errors, json_option
from sweeplab_client.session import ApiError, ConnectionFailed
from sweeplab_client.sweepspec import SpecError

USAGE_ERROR = 2
INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--profile", envvar="SWEEPLAB_PROFILE", help="A server saved by `login`.")
@click.option("--url", envvar="SWEEPLAB_URL", help="The server (default: the profile's).")
@click.version_option(__version__, prog_name="sweeplab")
@click.pass_context
def cli(context: click.Context, profile: str | None, url: str | None) -> None:
    """sweeplab from your terminal: models, uploads, sweeps you can watch, predictions.

    The server and token come from SWEEPLAB_URL and SWEEPLAB_TOKEN, or from `sweeplab login`.
    """
    # a profile chosen by name wins over SWEEPLAB_URL (config.resolve)
    context.obj = State(profile, None if profile else url)


def _read_token() -> str:
    if sys.stdin.isatty():
        return str(click.prompt("Token", hide_input=True, default="", show_default=False))
    return sys.stdin.readline().strip()  # piped: `echo $TOKEN | sweeplab login URL`


@cli.command()
@click.argument("url")
@json_option
@click.pass_obj
def login(state: State, url: str, as_json: bool) -> int:
    """Check a token against URL and save both as the profile (default: `default`).

    The token is asked for without echo, or read from standard input when it is not a
    terminal. It is stored in the user's config folder, readable by the user only."""
    token = _read_token()
    with Client(url=url, token=token) as client:
        client.document  # noqa: B018 (under /api: a wrong token is a 401 here)
    name = state.profile or "default"
    path = save_profile(name, url, token)
    if as_json:
        emit_json({"profile": name, "url": url.rstrip("/"), "config": str(path)})
    else:
        click.echo(f"logged in to {url.rstrip('/')} as profile {name!r}; saved in {path}")
    return 0


def _fail(message: str) -> int:
    errors().print(f"sweeplab: {message}", soft_wrap=True, markup=False)
    return USAGE_ERROR


def _api_error(error: ApiError) -> int:
    if error.status == 401:
        return _fail(f"the server refused the token (401): run `sweeplab login URL` again or "
                     f"set SWEEPLAB_TOKEN ({config_path()})")
    where = f" [{error.field}]" if error.field else ""
    return _fail(f"{error.message}{where} ({error.status} {error.code})")


def run(argv: Sequence[str] | None = None) -> int:
    """The exit code of one command line: each error is one line on standard error."""
    try:
        result: Any = cli.main(args=list(argv) if argv is not None else None,
                               prog_name="sweeplab", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        errors().print("sweeplab: interrupted")
        return INTERRUPTED
    except click.ClickException as error:
        error.show()
        return USAGE_ERROR
    except ApiError as error:
        return _api_error(error)
    except (ConnectionFailed, ConfigError, SpecError) as error:
        return _fail(str(error))
    except OSError as error:  # a file to upload or predict that cannot be read
        return _fail(f"{error.strerror or error}: {error.filename}" if error.filename
                     else str(error))
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


def _register() -> None:
    from sweeplab_client import cli_models, cli_sweeps

    for module in (cli_models, cli_sweeps):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
