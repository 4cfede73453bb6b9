"""The daemon's worker loop: watch, drain, sync, back off, stop cleanly.

The main loop owns the database connection. The watcher thread only wakes it (inotify
drops events on overflow), so every wake-up and the scheduler's jobs run an authoritative
scan. What runs periodically in a pass (state files, heartbeat, partitions, transcripts,
budgets, price drift, orphans) is a named job of `daemon.scheduler`.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from daemon import budgets, db, migrations, partitions, price_drift, wiring
from daemon.backoff import Backoff
from daemon.cluster import EmbeddedCluster, find_binaries
from daemon.config import Settings
from daemon.errors import (
    ClusterError,
    ConfigError,
    TransientDbError,
)
from daemon.events import Event
from daemon.heartbeat import Heartbeat, log_transcripts
from daemon.ingest import DrainStats, Ingestor
from daemon.notify import notify, watchdog_interval_s
from daemon.price_drift import DriftWatch
from daemon.scheduler import Scheduler
from daemon.signals import StopSignals, Waker
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.transcripts import TRIGGER_EVENTS, ReadStats, TranscriptReader
from daemon.watcher import Watcher, WatcherSupervisor
from daemon.workflows import SessionTracker, sessions_dir

log = structlog.get_logger("session_db.service")  # the daemon's component name in log lines

ORPHAN_SCAN_MAX_S = 600.0  # tmp/ is checked for orphans every orphan_ttl_s / 4, at most this apart

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
        self.watching = WatcherSupervisor(
            self.wake,
            debounce_ms=settings.watch_debounce_ms,
            force_polling=settings.force_polling,
        )
        self.url: str | None = settings.url
        self.sink: PostgresSink | None = None
        self.ingestor: Ingestor | None = None
        self.tracker: SessionTracker | None = None
        self.transcripts: TranscriptReader | None = None
        self._transcripts_due: set[str] = set()
        self.price_drift = DriftWatch()
        self.db_roots: set[str] = set()
        self.totals = DrainStats()
        self.health = Heartbeat(settings, self.spool, self.totals)
        self._last_watchdog = 0.0
        self.jobs = self._schedule()

    def _schedule(self) -> Scheduler:
        """The periodic jobs of a pass, in the order they run (see docs of daemon.scheduler)."""
        scan_s = self.settings.scan_interval_s
        jobs = Scheduler()
        jobs.add("state_files", scan_s, self._sync_state_files)
        jobs.add("heartbeat", scan_s, self._heartbeat)
        # maintain_in_daemon returns its own next delay (math.inf: not ours to maintain)
        jobs.add(
            "partitions", partitions.DAEMON_INTERVAL_S, self._maintain_partitions, forced=False
        )
        jobs.add("transcripts", scan_s, self._read_transcripts)
        jobs.add("budgets", budgets.CHECK_INTERVAL_S, self._check_budgets)
        jobs.add("price_drift", price_drift.CHECK_INTERVAL_S, self._check_price_drift, forced=False)
        orphan_s = min(self.settings.orphan_ttl_s / 4, ORPHAN_SCAN_MAX_S)
        jobs.add("orphans", orphan_s, self._settle_orphans)
        return jobs

    @property
    def db_state(self) -> str:
        return self.health.db_state

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
        self.sink = wiring.postgres_sink(self.settings, self.url)
        self.ingestor = wiring.ingestor(self.settings, self.spool, self.sink)
        self.tracker = wiring.tracker(self.settings, self.sink)
        self.transcripts = wiring.transcript_reader(self.settings, self.sink)
        self.ingestor.on_event = self._note_event

    def shutdown(self, *, clean: bool = False) -> None:
        self.watching.stop()
        if self.ingestor is not None:
            self.ingestor.close()  # the parse workers, if any
        if clean and not self._one_shot and self.sink is not None:
            self.health.mark_stopped(self.sink)  # best effort: the database may be down
        if self.sink is not None:
            self.sink.close()
        if self.cluster is not None:
            self.cluster.release()  # the last user of the embedded cluster stops it

    # --- database readiness -------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Migrate the embedded cluster; check an external database's revision."""
        assert self.url is not None
        timeout_s = self.settings.connect_timeout_s
        if self.settings.embedded:
            migrations.upgrade(self.url, connect_timeout_s=timeout_s)
        if migrations.check(self.url, connect_timeout_s=timeout_s) != migrations.head_revision():
            self.jobs.suspend("partitions")  # a newer schema: its own session-db maintains it

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
        """Start the watcher, replace it when the roots change, restart it after a backoff when
        it died (see watcher.WatcherSupervisor)."""
        self.watching.ensure(self.watch_paths())

    @property
    def watcher(self) -> Watcher | None:
        return self.watching.watcher

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
                self.health.set_db_state("up")
                backoff.reset()
            except TransientDbError as exc:
                self.health.set_db_state("down", error=str(exc))
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

    def pass_once(self, *, force_scan: bool = False) -> DrainStats:
        """One authoritative pass: spool, then the scheduler's jobs that are due (all with force_scan)."""
        assert self.ingestor is not None
        stats = self.ingestor.drain(self._between_steps)
        for name in ("batches", "files", "inserted", "duplicates", "quarantined", "redactions"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        if self._state_dirty or self.roots_changed():
            self.jobs.request("state_files")
        ran = self.jobs.run_due(time.monotonic(), force=force_scan)
        if "transcripts" not in ran and self._transcripts_due:
            # A turn or an agent ended: read just its transcripts now.
            assert self.transcripts is not None
            paths, self._transcripts_due = self._transcripts_due, set()
            log_transcripts(self.transcripts.sync(only=paths, progress=self._between_chunks))
        return stats

    # --- the scheduler's jobs (each gets the pass's monotonic time) -----------------------

    def _sync_state_files(self, _now: float) -> None:
        assert self.tracker is not None
        self._state_dirty = False
        self.tracker.sync(self.roots(), progress=self._between_steps)
        if self.watcher is not None:
            self.ensure_watcher()

    def _heartbeat(self, _now: float) -> None:
        """Record this daemon's state in daemon_heartbeats (one row per run; none for one-shot runs)."""
        if self._one_shot:
            self.health.check_backlog(self.spool.backlog())
            return
        assert self.sink is not None
        self.health.record(self.sink.connection())

    def _maintain_partitions(self, _now: float) -> float:
        assert self.sink is not None
        return partitions.maintain_in_daemon(self.sink.connection)

    def _read_transcripts(self, _now: float) -> None:
        assert self.transcripts is not None
        self._transcripts_due.clear()
        log_transcripts(self.transcripts.sync(progress=self._between_chunks))

    def _check_budgets(self, _now: float) -> None:
        assert self.sink is not None
        budgets.check(self.sink.connection())

    def _check_price_drift(self, _now: float) -> None:
        assert self.sink is not None
        self.price_drift.check(self.sink.connection())

    def _settle_orphans(self, _now: float) -> None:
        for name in self.spool.orphans(self.settings.orphan_ttl_s):
            outcome = self.spool.settle_orphan(name)
            log.warning("orphan_settled", file=name, outcome=outcome)

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
                last = self.pass_once(force_scan=True)
                self.totals.deferred = last.deferred  # what this one pass left in new/
                # Roots discovered in this pass may hold state files too.
                assert self.tracker is not None
                self.tracker.sync(self.roots())
        finally:
            self.shutdown()
            self._waker.close()
        return self.totals
