"""Reading and parsing spool files, in this process or in worker processes on the other cores.

Reading, parsing and redacting are independent per file, so a large batch is cut into chunks
that worker processes handle in parallel while the daemon's own process commits the previous
batch; the results come back in spool order. The workers only read: every decision about a
file (quarantine, defer, unlink after COMMIT) stays in the daemon's process (daemon.ingest), so
a worker that dies loses nothing. The batch's files are still in `new/`; the pool is rebuilt
and the batch examined again, at most `POOL_ATTEMPTS` times, then in this process.

Fork safety: the daemon runs threads (the watcher, the database writer), so workers are started
by multiprocessing's `forkserver`, a single-threaded process, never forked from the daemon.
No worker outlives the daemon, even after `kill -9`: each worker holds a pidfd of the daemon and
a thread blocked on it exits the worker when the daemon is gone (the fork server then exits too:
it waits for every holder of its pipe, the workers included, to be gone).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import structlog

from daemon.errors import RefusedInputError
from daemon.events import BadEvent, Event, parse
from daemon.pause_points import PausePoints
from daemon.redaction import Redactor
from daemon.spool import Spool, SpoolEntry

log = structlog.get_logger("session_db.ingest")

# A batch with fewer files to read than this is examined in this process: the hand-off to the
# workers costs more than it saves, and an idle or trickling daemon never starts them.
POOL_MIN_FILES = 256
POOL_CHUNKS_PER_WORKER = 4  # chunks per worker and batch: a slow chunk delays the batch less
POOL_ATTEMPTS = 3  # pools tried per batch (a worker died) before the batch is read in-process
POOL_POLL_S = 1.0  # while waiting for the workers, the caller's tick runs at least this often
START_METHOD = "forkserver"  # never fork the threaded daemon itself
PAUSE_POINT = "in_parse_worker"  # SESSION_DB_TEST_PAUSE: a worker stops at its first chunk

# What examining one file gives: the event, or why there is none.
GONE = "gone"  # the file vanished (another daemon settled it)
REFUSED = "refused"  # RefusedInputError: (reason, detail)
OS_ERROR = "os_error"  # OSError while reading: (errno, message)
BAD = "bad"  # BadEvent: (reason, detail, retryable)
FileOutcome = Event | tuple[str, tuple[Any, ...]]
_EVENT_FIELDS = tuple(f.name for f in fields(Event))
EVENT_TUPLE_LEN = len(_EVENT_FIELDS)  # an event travels as a tuple this long, (kind, details) as 2


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What parsing a file needs besides its bytes; sent once to every worker."""

    host: str
    field_cap_bytes: int
    max_file_bytes: int
    redactor: dict[str, Any] | None  # Redactor.options, or None: no redaction


def examine(
    spool: Spool, entry: SpoolEntry, options: ParseOptions, redactor: Redactor | None
) -> FileOutcome:
    """Read and parse one file; an Event, or (kind, details) saying why there is none."""
    try:
        data = spool.read(entry.name, entry.size, options.max_file_bytes)
    except FileNotFoundError:
        return GONE, ()
    except RefusedInputError as exc:
        return REFUSED, (exc.reason, exc.detail)
    except OSError as exc:
        return OS_ERROR, (exc.errno, str(exc))
    try:
        return parse(
            entry.name,
            data,
            default_host=options.host,
            mtime_ns=entry.mtime_ns,
            field_cap_bytes=options.field_cap_bytes,
            redactor=redactor,
        )
    except BadEvent as bad:
        return BAD, (bad.reason, bad.detail, bad.retryable)


# --- the worker side ---------------------------------------------------------------------

_worker: tuple[Spool, ParseOptions, Redactor | None, Path | None] | None = None


def _exit_with(daemon_pid: int) -> None:
    """Worker thread: block on a pidfd of the daemon; exit the worker when the daemon is gone."""
    try:
        fd = os.pidfd_open(daemon_pid)
    except ProcessLookupError:
        os._exit(0)
    select.select([fd], [], [])
    os._exit(0)


