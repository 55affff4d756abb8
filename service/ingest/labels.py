"""Labels name folders in a snapshot, so they are checked like untrusted path parts."""

from __future__ import annotations

import unicodedata

MAX_LABEL_LENGTH = 100


class LabelError(ValueError):
    """Not a usable label; the message says why."""


def check_label(raw: str) -> str:
    label = raw.strip()
    if not label:
        raise LabelError("a label must not be empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise LabelError(f"a label has at most {MAX_LABEL_LENGTH} characters")
    if "/" in label or "\\" in label or label in (".", ".."):
        raise LabelError(f"label {label!r} must not contain / or \\ or be . or ..")
    if label.startswith(".") or has_control_characters(label):
        raise LabelError(f"label {label!r} must not start with . or hold control characters")
    return label


def has_control_characters(text: str) -> bool:
    """NUL, newlines, tabs, escapes, DEL and the C1 controls: never part of a name."""
    return any(unicodedata.category(char) == "Cc" for char in text)
