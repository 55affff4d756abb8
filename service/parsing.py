"""Reading what a script printed: the accuracy of a training run, the dict of a prediction.

Scripts print what they print; the accuracy is taken from the last line of standard output that
carries one. Understood: a Python dict literal (read with `ast.literal_eval`, never `eval`), a JSON
object, and `accuracy: 0.93`, `accuracy=0.93`, `Accuracy = 93.1%` (a percentage becomes 0.931).
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

_KEY_VALUE = re.compile(
    r"\baccuracy\b\s*[:=]\s*['\"]?([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)",
    re.IGNORECASE,
)


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


def _accuracy_in_dict(found: dict[str, Any]) -> float | None:
    for key, value in found.items():
        if isinstance(key, str) and key.strip().lower() == "accuracy":
            return _as_fraction(value)
    return None


def accuracy_in_line(line: str) -> float | None:
    found = parse_dict_line(line)
    if found is not None:
        return _accuracy_in_dict(found)
    match = _KEY_VALUE.search(line)
    if match is None:
        return None
    return _as_fraction(match.group(1), percent=bool(match.group(2)))


def find_accuracy(stdout: str) -> float | None:
    """The accuracy on the last line of `stdout` that carries one, or None."""
    for line in reversed(stdout.splitlines()):
        accuracy = accuracy_in_line(line)
        if accuracy is not None:
            return accuracy
    return None


def last_line_dict(stdout: str) -> dict[str, Any]:
    """The last non-empty line of `stdout` read as a dict, else `{}`."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    return parse_dict_line(lines[-1]) or {}