def _start_worker(
    root: Path, options: ParseOptions, pause_dir: Path | None, daemon_pid: int
) -> None:
    """Worker initializer: exit with the daemon; ignore SIGINT and SIGTERM, which a terminal or
    systemd sends to the whole group (the daemon stops its workers when it stops); build the
    spool reader and the redactor once."""
    threading.Thread(target=_exit_with, args=(daemon_pid,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    redactor = Redactor(**options.redactor) if options.redactor is not None else None
    global _worker  # noqa: PLW0603 - one worker's state, set once by its initializer
    _worker = (Spool(root), options, redactor, pause_dir)


def _examine_chunk(entries: list[SpoolEntry]) -> list[FileOutcome | tuple[Any, ...]]:
    """In a worker: examine a chunk; events travel as plain tuples (cheaper to pickle)."""
    assert _worker is not None
    spool, options, redactor, pause_dir = _worker
    if pause_dir is not None:
        _maybe_pause(pause_dir)
    out: list[FileOutcome | tuple[Any, ...]] = []
    for entry in entries:
        got = examine(spool, entry, options, redactor)
        if isinstance(got, Event):
            out.append(tuple(getattr(got, name) for name in _EVENT_FIELDS))
        else:
            out.append(got)
    return out


def _maybe_pause(pause_dir: Path) -> None:
    """Crash tests: the first worker to get a chunk announces its pid and waits to be killed;
    the marker stays, so the workers of the next pool carry on."""
    marker = pause_dir / f"paused-{PAUSE_POINT}"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    while True:
        time.sleep(3600)


# --- the daemon side -----------------------------------------------------------------------


@dataclass(slots=True)
class Submitted:
    """A batch handed to the workers: its files and the futures of its chunks (None: the pool
    was broken when it was submitted)."""

    entries: Sequence[SpoolEntry]
    futures: list[Future[list[Any]]] | None


class ParsePool:
    """Worker processes that read and parse the files of large batches, results in order."""

    def __init__(
        self, spool: Spool, options: ParseOptions, workers: int, pause_dir: Path | None = None
    ) -> None:
        self.spool = spool
        self.options = options
        self.workers = workers
        paused = PausePoints(pause_dir).chosen == PAUSE_POINT
        self._pause_dir = pause_dir if paused else None
        self._executor: ProcessPoolExecutor | None = None
        self.lost = 0  # pools that broke because a worker died

    def submit(self, entries: Sequence[SpoolEntry]) -> Submitted:
        """Hand a batch's files to the workers now; `collect` gets the outcomes later, so the
        workers read the next batch while this process commits and unlinks the last one."""
        try:
            return Submitted(entries, self._submit(entries))
        except BrokenProcessPool:
            return Submitted(entries, None)  # collect() rebuilds the pool and tries again

    def collect(self, submitted: Submitted, tick: Callable[[], object]) -> list[FileOutcome] | None:
        """Outcomes of a submitted batch in its order, or None when workers kept dying (the
        caller then examines the batch itself). `tick` runs while waiting."""
        futures = submitted.futures
        for attempt in range(1, POOL_ATTEMPTS + 1):
            try:
                if futures is None:
                    futures = self._submit(submitted.entries)
                return self._gather(futures, tick)
            except BrokenProcessPool as exc:
                futures = None
                self.lost += 1
                log.warning(
                    "parse_worker_lost",
                    error=str(exc),
                    attempt=attempt,
                    files=len(submitted.entries),
                )
                self.close(kill=True)
        return None

    def examine(
        self, entries: Sequence[SpoolEntry], tick: Callable[[], object]
    ) -> list[FileOutcome] | None:
        """submit + collect."""
        return self.collect(self.submit(entries), tick)

    def start(self) -> None:
        """Start every worker now instead of at the first large batch (benchmarks time the
        drain alone, as a long-running daemon sees it)."""
        executor = self._pool()
        for future in [executor.submit(_examine_chunk, []) for _ in range(self.workers * 2)]:
            future.result()

    def _submit(self, entries: Sequence[SpoolEntry]) -> list[Future[list[Any]]]:
        executor = self._pool()
        size = max(1, -(-len(entries) // (self.workers * POOL_CHUNKS_PER_WORKER)))
        return [
            executor.submit(_examine_chunk, list(entries[i : i + size]))
            for i in range(0, len(entries), size)
        ]

    def _gather(
        self, futures: list[Future[list[Any]]], tick: Callable[[], object]
    ) -> list[FileOutcome]:
        out: list[FileOutcome] = []
        try:
            for future in futures:
                while True:
                    try:
                        chunk = future.result(timeout=POOL_POLL_S)
                        break
                    except FutureTimeout:
                        tick()
                out += [Event(*got) if len(got) == EVENT_TUPLE_LEN else got for got in chunk]
        finally:
            for future in futures:
                future.cancel()
        return out

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context(START_METHOD)
            context.set_forkserver_preload(["daemon.parse_pool"])
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self.spool.root, self.options, self._pause_dir, os.getpid()),
            )
        return self._executor

    def close(self, *, kill: bool = False) -> None:
        """Stop the workers (idempotent); a pool in use by nobody is simply dropped.

        `kill`: the pool broke (a worker died). Its manager thread then stops the survivors
        with SIGTERM, which workers ignore (_start_worker), and waits for them: one still busy
        or paused would keep shutdown() waiting for ever. They are killed first; their chunks
        are read again by the next pool."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if kill:
            processes = getattr(executor, "_processes", None) or {}  # the pool's own workers
            for process in list(processes.values()):
                process.kill()
        executor.shutdown(wait=True, cancel_futures=True)
