"""Reading the fields of a transcript line: values Claude Code writes loosely typed."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def positive_int(value: Any) -> int:
    """A token count: a positive int, else 0 (missing, negative, a bool or another type)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def nonempty_str(value: Any) -> str | None:
    """A string field, or None when it is missing, empty or not a string."""
    return value if isinstance(value, str) and value else None


def entry_time(value: Any) -> datetime | None:
    """A transcript timestamp (ISO 8601, `Z` for UTC) as a datetime; None when absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
