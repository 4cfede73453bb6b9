"""The Maildir-style spool: list `new/`, read files safely, settle them.

A spool file stays in `new/` until its row has committed (then it is unlinked) or it
is judged bad (then it moves to `quarantine/` beside a `<name>.reason.json`). The
daemon never holds the only copy of an event.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from daemon.durable import fsync_dir, replace_file
from daemon.errors import ConfigError, FatalIOError, RefusedInputError
from daemon.fs_names import is_utf8, printable

REASON_SUFFIX = ".reason.json"
DIR_MODE = 0o700
# A planted symlink fails with ELOOP; O_NONBLOCK: opening a planted FIFO returns at once
# instead of waiting for a writer (fstat then refuses it).
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
NOT_REGULAR = "not_a_regular_file"  # quarantine reason: FIFO, socket, device node
UNDECODABLE_NAME = "undecodable_name"  # quarantine reason: a file name that is not UTF-8
TOO_LARGE = "too_large"  # quarantine reason: over max_file_bytes
READ_CHUNK_BYTES = 1 << 20  # read size when the file's size is not known or it grew


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A file seen in `new/` by the last scan."""

    name: str  # os.fsdecode of the bytes: a non-UTF-8 name holds lone surrogates
    size: int
    mtime_ns: int
    mode: int = stat.S_IFREG  # lstat's st_mode: the file type decides before any open

    @property
    def regular(self) -> bool:
        """A regular file or a symlink (the read refuses a symlink with ELOOP)."""
        return stat.S_ISREG(self.mode) or stat.S_ISLNK(self.mode)

    @property
    def decodable(self) -> bool:
        """The name is UTF-8 (it can become an event_uid, a text column)."""
        return is_utf8(self.name)


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits in `new/`."""

    files: int
    bytes: int
    oldest_age_s: float | None


class Spool:
    """One spool directory with `tmp/`, `new/` and `quarantine/` on one filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.new = root / "new"
        self.quarantine = root / "quarantine"
        self.originals = root / "originals"  # untruncated files whose rows had a field capped
        self._dir_fd: int | None = None

    def ensure(self) -> None:
        """Create the directories (0700) and check they share one filesystem."""
        try:
            for sub in (self.root, self.tmp, self.new, self.quarantine, self.originals):
                sub.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"spool {self.root}: cannot create ({exc.strerror}); set SESSION_DB_SPOOL to a writable directory"
            ) from exc
        for sub in (self.root, self.tmp, self.new, self.quarantine, self.originals):
            st = os.stat(sub)
            if st.st_uid != os.getuid():
                raise ConfigError(
                    f"spool {sub} belongs to uid {st.st_uid}, not to this user ({os.getuid()}): "
                    f"another user could plant events; fix: chown -R {os.getuid()} {self.root}"
                )
            if st.st_mode & 0o022:
                raise ConfigError(
                    f"spool {sub} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o}): "
                    f"another user could plant events; fix: chmod -R go-w {self.root}"
                )
        devices = {os.stat(p).st_dev for p in (self.tmp, self.new, self.quarantine)}
        if len(devices) != 1:
            raise ConfigError(
                f"spool {self.root}: tmp/, new/ and quarantine/ must be on one filesystem "
                "(rename across mounts is not atomic)"
            )
        for sub in (self.new, self.quarantine, self.originals):
            if not os.access(sub, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"spool {sub}: not writable by this user (mode {stat.S_IMODE(os.stat(sub).st_mode):o}); "
                    f"fix: chmod u+rwx {sub}"
                )

    def scan(self) -> list[SpoolEntry]:
        """Every regular-looking file in `new/`, oldest name first (names start with the time)."""
        entries: list[SpoolEntry] = []
        self._reset_new_fd()
        try:
            it = os.scandir(self.new)
        except FileNotFoundError:
            return entries
        with it:
            for de in it:
                if de.name.startswith("."):
                    continue
                try:
                    st = de.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # settled by another daemon meanwhile
                if stat.S_ISDIR(st.st_mode):
                    continue  # not an event; left alone
                entries.append(SpoolEntry(de.name, st.st_size, st.st_mtime_ns, st.st_mode))
        entries.sort(key=lambda e: e.name)
        return entries

    def backlog(self) -> Backlog:
        entries = self.scan()
        if not entries:
            return Backlog(0, 0, None)
        oldest = min(e.mtime_ns for e in entries)
        return Backlog(
            len(entries), sum(e.size for e in entries), max(0.0, time.time() - oldest / 1e9)
        )

    def read(self, name: str, size_hint: int = 0, limit: int = 2**62) -> bytes:
        """The file's bytes, never following a symlink (raises OSError, ELOOP for a link).

        Opened non-blocking and checked with fstat, so a FIFO or device planted (or swapped in
        after the scan) raises RefusedInputError(not_a_regular_file) instead of hanging or
        reading without end; more than `limit` bytes raise RefusedInputError(too_large).
        """
        fd = os.open(name, READ_FLAGS, dir_fd=self._new_fd())
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RefusedInputError(NOT_REGULAR, f"file type {file_type(st.st_mode)}; not read")
            want = min(size_hint + 1 if size_hint else READ_CHUNK_BYTES, limit + 1)
            data = os.read(fd, want)
            if size_hint and len(data) <= size_hint:
                return data  # one read covered the whole file (it did not grow)
            chunks = [data]
            total = len(data)
            while data and total <= limit:
                data = os.read(fd, min(READ_CHUNK_BYTES, limit + 1 - total))
                chunks.append(data)
                total += len(data)
            if total > limit:
                raise RefusedInputError(TOO_LARGE, f"over max_file_bytes={limit} while reading")
            return b"".join(chunks)
        finally:
            os.close(fd)

    def remove(self, names: list[str]) -> int:
        """Unlink settled files (only ever called after COMMIT). Returns how many we removed."""
        removed = 0
        try:
            dir_fd = self._new_fd()
        except FileNotFoundError:
            return 0  # new/ itself is gone, and with it the files
        for name in names:
            try:
                os.unlink(name, dir_fd=dir_fd)
                removed += 1
            except FileNotFoundError:
                pass  # another daemon settled it
        return removed

    def _new_fd(self) -> int:
        """A descriptor of `new/`, opened by the last scan (names resolve without path joins)."""
        if self._dir_fd is None:
            self._dir_fd = os.open(self.new, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._dir_fd

    def _reset_new_fd(self) -> None:
        """Forget the descriptor: `new/` may have been removed and created again since."""
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def quarantine_file(self, name: str, reason: str, detail: str, **extra: object) -> bool:
        """Move `new/<name>` to `quarantine/` beside a reason sidecar. False if it was gone.

        The sidecar is written (and fsynced) first, so a kill between the two steps
        leaves the file in `new/` to be judged again, never a reason-less quarantine.
        Any OSError here is fatal: our own durable state could not be written.
        """
        src = self.new / name
        if not os.path.lexists(src):
            return False
        record = {
            "name": printable(name),
            "reason": reason,
            "detail": detail,
            "quarantined_at": time.time(),
            **extra,
        }
        try:
            replace_file(
                self.quarantine / (name + REASON_SUFFIX),
                orjson.dumps(record, option=orjson.OPT_INDENT_2),
            )
            try:
                os.rename(src, self.quarantine / name)
            except FileNotFoundError:
                os.unlink(self.quarantine / (name + REASON_SUFFIX))
                return False
            fsync_dir(self.quarantine)
        except OSError as exc:
            raise FatalIOError(f"cannot quarantine {src}: {exc}") from exc
        return True

    def keep_original(self, name: str) -> bool:
        """Hard-link `new/<name>` into `originals/` (same filesystem: no copy) before its row commits.

        A repeat after a crash finds the link already there. False if `new/<name>` has vanished:
        another daemon settled it (its row committed, so it kept the original first). Any other
        failure is fatal: the row would hold a truncated payload and the promise is that the
        original is not dropped.
        """
        try:
            os.link(self.new / name, self.originals / name)
            fsync_dir(self.originals)
        except FileExistsError:
            pass
        except FileNotFoundError:
            if not os.path.lexists(self.new / name):
                return False
            raise FatalIOError(
                f"cannot keep the original of {self.new / name}: originals/ is gone"
            ) from None
        except OSError as exc:
            raise FatalIOError(
                f"cannot keep the original of {self.new / name} in {self.originals}: {exc}"
            ) from exc
        return True

    def quarantined(self) -> Iterator[str]:
        """Names of quarantined event files (not their sidecars)."""
        try:
            names = os.listdir(self.quarantine)
        except FileNotFoundError:
            return
        for n in sorted(names):
            if not n.endswith(REASON_SUFFIX) and not n.startswith("."):
                yield n

    def orphans(self, ttl_s: float) -> list[str]:
        """Files in `tmp/` older than `ttl_s` (left by a hook killed before its rename)."""
        now = time.time()
        out = []
        try:
            with os.scandir(self.tmp) as it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if abs(now - st.st_mtime) > ttl_s:  # a future mtime (clock set back) counts too
                        out.append(de.name)
        except FileNotFoundError:
            pass
        return out

    def settle_orphan(self, name: str) -> str:
        """Remove an orphan whose event already reached `new/`, else quarantine it."""
        src = self.tmp / name
        if (self.new / name).exists() or (self.quarantine / name).exists():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src)
            return "removed"
        record = {
            "name": name,
            "reason": "orphan_tmp",
            "detail": "left in tmp/ by a hook that did not finish",
            "quarantined_at": time.time(),
        }
        sidecar = self.quarantine / (name + REASON_SUFFIX)
        try:
            replace_file(sidecar, orjson.dumps(record, option=orjson.OPT_INDENT_2))
            try:
                os.rename(src, self.quarantine / name)
            except FileNotFoundError:
                os.unlink(sidecar)
                return "gone"
            fsync_dir(self.quarantine)
        except OSError as exc:
            raise FatalIOError(f"cannot quarantine orphan {src}: {exc}") from exc
        return "quarantined"




def file_type(mode: int) -> str:
    """A word for the file type of an st_mode (for reasons and logs)."""
    for test, word in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character_device"),
        (stat.S_ISBLK, "block_device"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISREG, "regular"),
    ):
        if test(mode):
            return word
    return f"mode_{stat.S_IFMT(mode):o}"
