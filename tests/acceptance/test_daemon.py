"""The daemon as a subprocess, fed by the real hook: rows, agents, crashes, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import HOOK, Daemon, Env, assert_oracle, run_hook, wait_for
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event

ALL = FIXTURES / "hooks" / "all"


def spool_names(env: Env) -> set[str]:
    return {p.name for p in (env.spool / "new").iterdir()}


def feed_fixtures(env: Env, scenarios: list[str] | None = None) -> tuple[set[str], Counter[str]]:
    """Run the real hook once per recorded payload; return the accepted names and event counts."""
    before = spool_names(env) if (env.spool / "new").exists() else set()
    counts: Counter[str] = Counter()
    for scenario in scenarios or sorted(p.name for p in ALL.iterdir()):
        for f in sorted((ALL / scenario).iterdir()):
            event = f.stem.split("_", 1)[1]
            done = run_hook(
                env, f.read_bytes(), event, {"CLAUDE_PROJECT_DIR": str(env.root / "project")}
            )
            assert (0, b"") == (done.returncode, done.stdout)
            counts[event] += 1
    return spool_names(env) - before, counts


def test_daemon_ingests_every_fixture_event_from_the_hook(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """Every payload Claude Code 2.1.330 sent, passed through the real hook, is one row of its type."""
    accepted, counts = feed_fixtures(env)
    daemon = start_daemon()
    wait_for(lambda: env.rows() == len(accepted), what=f"{len(accepted)} rows")
    assert 0 == daemon.stop()
    assert_oracle(env, accepted)
    with psycopg.connect(env.db_url) as conn:
        by_type: dict[str, int] = dict(
            conn.execute("SELECT event_type, count(*) FROM agent_logs GROUP BY 1").fetchall()
        )
        agents = conn.execute(
            "SELECT count(*) FILTER (WHERE claude_agent_id IS NULL),"
            " count(*) FILTER (WHERE parent_agent_id IS NOT NULL) FROM agents"
        ).fetchone()
        unlinked = conn.execute("SELECT count(*) FROM agent_logs WHERE agent_id IS NULL").fetchone()
    assert dict(counts) == by_type
    # 8 distinct Claude Code sessions (main and compact share one); subagents: main, perm, tui, compaction fork.
    assert (8, 4) == agents
    assert (0,) == unlinked


def test_daemon_picks_up_events_written_while_running(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """With the daemon idle, an event from the hook becomes a row without a restart."""
    daemon = start_daemon()
    daemon.wait_logged("watching")
    pids = []
    for f in sorted((ALL / "expand").iterdir()):
        proc = subprocess.Popen(
            [str(HOOK), "--spool", str(env.spool), f.stem.split("_", 1)[1]],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env.vars(),
        )  # fmt: skip
        proc.communicate(f.read_bytes(), timeout=30)
        assert 0 == proc.returncode
        pids.append(proc.pid)
    wait_for(lambda: env.rows() == len(pids), what="rows of events written while running")
    assert 0 == daemon.stop()
    with psycopg.connect(env.db_url) as conn:
        uids = [r[0] for r in conn.execute("SELECT event_uid FROM agent_logs")]
    # The hook names each file <ns>.P<pid>R<random>.<host>: one row per hook process.
    assert sorted(pids) == sorted(int(u.split(".P", 1)[1].split("R", 1)[0]) for u in uids)
    assert_oracle(env, set(uids))


@pytest.mark.parametrize("point", ["pre_commit", "post_commit", "mid_unlink"])
def test_daemon_kill9_at_any_point_settles_each_event_once(
    env: Env, start_daemon: Callable[..., Daemon], point: str
) -> None:
    """kill -9 before COMMIT, after COMMIT or between unlinks: after a restart every event is one row."""
    accepted, _ = feed_fixtures(env, ["main"])
    daemon = start_daemon(SESSION_DB_TEST_PAUSE=point)
    marker = env.state / f"paused-{point}"
    wait_for(marker.exists, what=f"pause point {point}")
    daemon.kill()
    committed = env.rows()
    left = spool_names(env)
    if point == "pre_commit":
        assert (0, accepted) == (committed, left)
    elif point == "post_commit":
        assert (len(accepted), accepted) == (committed, left)
    else:
        assert len(accepted) == committed
        assert 0 < len(left) < len(accepted)
    marker.unlink()
    again = start_daemon()
    wait_for(lambda: not spool_names(env), what="spool drained after restart")
    assert 0 == again.stop()
    assert_oracle(env, accepted)


def test_daemon_sigterm_exits_zero_second_signal_at_once(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """SIGTERM stops an idle daemon with exit 0; a second SIGTERM kills one stuck mid-batch at once."""
    idle = start_daemon()
    idle.wait_logged("watching")
    assert 0 == idle.stop(timeout=10)
    accepted, _ = feed_fixtures(env, ["expand"])
    stuck = start_daemon(SESSION_DB_TEST_PAUSE="pre_commit")
    wait_for((env.state / "paused-pre_commit").exists, what="pause point")
    stuck.signal(signal.SIGTERM)
    stuck.wait_logged("stop_requested")
    stuck.signal(signal.SIGTERM)
    assert -signal.SIGTERM == stuck.proc.wait(10)
    (env.state / "paused-pre_commit").unlink()
    again = start_daemon()
    wait_for(lambda: not spool_names(env), what="drained")
    assert 0 == again.stop()
    assert_oracle(env, accepted)


def ingest_once(env: Env, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "ingest", "--once"],
        env={**env.vars(), **extra}, capture_output=True, timeout=300, check=False,
    )  # fmt: skip


def test_ingest_once_10k_events_kill9_midway_exactly_10k(env: Env) -> None:
    """10k spooled events → 10k rows, a second run adds none, a kill -9 midway still ends with exactly 10k."""
    payloads = [f.read_bytes() for f in sorted((ALL / "main").iterdir())]
    accepted = {
        write_event(env.spool, payloads[i % len(payloads)], event="PostToolUse", fsync=False)
        for i in range(10_000)
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "daemon", "ingest", "--once"],
        env={**env.vars(), "SESSION_DB_BATCH_MAX_FILES": "500"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: env.rows() > 0, what="a first committed batch")
    first.kill()
    first.wait()
    assert 0 < env.rows() <= 10_000
    second = ingest_once(env)
    assert 0 == second.returncode, second.stderr[-2000:]
    assert 10_000 == env.rows()
    third = ingest_once(env)
    assert 0 == third.returncode, third.stderr[-2000:]
    assert 10_000 == env.rows()
    assert_oracle(env, accepted)


def test_daemon_refuses_old_schema_with_exit_78(tmp_path: Path, empty_db_url: str) -> None:
    """An external database without our schema stops the daemon with exit 78 and says `session-db migrate`."""
    env = Env(tmp_path, empty_db_url)
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run"],
        env=env.vars(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert 78 == done.returncode
    assert b"session-db migrate" in done.stderr


def test_hook_command_never_prints_and_exits_zero_on_broken_spool(env: Env, tmp_path: Path) -> None:
    """The hook under an unusable spool path prints nothing on stdout, one stderr line, exit 0."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env_vars = {**env.vars(), "SESSION_DB_SPOOL": str(blocker / "spool")}
    done = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / "hooks" / "session-db-hook"), "Stop"],
        input=b"{}", capture_output=True, env=env_vars, timeout=30, check=False,
    )  # fmt: skip
    assert (0, b"", 1) == (done.returncode, done.stdout, done.stderr.count(b"\n"))
    assert os.path.exists(blocker)
