"""The daemon owns its embedded cluster: a killed postmaster is restarted, several users share
it without stopping it under each other, and a kill -9 during initdb does not wedge the next
start (issue 12 items 1, 5, 8; docs/reliability-processes.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from daemon.cluster import EmbeddedCluster
from tests.acceptance.conftest import Daemon, Env, HookLoop, wait_for

pytestmark = pytest.mark.slow  # initdb and postmaster restarts

START_S = 120.0  # initdb and a first start on a loaded machine
HOOK_INTERVAL_S = 0.05


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Env]:
    """An Env without SESSION_DB_URL: the daemon runs its own cluster under state/pg."""
    env = Env(tmp_path, "", {"SESSION_DB_URL": ""})  # unset: embedded
    env.db_url = EmbeddedCluster(env.state).url()  # for the test's own queries
    yield env
    cluster = EmbeddedCluster(env.state)
    if (cluster.data_dir / "PG_VERSION").exists():
        cluster.stop()


def _postmaster_pid(env: Env) -> int | None:
    try:
        return int((env.state / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _markers(env: Env) -> list[str]:
    with psycopg.connect(env.db_url, connect_timeout=5) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT payload->>'marker' FROM agent_logs WHERE event_category = 'hook'"
            )
        ]


def _markers_or_none(env: Env) -> list[str] | None:
    try:
        return _markers(env)
    except psycopg.Error:
        return None




def _assert_each_once(env: Env, accepted: set[str]) -> None:
    markers = _markers(env)
    assert len(markers) == len(set(markers)), "duplicate rows"
    assert accepted == set(markers)
    assert [] == sorted(p.name for p in (env.spool / "new").iterdir())


@pytest.mark.timeout(4 * START_S)
def test_postmaster_killed_is_restarted_and_every_event_lands_once(
    embedded: Env, tmp_path: Path
) -> None:
    """kill -9 of the embedded postmaster (the OOM killer) under a running daemon while hooks
    keep writing: the daemon starts the cluster again (`cluster_restarted`), and every
    accepted event is exactly one row."""
    env = embedded
    daemon = Daemon(env, tmp_path / "daemon.log")
    hooks = HookLoop(env, "k", HOOK_INTERVAL_S)
    try:
        daemon.wait_logged("database_up", timeout=START_S)
        hooks.start()
        wait_for(lambda: len(_markers_or_none(env) or []) >= 5, START_S, "rows before the kill")
        old_pid = _postmaster_pid(env)
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        daemon.wait_logged("cluster_restarted", timeout=START_S)
        restarted_at = time.monotonic()
        time.sleep(1)  # hooks keep writing after the restart
        hooks.stop()
        accepted = set(hooks.accepted)
        wait_for(
            lambda: set(_markers_or_none(env) or []) >= accepted, START_S, "every accepted event"
        )
        landed_at = time.monotonic()
        assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
        assert old_pid != _postmaster_pid(env)
        _assert_each_once(env, accepted)  # while the daemon (the cluster's user) still runs
        assert 0 == daemon.stop()
    finally:
        hooks.stop()
        if daemon.proc.poll() is None:
            daemon.kill()
    assert [] == hooks.failed
    print(
        f"\npostmaster kill -9: cluster_restarted after {restarted_at - killed_at:.1f} s, "
        f"every accepted event landed after {landed_at - killed_at:.1f} s "
        f"({len(accepted)} events)"
    )


def _once(env: Env) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "ingest", "--once"],
        env=env.vars(),
        capture_output=True,
        text=True,
        timeout=START_S,
        check=False,
        cwd=env.root,
    )


@pytest.mark.timeout(4 * START_S)
def test_cluster_users_never_stop_it_under_each_other_and_the_last_one_out_stops_it(
    embedded: Env, tmp_path: Path
) -> None:
    """A daemon and `ingest --once`, then two daemons, on one embedded cluster: a user that
    leaves never stops the server under another (no `database_down`, same postmaster); the
    last user out stops it."""
    env = embedded
    first = Daemon(env, tmp_path / "first.log")
    second: Daemon | None = None
    hooks = HookLoop(env, "u", HOOK_INTERVAL_S)
    try:
        first.wait_logged("database_up", timeout=START_S)
        pid = _postmaster_pid(env)
        hooks.start()
        done = _once(env)  # started nothing, must stop nothing
        assert 0 == done.returncode, done.stderr[-3000:]
        assert pid == _postmaster_pid(env)

        second = Daemon(env, tmp_path / "second.log")
        second.wait_logged("database_up", timeout=START_S)
        assert 0 == first.stop()  # the daemon that started the cluster leaves first
        assert pid == _postmaster_pid(env)
        time.sleep(1)  # hooks keep writing; only the second daemon ingests now
        hooks.stop()
        accepted = set(hooks.accepted)
        wait_for(lambda: set(_markers_or_none(env) or []) >= accepted, START_S, "every event")
        assert pid == _postmaster_pid(env)
        assert 0 == second.stop()
    finally:
        hooks.stop()
        for d in (first, second):
            if d is not None and d.proc.poll() is None:
                d.kill()
    for d in (first, second):
        assert d is not None
        events = [e.get("event") for e in d.events()]
        assert "database_down" not in events
        assert "cluster_restarted" not in events
    assert [] == hooks.failed
    assert not EmbeddedCluster(env.state).is_running(), "the last user out stops the cluster"
    assert any(e.get("event") == "cluster_stopped" for e in second.events())
    assert "cluster_left_running" in done.stderr
    first_events = [e.get("event") for e in first.events()]
    assert "cluster_left_running" in first_events
    assert "cluster_stopped" not in first_events
    cluster = EmbeddedCluster(env.state)
    cluster.ensure_started()
    try:
        _assert_each_once(env, accepted)
    finally:
        cluster.release()


@pytest.mark.timeout(4 * START_S)
def test_kill_9_during_initdb_then_the_next_start_succeeds(embedded: Env) -> None:
    """`ingest --once` killed with -9 while initdb runs leaves an orphaned initdb writing its
    scratch directory; the next start waits for it (the lock is inherited), uses a fresh
    scratch directory, succeeds, and leaves no scratch directory behind."""
    env = embedded
    pg = env.state / "pg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "ingest", "--once"],
        env=env.vars(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=env.root,
    )
    try:
        wait_for(
            lambda: any((d / "global").is_dir() for d in pg.glob("data.initdb*")),
            START_S,
            "initdb writing its scratch directory",
        )
    finally:
        proc.send_signal(signal.SIGKILL)  # the process only: its initdb lives on, orphaned
        proc.wait(30)
    done = _once(env)
    assert 0 == done.returncode, done.stderr[-3000:]
    assert (pg / "data" / "PG_VERSION").is_file()
    assert [] == sorted(p.name for p in pg.glob("data.initdb*"))
