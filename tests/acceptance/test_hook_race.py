"""Issue 12 item 12: the hook never reports a failure for an event that landed.

The daemon may ingest and unlink a spool file between the hook's rename into new/ and its
fsync. A `sync` wrapper first in PATH widens that window at will: before syncing anything in
new/ it waits until the real daemon has emptied new/.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.acceptance.conftest import Daemon, Env, assert_oracle, run_hook, wait_for

WAIT_FOR_DAEMON = """#!/bin/sh
# sync, after the daemon has taken every file out of new/ (at most 10 s).
for a; do
    case $a in
        */new | */new/*)
            i=0
            while [ -n "$(ls -A "${a%/new*}/new" 2>/dev/null)" ] && [ "$i" -lt 200 ]; do
                sleep 0.05
                i=$((i + 1))
            done
            ;;
    esac
done
exec REAL_SYNC "$@"
"""


def row_uids(env: Env) -> list[str]:
    with psycopg.connect(env.db_url) as conn:
        return [r[0] for r in conn.execute("SELECT event_uid FROM agent_logs")]


def test_hook_event_ingested_before_its_fsync_reports_nothing(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """When the daemon ingests and unlinks the file before the hook's fsync, the hook still
    prints nothing and exits 0 (Maildir order: the file is fsynced in tmp/ before the rename,
    only the directory after it), and the event is one row."""
    real_sync = shutil.which("sync")
    assert real_sync is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "sync"
    wrapper.write_text(WAIT_FOR_DAEMON.replace("REAL_SYNC", real_sync))
    wrapper.chmod(0o755)
    daemon = start_daemon()
    daemon.wait_logged("watching")
    payload = json.dumps({"hook_event_name": "Notification", "message": "race"}).encode()
    path = f"{bindir}:{env.vars()['PATH']}"
    done = run_hook(env, payload, "Notification", {"PATH": path, "SESSION_DB_FSYNC": "full"})
    assert (0, b"", b"") == (done.returncode, done.stdout, done.stderr)
    wait_for(lambda: env.rows() == 1, what="the row")
    assert 0 == daemon.stop()
    accepted = set(row_uids(env))  # the hook names its file; the one row carries that name
    assert 1 == len(accepted)
    assert_oracle(env, accepted)
