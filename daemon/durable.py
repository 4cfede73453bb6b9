"""Atomic, durable file replacement: the one way session-db writes a file that must survive a
crash whole or not at all (settings files, unit files, quarantine records, cluster metadata).

Steps: a uniquely named temporary file in the same directory (so the rename cannot cross a
filesystem), write everything, fchmod, fsync, rename over the target, fsync the directory (so
the rename itself is on disk). A crash at any point leaves the old file or the new one, never a
mix; the temporary file is removed on error.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

DEFAULT_FILE_MODE = 0o600  # private unless the caller says otherwise


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside `path` durable (a no-op where the filesystem cannot)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, mode: int = DEFAULT_FILE_MODE) -> None:
    """Replace `path` with `data` atomically and durably, with permission bits `mode`."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
