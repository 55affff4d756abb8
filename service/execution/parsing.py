"""Reading what a script printed: a training run's metrics, a prediction's dict.

Scripts print what they print; a metric (the accuracy, or any key an experiment's objective
names) is taken from the last line of standard output that carries it. Understood: a Python
dict literal (read with `ast.literal_eval`, never `eval`), a JSON object, and `accuracy: 0.93`,
`accuracy=0.93`, `Accuracy = 93.1%` (a percentage becomes 0.931).
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def _key_value(key: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.]){re.escape(key)}\b\s*[:=]\s*['\"]?{_NUMBER}\s*(%?)",
                      re.IGNORECASE)


def parse_dict_line(line: str) -> dict[str, Any] | None:
    """The line read as a dict (Python literal or JSON), or None."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    for reader in (ast.literal_eval, json.loads):
        try:
            value = reader(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _as_fraction(value: Any, percent: bool = False) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        percent = percent or text.endswith("%")
        try:
            value = float(text.rstrip("%"))
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    number = float(value)
    return number / 100 if percent else number


def _metric_in_dict(found: dict[str, Any], key: str) -> float | None:
    for name, value in found.items():
        if isinstance(name, str) and name.strip().lower() == key.lower():
            return _as_fraction(value)
    return None


def metric_in_line(line: str, key: str = "accuracy") -> float | None:
    """The number `key` has on this line (dict, JSON or `key: value`), or None."""
    found = parse_dict_line(line)
    if found is not None:
        return _metric_in_dict(found, key)
    match = _key_value(key).search(line)
    if match is None:
        return None
    return _as_fraction(match.group(1), percent=bool(match.group(2)))


def find_metric(stdout: str, key: str = "accuracy") -> float | None:
    """The value of `key` on the last line of `stdout` that carries one, or None."""
    for line in reversed(stdout.splitlines()):
        value = metric_in_line(line, key)
        if value is not None:
            return value
    return None


def last_line_dict(stdout: str) -> dict[str, Any]:
    """The last non-empty line of `stdout` read as a dict, else `{}`."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    return parse_dict_line(lines[-1]) or {}
