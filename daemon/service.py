"""The long-running daemon: watch, drain, sync, back off, stop cleanly.

The main loop owns the database connection. The watcher thread only wakes it (inotify
drops events on overflow), so every wake-up and a timer run an authoritative scan.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import watchfiles

from daemon import budgets, db, migrations, partitions
from daemon.cluster import EmbeddedCluster, find_binaries
from daemon.config import BACKOFF_BASE_S, BACKOFF_CAP_S, WATCH_STEP_MS, Settings
from daemon.errors import ConfigError, SchemaMismatchError, TransientDbError
from daemon.events import Event
from daemon.ingest import DrainStats, Ingestor
from daemon.notify import notify, watchdog_interval_s
from daemon.price_drift import DriftWatch
from daemon.redaction import Redactor
from daemon.sessions import SessionTracker, sessions_dir
from daemon.sink import PostgresSink
from daemon.spool import Backlog, Spool
from daemon.transcripts import TRIGGER_EVENTS, ReadStats, TranscriptReader

log = structlog.get_logger("session_db.service")

WATCHER_RUST_TIMEOUT_MS = 5000  # the watcher thread checks its stop flag at least this often


class Backoff:
    """Full-jitter exponential backoff (base·2^n, capped)."""

    def __init__(self, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** min(self.failures, 30)))  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.failures = 0


class Watcher:
    """A watchfiles thread over a fixed set of paths; restarted when the set changes."""

    def __init__(
        self,
        paths: list[Path],
        wake: Callable[[bool], None],
        *,
        debounce_ms: int,
        force_polling: bool,
    ) -> None:
        self.paths = paths
        self._wake = wake
        self._debounce_ms = debounce_ms
        self._force_polling = force_polling
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._spool_prefix = str(paths[0])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=(WATCHER_RUST_TIMEOUT_MS / 1000) + 2)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            for changes in watchfiles.watch(
                *self.paths,
                watch_filter=None,
                debounce=self._debounce_ms,
                step=WATCH_STEP_MS,
                stop_event=self._stop,
                rust_timeout=WATCHER_RUST_TIMEOUT_MS,
                yield_on_timeout=True,
                force_polling=self._force_polling,
                raise_interrupt=False,
            ):
                if changes:
                    state_changed = any(not p.startswith(self._spool_prefix) for _, p in changes)
                    self._wake(state_changed)
        except BaseException as exc:  # noqa: BLE001 - recorded; the main loop re-raises it and exits 70
            self.error = exc
            self._wake(False)


class Service:
    """`session-db run`: one instance per spool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool)
        self.stopping = False
        self._wake = threading.Event()
        self._state_dirty = True
        self.cluster: EmbeddedCluster | None = None
        self._started_cluster = False
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

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # The first signal stops gracefully; the default action is back for a second one.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.request_stop()

    def stop_requested(self) -> bool:
        return self.stopping

    def request_stop(self) -> None:
        self.stopping = True
        self._wake.set()

    def wake(self, state_changed: bool) -> None:
        if state_changed:
            self._state_dirty = True
        self._wake.set()

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
            self._started_cluster = self.cluster.ensure_started()
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
        self.transcripts = TranscriptReader(self.sink, self.settings.host)
        self.ingestor.on_event = self._note_event

    def shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.sink is not None:
            self.sink.close()
        if self.cluster is not None and self._started_cluster:
            self.cluster.stop()

    # --- database readiness -------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Migrate the embedded cluster; check an external database's revision."""
        assert self.url is not None
        try:
            if self.settings.embedded:
                migrations.upgrade(self.url)
            if migrations.check(self.url) != migrations.head_revision():
                self._partitions_due = math.inf  # a newer schema: its own session-db maintains it
        except SchemaMismatchError:
            raise
        except Exception as exc:
            if isinstance(exc, TransientDbError):
                raise
            cause = getattr(exc, "orig", None) or exc
            err = db.classify(cause)
            if isinstance(err, TransientDbError):
                raise err from exc
            raise

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
        paths = self.watch_paths()
        if self.watcher is not None and self.watcher.paths == paths and self.watcher.alive:
            return
        if self.watcher is not None:
            if not self.watcher.alive and self.watcher.error is not None:
                raise RuntimeError(
                    f"file watcher died: {self.watcher.error!r}"
                ) from self.watcher.error
            self.watcher.stop()
        self.watcher = Watcher(
            paths,
            self.wake,
            debounce_ms=self.settings.watch_debounce_ms,
            force_polling=self.settings.force_polling,
        )
        self.watcher.start()
        log.info("watching", paths=[str(p) for p in paths])

    def run(self) -> int:
        """Run until stopped. Returns the exit code."""
        self.install_signal_handlers()
        if self.stopping:
            return 0
        self.prepare()
        backoff = Backoff()
        db_ready = False
        try:
            self.ensure_watcher()
            self._wake.set()  # first pass at once
            notify("READY=1")
            while not self.stop_requested():
                self._tick_watchdog()
                if self.watcher is not None and not self.watcher.alive:
                    raise RuntimeError(
                        f"file watcher died: {self.watcher.error!r}"
                    ) from self.watcher.error
                timeout = self.settings.scan_interval_s
                assert self.sink is not None
                try:
                    # Driver errors from any call of the pass (state files, transcripts,
                    # heartbeat) are classified here once, so none can crash the loop.
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
                    timeout = backoff.next_delay()
                    if self.sink is not None:
                        self.sink.close()
                if self.stop_requested():
                    break
                self._wait(timeout)
        finally:
            notify("STOPPING=1")
            self.shutdown()
        log.info(
            "stopped",
            events=self.totals.inserted,
            duplicates=self.totals.duplicates,
            quarantined=self.totals.quarantined,
        )
        return 0

    def _wait(self, timeout: float) -> None:
        interval = watchdog_interval_s()
        deadline = time.monotonic() + timeout
        while not self.stop_requested():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(remaining, interval) if interval else remaining
            if self._wake.wait(step):
                self._wake.clear()
                return
            self._tick_watchdog()

    def _between_steps(self) -> bool:
        """Called between batches of a long pass: keep the watchdog fed; True to stop early."""
        self._tick_watchdog()
        return self.stopping

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
        """Record this daemon's state in daemon_heartbeats (one row per run)."""
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
            self.tracker.sync(self.roots())
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
        return self.totals
