"""The long-running daemon: watch, drain, sync, back off, stop cleanly.

The main loop owns the database connection. The watcher thread only wakes it (inotify
drops events on overflow), so every wake-up and a timer run an authoritative scan.
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from daemon import budgets, db, migrations, partitions
from daemon.backoff import Backoff
from daemon.cluster import EmbeddedCluster, find_binaries
from daemon.config import Settings
from daemon.errors import (
    ClusterError,
    ConfigError,
    PermanentRowError,
    TransientDbError,
    UnknownDbError,
)
from daemon.events import Event
from daemon.ingest import DrainStats, Ingestor
from daemon.messages import MessageArchive
from daemon.notify import notify, watchdog_interval_s
from daemon.price_drift import DriftWatch
from daemon.redaction import Redactor
from daemon.signals import StopSignals, Waker
from daemon.sink import PostgresSink
from daemon.spool import Backlog, Spool
from daemon.transcripts import TRIGGER_EVENTS, ReadStats, TranscriptReader
from daemon.watcher import WATCHER_RESTART_BASE_S, WATCHER_RESTART_CAP_S, Watcher, describe_error
from daemon.workflows import SessionTracker, sessions_dir

log = structlog.get_logger("session_db.service")

__all__ = ["Backoff", "Service", "Watcher"]


class Service:
    """`session-db run`: one instance per spool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool)
        self.stopping = False
        self._waker = Waker()
        self._signals: StopSignals | None = None
        self._stop_logged = False
        self._state_dirty = True
        self.cluster: EmbeddedCluster | None = None
        self._one_shot = False  # `ingest --once`: no heartbeat row (it is not a daemon)
        self._watcher_backoff = Backoff(WATCHER_RESTART_BASE_S, WATCHER_RESTART_CAP_S)
        self._watcher_retry_at = 0.0  # monotonic time before which a dead watcher stays down
        self.url: str | None = settings.url
        self.sink: PostgresSink | None = None
        self.ingestor: Ingestor | None = None
        self.tracker: SessionTracker | None = None
        self.transcripts: TranscriptReader | None = None
        self._transcripts_due: set[str] = set()
        self._last_transcript_scan = 0.0
        self.price_drift = DriftWatch()
        self.watcher: Watcher | None = None
        self.db_state = "unknown"
        self.db_roots: set[str] = set()
        self.totals = DrainStats()
        self._last_scan = 0.0
        self._last_orphans = 0.0
        self._last_watchdog = 0.0
        self._budgets_due = 0.0  # monotonic time of the next budget check (reports, issue 14)
        self._last_heartbeat = 0.0
        self._partitions_due = 0.0  # monotonic time of the next best-effort partition check
        self._started_at = datetime.now(UTC)
        self._last_error: tuple[str, datetime] | None = None
        self._backlog_high = False

    # --- lifecycle ----------------------------------------------------------------------

    def stop_requested(self) -> bool:
        if self._signals is not None and self._signals.requested and not self._stop_logged:
            # Logged here, outside the signal handler (which may interrupt a logging call).
            self._stop_logged = True
            log.info(
                "stop_requested",
                signal=self._signals.received.name if self._signals.received else None,
            )
        return self.stopping or (self._signals is not None and self._signals.requested)

    def request_stop(self) -> None:
        self.stopping = True
        self._waker.wake()

    def wake(self, state_changed: bool) -> None:
        if state_changed:
            self._state_dirty = True
        self._waker.wake()

    def prepare(self) -> None:
        """Check config and spool, start the embedded cluster if needed (fast, local only)."""
        self.spool.ensure()
        try:
            self.settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"state directory {self.settings.state_dir}: cannot create ({exc.strerror}); set SESSION_DB_STATE_DIR"
            ) from exc
        if self.settings.embedded:
            self.cluster = EmbeddedCluster(
                self.settings.state_dir, find_binaries(self.settings.pg_bin)
            )
            self.cluster.ensure_started()  # registers us as a user until shutdown()
            self.url = self.cluster.url()
            log.info(
                "embedded_cluster_ready", psql=" ".join(self.cluster.psql_argv()), url=self.url
            )
        assert self.url is not None
        self.sink = PostgresSink.for_settings(self.settings, self.url)
        self.ingestor = Ingestor(
            self.spool,
            self.sink,
            host=self.settings.host,
            batch_max_files=self.settings.batch_max_files,
            batch_max_bytes=self.settings.batch_max_bytes,
            foreign_grace_s=self.settings.foreign_grace_s,
            field_cap_bytes=self.settings.field_cap_bytes,
            redactor=Redactor.from_settings(self.settings),
            keep_originals=self.settings.keep_originals,
            max_file_bytes=self.settings.max_file_bytes,
            pause_dir=self.settings.state_dir,
        )
        self.tracker = SessionTracker(self.sink, self.settings.host)
        self.transcripts = TranscriptReader(
            self.sink, self.settings.host, archive=MessageArchive.from_settings(self.settings)
        )
        self.ingestor.on_event = self._note_event

    def shutdown(self, *, clean: bool = False) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if clean and not self._one_shot:
            self._mark_stopped()
        if self.sink is not None:
            self.sink.close()
        if self.cluster is not None:
            self.cluster.release()  # the last user of the embedded cluster stops it

    def _mark_stopped(self) -> None:
        """Record a clean stop in our heartbeat row (best effort: the database may be down)."""
        if self.sink is None or self.db_state != "up":
            return
        try:
            with self.sink.classified(), db.transaction(self.sink.connection()) as cur:
                cur.execute(
                    db.MARK_HEARTBEAT_STOPPED,
                    {
                        "host": self.settings.host,
                        "pid": os.getpid(),
                        "started_at": self._started_at,
                        "events": self.totals.inserted,
                        "quarantined": self.totals.quarantined,
                    },
                )
        except (TransientDbError, UnknownDbError, PermanentRowError) as exc:
            log.warning("stop_not_recorded", error=str(exc))

    # --- database readiness -------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Migrate the embedded cluster; check an external database's revision."""
        assert self.url is not None
        timeout_s = self.settings.connect_timeout_s
        if self.settings.embedded:
            migrations.upgrade(self.url, connect_timeout_s=timeout_s)
        if migrations.check(self.url, connect_timeout_s=timeout_s) != migrations.head_revision():
            self._partitions_due = math.inf  # a newer schema: its own session-db maintains it

    def _note_event(self, event: Event) -> None:
        """Events that end a turn or an agent make its transcripts worth reading now."""
        if event.event_type in TRIGGER_EVENTS:
            for path in (event.transcript_path, event.agent_transcript_path):
                if path:
                    self._transcripts_due.add(path)

    def roots(self) -> list[Path]:
        found = {str(p) for p in self.settings.watch} | self.db_roots
        if self.sink is not None:
            found |= self.sink.known_roots
        return sorted(Path(p) for p in found)

    def load_db_roots(self) -> None:
        assert self.sink is not None
        conn = self.sink.connection()
        with db.transaction(conn) as cur:
            cur.execute(db.SELECT_WATCH_ROOTS, (self.settings.host,))
            self.db_roots = {str(r[0]) for r in cur.fetchall()}

    # --- the loop -----------------------------------------------------------------------

    def watch_paths(self) -> list[Path]:
        paths = [self.spool.new]
        for root in self.roots():
            sdir = sessions_dir(root)
            if sdir.is_dir():
                paths.append(sdir)
        return paths

    def ensure_watcher(self) -> None:
        """Start the watcher, replace it when the roots change, restart it when it died.

        A dead watcher never stops ingestion: it is logged (`watcher_failed`), the loop's
        timer keeps scanning every scan interval, and a new watcher starts after a backoff."""
        paths = self.watch_paths()
        if self.watcher is not None and self.watcher.alive and self.watcher.paths == paths:
            return
        if self.watcher is not None and not self.watcher.alive:
            if self.watcher.error is not None:
                delay = self._watcher_backoff.next_delay() + WATCHER_RESTART_BASE_S
                self._watcher_retry_at = time.monotonic() + delay
                log.error(
                    "watcher_failed",
                    error=describe_error(self.watcher.error),
                    restart_in_s=round(delay, 1),
                    fallback="periodic scan",
                )
                self.watcher.error = None
            if time.monotonic() < self._watcher_retry_at:
                return
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = Watcher(
            paths,
            self.wake,
            debounce_ms=self.settings.watch_debounce_ms,
            force_polling=self.settings.force_polling,
        )
        self.watcher.start()
        log.info("watching", paths=[describe_path(p) for p in paths])

    def run(self) -> int:
        """Run until stopped. Returns the exit code."""
        with StopSignals(self._waker) as signals:
            self._signals = signals
            try:
                return self._run()
            finally:
                self._signals = None
                self._waker.close()

    def _run(self) -> int:
        if self.stop_requested():  # a stop before start-up: nothing to undo
            return 0
        clean = False
        try:
            self.prepare()
            if self.stop_requested():
                clean = True
                return 0
            self._loop()
            clean = True
        finally:
            notify("STOPPING=1")
            self.shutdown(clean=clean)
        log.info(
            "stopped",
            events=self.totals.inserted,
            duplicates=self.totals.duplicates,
            quarantined=self.totals.quarantined,
        )
        return 0

    def _loop(self) -> None:
        backoff = Backoff()
        db_ready = False
        self.ensure_watcher()
        self._waker.wake()  # first pass at once
        notify("READY=1")
        while not self.stop_requested():
            self._tick_watchdog()
            if self.watcher is not None and not self.watcher.alive:
                self.ensure_watcher()  # logs the failure; restarts after a backoff
            timeout = self.settings.scan_interval_s
            hold = False
            assert self.sink is not None
            try:
                # Driver errors from any call of the pass (schema check, state files,
                # transcripts, heartbeat) are classified here once, so none can crash the loop.
                with self.sink.classified():
                    if not db_ready:
                        self.ensure_schema()
                        self.load_db_roots()
                        db_ready = True
                        self._state_dirty = True
                    if self.db_state != "up":
                        self.sink.ping()  # "up" only once the database has really answered
                    self.pass_once()
                self._set_db_state("up")
                backoff.reset()
            except TransientDbError as exc:
                self._set_db_state("down", error=str(exc))
                if self.sink is not None:
                    self.sink.close()
                if self._recover_cluster():
                    db_ready = False  # a fresh server: check (and migrate) the schema again
                # The whole delay is waited, whatever wakes the loop (new spool files keep
                # arriving during an outage); only a stop ends it early.
                timeout = backoff.next_delay()
                hold = True
                log.info("database_retry", attempt=backoff.failures, delay_s=round(timeout, 2))
            if self.stop_requested():
                break
            self._wait(timeout, hold=hold)

    def _recover_cluster(self) -> bool:
        """The embedded cluster is ours: when its postmaster is gone, start it again (True).

        Runs at most once per failed attempt, so the reconnect backoff paces restarts too."""
        if self.cluster is None:
            return False
        try:
            return self.cluster.restart_if_gone()
        except ClusterError as exc:
            log.error("cluster_restart_failed", error=str(exc).splitlines()[0])  # noqa: TRY400 - retried; the message says it all
            return False

    def _wait(self, timeout: float, *, hold: bool = False) -> bool:
        """Wait up to `timeout` s, feeding the watchdog; True when woken early.

        With `hold`, wake-ups (new files, state changes) are consumed but do not end the
        wait: a backoff holds whatever happens. A stop request always ends it."""
        interval = watchdog_interval_s()
        deadline = time.monotonic() + timeout
        while not self.stop_requested():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = min(remaining, interval) if interval else remaining
            if self._waker.wait(step) and not hold:
                return True
            self._tick_watchdog()
        return True

    def _between_steps(self) -> bool:
        """Called between files and batches of a long pass: keep the watchdog fed; True to stop early."""
        self._tick_watchdog()
        return self.stop_requested()

    def _between_chunks(self, _stats: ReadStats) -> None:
        self._tick_watchdog()

    def _tick_watchdog(self) -> None:
        interval = watchdog_interval_s()
        if interval and time.monotonic() - self._last_watchdog >= interval:
            notify("WATCHDOG=1")
            self._last_watchdog = time.monotonic()

    def _set_db_state(self, state: str, **kw: Any) -> None:
        if state == "down":
            self._last_error = (str(kw.get("error", "")), datetime.now(UTC))
        if state != self.db_state:
            if state == "down":
                log.error("database_down", **kw)
            else:
                log.info("database_up")
            self.db_state = state
        if state == "down":
            self._check_backlog(self.spool.backlog())
        elif not self._backlog_high:
            notify("STATUS=db=up")

    def _check_backlog(self, backlog: Backlog) -> None:
        """Warn once when the backlog passes a threshold, once more when it is back to normal."""
        oldest = backlog.oldest_age_s or 0.0
        high = (
            backlog.files > self.settings.backlog_warn_files
            or oldest > self.settings.backlog_warn_age_s
        )
        if high != self._backlog_high:
            self._backlog_high = high
            if high:
                log.warning(
                    "backlog_high",
                    files=backlog.files,
                    bytes=backlog.bytes,
                    oldest_s=round(oldest, 1),
                )
            else:
                log.info("backlog_normal", files=backlog.files)
        warn = " WARNING: backlog high" if high else ""
        notify(f"STATUS=db={self.db_state} backlog={backlog.files} oldest={oldest:.0f}s{warn}")

    def _heartbeat(self) -> None:
        """Record this daemon's state in daemon_heartbeats (one row per run; none for one-shot runs)."""
        if self._one_shot:
            self._check_backlog(self.spool.backlog())
            return
        from daemon import __version__

        assert self.sink is not None
        backlog = self.spool.backlog()
        self._check_backlog(backlog)
        error, error_at = self._last_error or (None, None)
        with db.transaction(self.sink.connection()) as cur:
            cur.execute(
                db.UPSERT_HEARTBEAT,
                {
                    "host": self.settings.host,
                    "pid": os.getpid(),
                    "version": __version__,
                    "spool": str(self.settings.spool),
                    "started_at": self._started_at,
                    "events": self.totals.inserted,
                    "quarantined": self.totals.quarantined,
                    "backlog_files": backlog.files,
                    "backlog_bytes": backlog.bytes,
                    "oldest_s": backlog.oldest_age_s,
                    "last_error": error,
                    "last_error_at": error_at,
                },
            )

    def pass_once(self, *, force_scan: bool = False) -> DrainStats:
        """One authoritative pass: spool, then state files and orphans when due."""
        assert self.ingestor is not None
        assert self.tracker is not None
        stats = self.ingestor.drain(self._between_steps)
        for name in ("batches", "files", "inserted", "duplicates", "quarantined", "redactions"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        now = time.monotonic()
        due = force_scan or now - self._last_scan >= self.settings.scan_interval_s
        if due or self._state_dirty or self.roots_changed():
            self._state_dirty = False
            self.tracker.sync(self.roots(), progress=self._between_steps)
            self._last_scan = now
            if self.watcher is not None:
                self.ensure_watcher()
        if force_scan or now - self._last_heartbeat >= self.settings.scan_interval_s:
            self._last_heartbeat = now
            self._heartbeat()
        if now >= self._partitions_due:
            assert self.sink is not None
            self._partitions_due = now + partitions.maintain_in_daemon(self.sink.connection)
        assert self.transcripts is not None
        if force_scan or now - self._last_transcript_scan >= self.settings.scan_interval_s:
            self._last_transcript_scan = now
            self._transcripts_due.clear()
            self._log_transcripts(self.transcripts.sync(progress=self._between_chunks))
        elif self._transcripts_due:
            paths, self._transcripts_due = self._transcripts_due, set()
            self._log_transcripts(self.transcripts.sync(only=paths, progress=self._between_chunks))
        if force_scan or now >= self._budgets_due:
            assert self.sink is not None
            self._budgets_due = now + budgets.CHECK_INTERVAL_S
            budgets.check(self.sink.connection())
        if self.price_drift.due(now):
            assert self.sink is not None
            self.price_drift.check(self.sink.connection(), now)
        if force_scan or now - self._last_orphans >= min(self.settings.orphan_ttl_s / 4, 600):
            self._last_orphans = now
            for name in self.spool.orphans(self.settings.orphan_ttl_s):
                outcome = self.spool.settle_orphan(name)
                log.warning("orphan_settled", file=name, outcome=outcome)
        return stats

    @staticmethod
    def _log_transcripts(stats: ReadStats) -> None:
        if stats.files or stats.missing:
            log.info(
                "transcripts_read",
                files=stats.files,
                bytes=stats.bytes,
                lines=stats.lines,
                responses=stats.responses,
                inserted=stats.inserted,
                updated=stats.updated,
                resets=stats.resets,
                missing=stats.missing,
            )

    def roots_changed(self) -> bool:
        return self.watcher is not None and self.watcher.paths != self.watch_paths()

    def run_once(self) -> DrainStats:
        """`ingest --once`: drain spool and state files, then return."""
        self._one_shot = True
        self.prepare()
        assert self.sink is not None
        try:
            with self.sink.classified():
                self.ensure_schema()
                self.load_db_roots()
                self.pass_once(force_scan=True)
                # Roots discovered in this pass may hold state files too.
                assert self.tracker is not None
                self.tracker.sync(self.roots())
        finally:
            self.shutdown()
            self._waker.close()
        return self.totals


def describe_path(path: Path) -> str:
    """A path for a log line: bytes that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
