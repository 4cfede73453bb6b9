"""File names as the filesystem gives them: bytes, which Python shows as str with surrogate
escapes (os.fsdecode). A name that is not UTF-8 cannot be stored in a text column or a JSON log
line as it is; these two functions tell it and show it."""

from __future__ import annotations

import os
from pathlib import Path


def is_utf8(name: str | Path) -> bool:
    """Whether a name from os.listdir/os.scandir/Path (surrogate escapes) is valid UTF-8."""
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(name: str | Path) -> str:
    """A name safe for JSON, logs and text columns: bytes that are not UTF-8 become `\\xNN`."""
    text = str(name)
    return text if is_utf8(text) else os.fsencode(text).decode("utf-8", "backslashreplace")
