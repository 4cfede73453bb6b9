"""Heartbeats: a running daemon shows in daemon_status; a backlog past the threshold warns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import psycopg

from tests.acceptance.conftest import Daemon, Env, wait_for
from tests.support.spoolwriter import write_event


def test_heartbeat_row_per_running_daemon(env: Env, start_daemon: Callable[..., Daemon]) -> None:
    """The daemon refreshes its daemon_status row (host, pid, events) and `status --json` lists it."""
    daemon = start_daemon()
    write_event(env.spool, b'{"session_id": "s-hb"}', event="Stop")

    def row() -> tuple[object, ...] | None:
        with psycopg.connect(env.db_url) as conn:
            return conn.execute("SELECT pid, events_ingested, stale FROM daemon_status").fetchone()

    wait_for(lambda: (r := row()) is not None and r[1] == 1, what="a heartbeat counting one event")
    assert (daemon.proc.pid, 1, False) == row()
    status = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--json"], env=env.vars(), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert 0 == status.returncode, status.stderr
    assert [daemon.proc.pid] == [d["pid"] for d in json.loads(status.stdout)["daemons"]]
    assert 0 == daemon.stop()


def test_heartbeat_backlog_warning_once(env: Env, start_daemon: Callable[..., Daemon]) -> None:
    """With the database unreachable and more files waiting than the threshold, one backlog_high warning."""
    env.extra["SESSION_DB_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    for i in range(6):
        write_event(env.spool, b"{}", event=f"E{i}", fsync=False)
    daemon = start_daemon(SESSION_DB_BACKLOG_WARN_FILES="5", SESSION_DB_CONNECT_TIMEOUT_S="1")
    daemon.wait_logged("backlog_high")
    wait_for(
        lambda: sum(e.get("event") == "database_down" for e in daemon.events()) >= 1, what="down"
    )
    assert 0 == daemon.stop()
    warnings = [e for e in daemon.events() if e.get("event") == "backlog_high"]
    assert [(6, "warning")] == [(w["files"], w["level"]) for w in warnings]
    assert 6 == len(os.listdir(env.spool / "new"))
