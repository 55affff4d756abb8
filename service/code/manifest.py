"""A code tree's entry points and defaults: `train.py`, `test.py` and `requirements.txt` at its
root, or what an optional root `sweeplab.toml` names instead, with a default grid and objective:

    train = "src/fit.py"
    test = "src/predict.py"
    requirements = "env/requirements.txt"
    metric = "loss"
    minimize = true

    [grid]
    lr = [0.001, 0.01]
    optimizer = ["adam", "sgd"]

The grid and objective are checked here by the sweeps' own rules (names of any kind: the code
is the model's own, so the assignment's i/j/k value rules do not apply).
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.code.tree import tree_path
from service.core.errors import Invalid
from service.sweeps.grid import validate_grid
from service.sweeps.statistics import validate_objective

MANIFEST = "sweeplab.toml"
KEYS = ("train", "test", "requirements", "metric", "minimize", "grid")
MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class EntryPoints:
    train: str
    test: str | None
    requirements: str | None
    defaults: dict[str, Any] | None  # {"grid", "metric", "minimize"}: what the toml gave


def _invalid(message: str, field: str = MANIFEST) -> Invalid:
    return Invalid(f"{MANIFEST}: {message}", field=field)


def _read_toml(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _invalid(f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _invalid("not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise _invalid(str(error)) from None
    unknown = sorted(set(manifest) - set(KEYS))
    if unknown:
        raise _invalid(f"unknown keys {unknown}; allowed: {', '.join(KEYS)}")
    return manifest


def _named(manifest: dict[str, Any], key: str, paths: set[str], script: bool) -> str:
    raw = manifest[key]
    path = tree_path(raw) if isinstance(raw, str) else None
    if path is None:
        raise _invalid(f"{key} must be a path in the tree, like \"src/fit.py\"")
    if script and not path.endswith(".py"):
        raise _invalid(f"{key} = {raw!r} must name a Python file (.py)")
    if path not in paths:
        raise _invalid(f"{key} = {raw!r} names a file the tree does not hold")
    return path


def _entry(manifest: dict[str, Any], key: str, default: str, paths: set[str],
           script: bool) -> str | None:
    if key in manifest:
        return _named(manifest, key, paths, script)
    return default if default in paths else None


def _defaults(manifest: dict[str, Any]) -> dict[str, Any] | None:
    defaults: dict[str, Any] = {}
    if manifest.get("grid"):
        if not isinstance(manifest["grid"], dict):
            raise _invalid("[grid] must be a table of parameter names, each with a list")
        try:  # any size here: the experiment that uses it checks its run count
            defaults["grid"] = validate_grid(manifest["grid"], sys.maxsize, {}, rules={})
        except Invalid as error:
            raise _invalid(f"[grid]: {error.message}") from None
    if "metric" in manifest or "minimize" in manifest:
        minimize = manifest.get("minimize")
        if minimize is not None and not isinstance(minimize, bool):
            raise _invalid("minimize must be true or false")
        objective: dict[str, Any] = {"metric": manifest.get("metric", "accuracy")}
        if minimize is not None:
            objective["direction"] = "minimize" if minimize else "maximize"
        try:
            metric, direction = validate_objective(objective)
        except Invalid as error:
            raise _invalid(error.message.replace("objective.direction", "minimize")) from None
        defaults |= {"metric": metric, "minimize": direction == "minimize"}
    return defaults or None


def entry_points(root: Path, paths: set[str]) -> EntryPoints:
    """The tree's entry points and defaults; 422 naming what is missing or wrong."""
    manifest = _read_toml(root) if MANIFEST in paths else {}
    train = _entry(manifest, "train", "train.py", paths, script=True)
    if train is None:
        raise Invalid(f"the code has no training entry point: put train.py at the tree's "
                      f"root, or name one in {MANIFEST} (train = \"src/fit.py\")", field="train")
    return EntryPoints(train, _entry(manifest, "test", "test.py", paths, script=True),
                       _entry(manifest, "requirements", "requirements.txt", paths,
                              script=False),
                       _defaults(manifest))
