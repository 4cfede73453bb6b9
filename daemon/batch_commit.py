"""Commit one batch of events from the writer thread: retries, bisection, the deadline.

A batch the database rejects is split in halves until the rows it refuses stand alone; each
of those is quarantined (`db_rejected`) and the rest commit. Transient errors propagate (the
caller retries the whole drain later). A batch that stays unanswered past its deadline has
its connection cut, which turns the hang into a transient error."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import structlog

from daemon.errors import PermanentRowError, UnknownDbError
from daemon.events import Event
from daemon.pause_points import PausePoints
from daemon.sink_port import Sink
from daemon.spool import Spool

log = structlog.get_logger("session_db.ingest")

UNKNOWN_ERROR_RETRIES = 3  # attempts of a batch failing with an unclassified error, then bisect
UNKNOWN_ERROR_BACKOFF_S = 0.2  # times the attempt number: the pause before the next attempt
# A batch still unanswered after this long is cut off (its connection shut down) and retried:
# the server or the path to it stopped answering without closing the connection (SIGSTOP, a
# frozen VM, a stalled proxy), which neither statement_timeout nor TCP timeouts always catch.
BATCH_DEADLINE_S = 120.0
WRITER_POLL_S = 1.0  # while a batch commits, the caller's tick runs at least this often


@dataclass(slots=True)
class Outcome:
    """What the writer thread did with one batch: counts, and the files whose rows committed."""

    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0  # rows the database rejected, quarantined after bisection
    committed: list[str] = field(default_factory=list)


class BatchCommitter:
    """Writes batches through the sink; unlinks nothing (the committed names go back)."""

    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        *,
        pauses: PausePoints,
        deadline_s: float = BATCH_DEADLINE_S,
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.pauses = pauses
        self.deadline_s = deadline_s

    def write(self, events: list[Event], attempt: int = 1) -> Outcome:
        """Commit events, bisecting around rows the database rejects."""
        if not events:
            return Outcome()
        try:
            result = self.sink.write_events(events, before_commit=self.pauses.hook("pre_commit"))
        except PermanentRowError as exc:
            return self._bisect(events, str(exc), exc.sqlstate)
        except UnknownDbError as exc:
            if attempt < UNKNOWN_ERROR_RETRIES:
                log.warning(
                    "batch_retry_unknown_error",
                    error=str(exc),
                    sqlstate=exc.sqlstate,
                    attempt=attempt,
                )
                time.sleep(UNKNOWN_ERROR_BACKOFF_S * attempt)
                return self.write(events, attempt + 1)
            return self._bisect(events, str(exc), exc.sqlstate)
        self.pauses.stop_at("post_commit")
        return Outcome(result.inserted, result.duplicates, 0, [e.spool_name for e in events])

    def wait(self, future: Future[Outcome], files: int, tick: Callable[[], bool]) -> Outcome:
        """The outcome of a batch of `files` in flight; past the deadline its connection is
        cut. `tick` runs at least every WRITER_POLL_S meanwhile (its answer is ignored)."""
        deadline = time.monotonic() + self.deadline_s
        while True:
            try:
                return future.result(timeout=WRITER_POLL_S)
            except FutureTimeout:
                tick()
                if time.monotonic() > deadline:
                    log.warning("batch_deadline_exceeded", files=files, deadline_s=self.deadline_s)
                    self.sink.abort()  # the writer then fails with a transient error
                    deadline = float("inf")

    def _bisect(self, events: list[Event], error: str, sqlstate: str | None) -> Outcome:
        if len(events) == 1:
            ok = self.spool.quarantine_file(
                events[0].spool_name, "db_rejected", error, sqlstate=sqlstate
            )
            log.warning(
                "event_quarantined",
                file=events[0].spool_name,
                reason="db_rejected",
                sqlstate=sqlstate,
                error=error,
            )
            return Outcome(quarantined=int(ok))
        mid = len(events) // 2
        a = self.write(events[:mid])
        b = self.write(events[mid:])
        return Outcome(
            a.inserted + b.inserted,
            a.duplicates + b.duplicates,
            a.quarantined + b.quarantined,
            a.committed + b.committed,
        )
