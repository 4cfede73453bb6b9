"""What the running daemon reports about itself: database state, backlog, heartbeat row.

The worker loop tells it when the database goes up or down and when a pass ends. It logs the
transitions (`database_down`, `database_up`, `backlog_high`, `backlog_normal`) and what a
transcript pass read, keeps systemd's STATUS line current and writes this run's
daemon_heartbeats row.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from daemon import db
from daemon.config import Settings
from daemon.errors import PermanentRowError, TransientDbError, UnknownDbError
from daemon.ingest import DrainStats
from daemon.notify import notify
from daemon.sink import PostgresSink
from daemon.spool import Backlog, Spool
from daemon.transcripts import ReadStats

log = structlog.get_logger("session_db.service")  # the daemon's component name in log lines


class Heartbeat:
    """One daemon run's health: state of the database, the backlog, the heartbeat row."""

    def __init__(self, settings: Settings, spool: Spool, totals: DrainStats) -> None:
        self.settings = settings
        self.spool = spool
        self.totals = totals
        self.db_state = "unknown"
        self.started_at = datetime.now(UTC)
        self.last_error: tuple[str, datetime] | None = None
        self.backlog_high = False

    def set_db_state(self, state: str, **kw: Any) -> None:
        if state == "down":
            self.last_error = (str(kw.get("error", "")), datetime.now(UTC))
        if state != self.db_state:
            if state == "down":
                log.error("database_down", **kw)
            else:
                log.info("database_up")
            self.db_state = state
        if state == "down":
            self.check_backlog(self.spool.backlog())
        elif not self.backlog_high:
            notify("STATUS=db=up")

    def check_backlog(self, backlog: Backlog) -> None:
        """Warn once when the backlog passes a threshold, once more when it is back to normal."""
        oldest = backlog.oldest_age_s or 0.0
        high = (
            backlog.files > self.settings.backlog_warn_files
            or oldest > self.settings.backlog_warn_age_s
        )
        if high != self.backlog_high:
            self.backlog_high = high
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

    def record(self, conn: psycopg.Connection[Any]) -> None:
        """Upsert this run's daemon_heartbeats row (checking the backlog on the way)."""
        from daemon import __version__

        backlog = self.spool.backlog()
        self.check_backlog(backlog)
        error, error_at = self.last_error or (None, None)
        with db.transaction(conn) as cur:
            cur.execute(
                db.UPSERT_HEARTBEAT,
                {
                    "host": self.settings.host,
                    "pid": os.getpid(),
                    "version": __version__,
                    "spool": str(self.settings.spool),
                    "started_at": self.started_at,
                    "events": self.totals.inserted,
                    "quarantined": self.totals.quarantined,
                    "backlog_files": backlog.files,
                    "backlog_bytes": backlog.bytes,
                    "oldest_s": backlog.oldest_age_s,
                    "last_error": error,
                    "last_error_at": error_at,
                },
            )

    def mark_stopped(self, sink: PostgresSink) -> None:
        """Record a clean stop in this run's heartbeat row (best effort: logs when it cannot)."""
        if self.db_state != "up":
            return
        try:
            with sink.classified(), db.transaction(sink.connection()) as cur:
                cur.execute(
                    db.MARK_HEARTBEAT_STOPPED,
                    {
                        "host": self.settings.host,
                        "pid": os.getpid(),
                        "started_at": self.started_at,
                        "events": self.totals.inserted,
                        "quarantined": self.totals.quarantined,
                    },
                )
        except (TransientDbError, UnknownDbError, PermanentRowError) as exc:
            log.warning("stop_not_recorded", error=str(exc))


def log_transcripts(stats: ReadStats) -> None:
    """One `transcripts_read` line for a transcript pass that read or missed anything."""
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
