"""The daemon with parse worker processes (SESSION_DB_PARSE_WORKERS): a worker killed with
SIGKILL mid-batch loses nothing and doubles nothing, and no worker outlives the daemon."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from daemon.parse_pool import PAUSE_POINT, POOL_MIN_FILES
from daemon.spool import Spool
from tests.acceptance.conftest import Daemon, Env, assert_oracle, wait_for
from tests.support.procs import gone
from tests.support.spoolwriter import write_event

EVENTS = POOL_MIN_FILES * 3  # a batch large enough for the workers
WORKERS = "2"


def feed(env: Env, n: int) -> set[str]:
    Spool(env.spool).ensure()
    return {
        write_event(
            env.spool,
            b'{"session_id": "pool-%d", "hook_event_name": "PostToolUse", "tool_name": "Bash"}'
            % (i // 50),
            event="PostToolUse",
            fsync=False,
        )
        for i in range(n)
    }


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent_of(int(entry.name)) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
    return found


def test_parse_worker_kill9_mid_batch_settles_each_event_once(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """A worker killed with SIGKILL while it holds part of a batch: the pool is rebuilt, the
    batch read again from new/ (nothing was unlinked), every event becomes one row, the daemon
    logs parse_worker_lost and stops with exit 0."""
    accepted = feed(env, EVENTS)
    daemon = start_daemon(SESSION_DB_PARSE_WORKERS=WORKERS, SESSION_DB_TEST_PAUSE=PAUSE_POINT)
    marker = env.state / f"paused-{PAUSE_POINT}"
    wait_for(lambda: marker.exists() and marker.read_text(), what="a worker paused mid-batch")
    worker = int(marker.read_text())
    assert 0 == env.rows(), "nothing commits while a worker holds part of the batch"
    assert accepted == {p.name for p in (env.spool / "new").iterdir()}
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: not any((env.spool / "new").iterdir()), what="spool drained")
    daemon.wait_logged("parse_worker_lost")
    assert 0 == daemon.stop()
    assert_oracle(env, accepted)
    assert len(accepted) == env.rows()


def test_parse_workers_exit_with_a_killed_daemon(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """kill -9 of the daemon while its workers run: the workers exit too (the fork server sees
    the daemon gone, the workers their parent), and a restarted daemon settles every event."""
    accepted = feed(env, EVENTS)
    daemon = start_daemon(SESSION_DB_PARSE_WORKERS=WORKERS, SESSION_DB_TEST_PAUSE=PAUSE_POINT)
    marker = env.state / f"paused-{PAUSE_POINT}"
    wait_for(lambda: marker.exists() and marker.read_text(), what="a worker paused mid-batch")
    worker = int(marker.read_text())
    server = parent_of(worker)
    workers = children_of(server)
    assert worker in workers
    daemon.kill()
    wait_for(lambda: all(gone(p) for p in [server, *workers]), what="workers gone")
    again = start_daemon(SESSION_DB_PARSE_WORKERS=WORKERS)  # the marker stays: no pause
    wait_for(lambda: not any((env.spool / "new").iterdir()), what="spool drained after restart")
    assert 0 == again.stop()
    assert_oracle(env, accepted)
