"""Drain the spool into PostgreSQL: batches by count and bytes, each committed by
daemon/batch_commit.py on a writer thread while the next batch is read.

Invariant: a spool file leaves `new/` only after its row has committed (unlink) or after
it was judged bad (quarantine with a reason). Anything else leaves it where it is.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.batch_commit import BATCH_DEADLINE_S, BatchCommitter, Outcome
from daemon.events import Event
from daemon.fs_names import printable
from daemon.parse_pool import (
    BAD,
    GONE,
    OS_ERROR,
    POOL_MIN_FILES,
    REFUSED,
    FileOutcome,
    ParseOptions,
    ParsePool,
    Submitted,
    examine,
)
from daemon.pause_points import PausePoints
from daemon.redaction import Redactor
from daemon.sink_port import Sink
from daemon.spool import (
    NOT_REGULAR,
    TOO_LARGE,
    UNDECODABLE_NAME,
    Spool,
    SpoolEntry,
    file_type,
)

log = structlog.get_logger("session_db.ingest")

UNREADABLE_RETRY_S = 30.0  # an unreadable file is tried again after this long, not in a hot loop


@dataclass(slots=True)
class Prepared:
    """One batch after reading and parsing: the events to commit and what was set aside."""

    batch: list[SpoolEntry]
    started: float  # monotonic
    events: list[Event] = field(default_factory=list)
    quarantined: int = 0


@dataclass(slots=True)
class Preparing:
    """A batch between _start_prepare and _finish_prepare (its files may be with the workers)."""

    prepared: Prepared
    now: float  # wall clock when the batch was started (deferral deadlines)
    to_read: list[SpoolEntry] = field(default_factory=list)
    submitted: Submitted | None = None


@dataclass
class DrainStats:
    """Totals of one drain pass."""

    batches: int = 0
    files: int = 0
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    deferred: int = 0  # files left in new/ for a later pass (`ingest_done deferred=`)
    redactions: int = 0  # secrets replaced by markers in the parsed events


class Ingestor:
    """Turns the files in `new/` into rows, one transaction per batch."""

    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        *,
        host: str,
        batch_max_files: int,
        batch_max_bytes: int,
        foreign_grace_s: float,
        field_cap_bytes: int = 0,
        redactor: Redactor | None = None,
        keep_originals: bool = True,
        max_file_bytes: int = 2**62,
        batch_deadline_s: float = BATCH_DEADLINE_S,
        pause_dir: Path | None = None,
        parse_workers: int = 0,
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.host = host
        self.batch_max_files = batch_max_files
        self.batch_max_bytes = batch_max_bytes
        self.foreign_grace_s = foreign_grace_s
        self.field_cap_bytes = field_cap_bytes
        self.redactor = redactor  # None: payloads stored as received (tests of other concerns)
        self.keep_originals = keep_originals
        self.max_file_bytes = max_file_bytes
        self._unreadable: dict[str, float] = {}
        self._first_seen: dict[
            str, float
        ] = {}  # monotonic time a deferred foreign file was first seen
        self.pauses = PausePoints(pause_dir)
        self.committer = BatchCommitter(
            spool, sink, pauses=self.pauses, deadline_s=batch_deadline_s
        )
        self.on_event: Callable[[Event], None] | None = None
        self._parse_options = ParseOptions(
            host=host,
            field_cap_bytes=field_cap_bytes,
            max_file_bytes=max_file_bytes,
            redactor=None if redactor is None else redactor.options,
        )
        # Worker processes for large batches (0: every file is read in this process).
        self.pool = (
            ParsePool(spool, self._parse_options, parse_workers, pause_dir)
            if parse_workers > 0
            else None
        )

    def close(self) -> None:
        """Stop the parse workers, if any (idempotent)."""
        if self.pool is not None:
            self.pool.close()

    def batches(self, entries: Sequence[SpoolEntry]) -> list[list[SpoolEntry]]:
        """Split entries into batches bounded by file count and bytes (a big file goes alone)."""
        out: list[list[SpoolEntry]] = []
        cur: list[SpoolEntry] = []
        size = 0
        for e in entries:
            if cur and (len(cur) >= self.batch_max_files or size + e.size > self.batch_max_bytes):
                out.append(cur)
                cur, size = [], 0
            cur.append(e)
            size += e.size
        if cur:
            out.append(cur)
        return out

    def drain(self, should_stop: Callable[[], bool] = lambda: False) -> DrainStats:
        """Ingest everything in `new/` now. Transient database errors propagate to the caller.

        Three steps overlap: while the writer thread commits batch N, this thread unlinks the
        files of batch N-1 (committed) and reads and parses batch N+1 (with parse workers, they
        read batch N+2 meanwhile). `should_stop` is also
        called while waiting on the writer (its answer is then ignored: a batch in flight is
        always finished), so a caller that feeds a watchdog from it keeps feeding it during
        slow database calls.
        """
        stats = DrainStats()
        entries = self.spool.scan()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer") as writer:
            pending: tuple[Future[Outcome], Prepared] | None = None
            try:
                batches = self.batches(entries)
                ahead = self._start_prepare(batches[0], stats, should_stop) if batches else None
                for i in range(len(batches)):
                    if should_stop():
                        break
                    assert ahead is not None
                    prepared = self._finish_prepare(ahead, stats, should_stop)
                    # With parse workers, the next batch is read while this one commits.
                    ahead = (
                        self._start_prepare(batches[i + 1], stats, should_stop)
                        if i + 1 < len(batches)
                        else None
                    )
                    done = None
                    if pending is not None:
                        done = (self._wait(pending, should_stop), pending[1])
                        pending = None
                    pending = (writer.submit(self.committer.write, prepared.events), prepared)
                    if done is not None:
                        self._settle(*done, stats)
                if pending is not None:
                    done = (self._wait(pending, should_stop), pending[1])
                    pending = None
                    self._settle(*done, stats)
            finally:
                if pending is not None:
                    # Leaving on an error of this thread: let the batch in flight finish before
                    # the error propagates (its files stay in new/ and are retried: a repeat
                    # of committed rows is absorbed by the unique key).
                    wait([pending[0]])
        return stats

    def _prepare(
        self, batch: list[SpoolEntry], stats: DrainStats, tick: Callable[[], bool] = lambda: False
    ) -> Prepared:
        """Read and parse one batch; quarantine what cannot become a row; defer what may later.

        Files are read and parsed here or, for a large batch, by the worker processes of
        `self.pool` (daemon.parse_pool); every decision about a file is taken here, in order.
        `tick` runs before each file or while waiting for the workers (its answer is ignored:
        the batch is prepared whole), so a caller feeding a watchdog from it keeps feeding it
        through a batch of slow files."""
        return self._finish_prepare(self._start_prepare(batch, stats, tick), stats, tick)

    def _start_prepare(
        self, batch: list[SpoolEntry], stats: DrainStats, tick: Callable[[], bool]
    ) -> Preparing:
        """The part of _prepare that needs no file content: quarantine what the scan's lstat
        and name refuse, defer what was unreadable lately, hand a large batch to the workers."""
        preparing = Preparing(Prepared(batch=batch, started=time.monotonic()), time.time())
        for entry in batch:
            refused = self._refuse(entry)
            if refused is not None:
                tick()
                preparing.prepared.quarantined += self.spool.quarantine_file(
                    entry.name, *refused, size=entry.size
                )
                log.warning(
                    "event_quarantined",
                    file=printable(entry.name),
                    reason=refused[0],
                    detail=refused[1],
                )
                continue
            retry_at = self._unreadable.get(entry.name)
            if retry_at is not None and retry_at > preparing.now:
                stats.deferred += 1
                continue
            preparing.to_read.append(entry)
        if self.pool is not None and len(preparing.to_read) >= POOL_MIN_FILES:
            preparing.submitted = self.pool.submit(preparing.to_read)
        return preparing

    def _finish_prepare(
        self, preparing: Preparing, stats: DrainStats, tick: Callable[[], bool]
    ) -> Prepared:
        outcomes: Sequence[FileOutcome] | None = None
        if self.pool is not None and preparing.submitted is not None:
            outcomes = self.pool.collect(preparing.submitted, tick)
        if outcomes is None:
            outcomes = self._examine_here(preparing.to_read, tick)
        for entry, outcome in zip(preparing.to_read, outcomes, strict=True):
            self._take(entry, outcome, preparing.prepared, stats=stats, now=preparing.now)
        return preparing.prepared

    def _examine_here(
        self, entries: list[SpoolEntry], tick: Callable[[], bool]
    ) -> list[FileOutcome]:
        out: list[FileOutcome] = []
        for entry in entries:
            tick()
            out.append(examine(self.spool, entry, self._parse_options, self.redactor))
        return out

    def _take(
        self,
        entry: SpoolEntry,
        outcome: FileOutcome,
        prepared: Prepared,
        *,
        stats: DrainStats,
        now: float,
    ) -> None:
        """Decide about one examined file: an event for the batch, quarantine, or defer."""
        if isinstance(outcome, Event):
            if self._unreadable:
                self._unreadable.pop(entry.name, None)
            if self._first_seen:
                self._first_seen.pop(entry.name, None)
            if (
                outcome.truncated
                and self.keep_originals
                and not self.spool.keep_original(entry.name)
            ):
                return  # vanished: another daemon settled it
            prepared.events.append(outcome)
            return
        kind, details = outcome
        if kind == GONE:
            return  # settled by another daemon
        if kind == REFUSED:  # swapped for a FIFO/device, or grew, after the scan
            reason, detail = details
            prepared.quarantined += self.spool.quarantine_file(entry.name, reason, detail)
            log.warning("event_quarantined", file=entry.name, reason=reason)
            return
        if kind == OS_ERROR:
            code, message = details
            self._unreadable_file(entry, code, message, prepared, stats=stats, now=now)
            return
        if self._unreadable:
            self._unreadable.pop(entry.name, None)
        assert kind == BAD
        reason, detail, retryable = details
        if retryable and self._in_grace(entry, now):
            stats.deferred += 1  # a foreign writer may still be writing it
            return
        self._first_seen.pop(entry.name, None)
        prepared.quarantined += self.spool.quarantine_file(entry.name, reason, detail)

    def _unreadable_file(
        self,
        entry: SpoolEntry,
        code: int | None,
        message: str,
        prepared: Prepared,
        *,
        stats: DrainStats,
        now: float,
    ) -> None:
        """An OSError while reading: a planted symlink is quarantined, anything else (EACCES…)
        is tried again after UNREADABLE_RETRY_S, with one warning."""
        if code == errno.ELOOP:
            prepared.quarantined += self.spool.quarantine_file(
                entry.name, "symlink", "spool files are never followed"
            )
            return
        if entry.name not in self._unreadable:
            log.warning("spool_file_unreadable", file=entry.name, error=message)
        self._unreadable[entry.name] = now + UNREADABLE_RETRY_S
        stats.deferred += 1

    def _refuse(self, entry: SpoolEntry) -> tuple[str, str] | None:
        """(reason, detail) for a file that must be quarantined unread, judged from the scan's
        lstat and name: a FIFO would block the open, a socket cannot be opened at all, a device
        reads without end, and a non-UTF-8 name cannot become an event_uid."""
        if not entry.decodable:
            return (
                UNDECODABLE_NAME,
                f"file name {printable(entry.name)!r} is not UTF-8; not read",
            )
        if not entry.regular:
            return NOT_REGULAR, f"file type {file_type(entry.mode)}; not read"
        if entry.size > self.max_file_bytes:
            return (
                TOO_LARGE,
                f"{entry.size} bytes, over max_file_bytes={self.max_file_bytes}; not read",
            )
        return None

    def _wait(self, pending: tuple[Future[Outcome], Prepared], tick: Callable[[], bool]) -> Outcome:
        future, prepared = pending
        return self.committer.wait(future, len(prepared.batch), tick)

    def _settle(self, outcome: Outcome, prepared: Prepared, stats: DrainStats) -> None:
        """After COMMIT: unlink the committed files, then one canonical log line for the batch."""
        names = outcome.committed
        if self.pauses.chosen == "mid_unlink" and len(names) > 1:
            self.spool.remove(names[: len(names) // 2])
            self.pauses.stop_at("mid_unlink")
        self.spool.remove(names)
        if self.on_event is not None:
            for e in prepared.events:
                self.on_event(e)
        batch = prepared.batch
        quarantined = prepared.quarantined + outcome.quarantined
        redactions = sum(e.redactions for e in prepared.events)
        stats.batches += 1
        stats.files += len(batch)
        stats.inserted += outcome.inserted
        stats.duplicates += outcome.duplicates
        stats.quarantined += quarantined
        stats.redactions += redactions
        log.info(
            "batch_committed",
            files=len(batch),
            rows=outcome.inserted,
            duplicates=outcome.duplicates,
            quarantined=quarantined,
            redactions=redactions,
            bytes=sum(e.size for e in batch),
            ms=round((time.monotonic() - prepared.started) * 1000, 1),
        )

    def _in_grace(self, entry: SpoolEntry, now: float) -> bool:
        """A header-less file gets `foreign_grace_s` to be completed, counted both from its mtime
        and from when we first saw it (monotonic), so a future mtime cannot defer it forever."""
        first = self._first_seen.setdefault(entry.name, time.monotonic())
        fresh = now - entry.mtime_ns / 1e9 < self.foreign_grace_s
        return fresh and time.monotonic() - first < self.foreign_grace_s
