"""What the commands print: JSON for scripts (`--json`), tables and lines for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])


def console() -> Console:
    """Standard output; wide when it is a pipe, so tables keep their columns whole."""
    terminal = sys.stdout.isatty()
    return Console(highlight=False, width=None if terminal else 200, soft_wrap=not terminal)


def errors() -> Console:
    return Console(stderr=True, highlight=False)


def json_option(command: F) -> F:
    """`--json`: the API's answer as JSON on standard output, nothing else there."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the API's answer as JSON.")(command)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]], title: str | None = None) -> None:
    shown = Table(*columns, title=title, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        shown.add_row(*(number(cell) for cell in row))
    out = console()
    with out.capture() as captured:
        out.print(shown)
    # without the padding rich gives the last column: lines a pipe's reader can split
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def pairs(values: dict[str, Any]) -> None:
    """`key: value` lines, the keys aligned."""
    width = max((len(key) for key in values), default=0)
    for key, value in values.items():
        click.echo(f"{key.ljust(width)}  {number(value)}")
