"""What a sweep asks for: `--grid NAME=V1,V2` options, a sweep.yaml (the same fields as the
API's experiment body) and the options on top of it, made into the body the API takes."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

Scalar = int | float | str | bool
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
INTEGER = re.compile(r"^[+-]?[0-9]+$")


class SpecError(ValueError):
    """A grid option or a sweep file that cannot be read; the message says which."""


def parse_value(text: str) -> Scalar:
    """A number when it reads as one (finite), true/false as booleans, else the string."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if INTEGER.match(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text  # "nan", "inf": names, not numbers


def parse_grid_option(option: str) -> tuple[str, list[Scalar]]:
    """`lr=0.01,0.1` -> ("lr", [0.01, 0.1])."""
    name, sep, values = option.partition("=")
    name = name.strip()
    if not sep or not NAME.match(name):
        raise SpecError(f"--grid {option!r}: expected NAME=V1,V2,... with NAME a parameter "
                        "name (letters, digits, _)")
    parsed = [parse_value(value) for value in values.split(",") if value.strip()]
    if not parsed:
        raise SpecError(f"--grid {option!r}: no values after '='")
    return name, parsed


def parse_grid(options: list[str] | tuple[str, ...]) -> dict[str, list[Scalar]]:
    """Several --grid options in the order given; a name given twice keeps its last values."""
    return dict(parse_grid_option(option) for option in options)


def load_file(path: str | Path) -> dict[str, Any]:
    """A sweep.yaml (or JSON, which is YAML): a mapping of the experiment body's fields."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"cannot read {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of the experiment's fields (grid, "
                        "repeats, search, objective, ...)")
    return data


def _search(search: str | dict[str, Any] | None, runs: int | None,
            seed: int | None, before: Any) -> Any:
    if isinstance(search, dict):
        return search
    merged = dict(before) if isinstance(before, dict) else {}
    if search:
        merged["strategy"] = search
    if runs is not None:
        merged["runs"] = runs
    if seed is not None:
        merged["seed"] = seed
    return merged or before


def experiment_body(body: dict[str, Any] | None = None,
                    grid: dict[str, Any] | None = None, repeats: int | None = None,
                    search: str | dict[str, Any] | None = None, runs: int | None = None,
                    seed: int | None = None, metric: str | None = None,
                    minimize: bool = False, timeout_s: float | None = None,
                    start: bool | None = None) -> dict[str, Any]:
    """The API's experiment body: `body` (a sweep file's fields) with the options on top;
    grid names given add to, or replace, the file's."""
    result = dict(body or {})
    if grid:
        result["grid"] = {**(result.get("grid") or {}), **grid}
    if repeats is not None:
        result["repeats"] = repeats
    chosen = _search(search, runs, seed, result.get("search"))
    if chosen is not None:
        result["search"] = chosen
    if metric or minimize:
        result["objective"] = {"metric": metric or "accuracy",
                               "direction": "minimize" if minimize else "maximize"}
    if timeout_s is not None:
        result["timeout_s"] = timeout_s
    if start is not None:
        result["start"] = start
    return result
