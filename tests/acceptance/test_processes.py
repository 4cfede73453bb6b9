"""What a dead server, a silent server, a signal or an odd directory can do to the daemon
(issue 12 items 4, 10, 11, 15, 16; docs/reliability-processes.md)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from daemon.errors import EX_CONFIG, EX_TEMPFAIL
from tests.acceptance.conftest import Daemon, Env, run_hook, wait_for
from tests.acceptance.conftest import cli as acceptance_cli
from tests.support.spoolwriter import write_event

CONNECT_TIMEOUT_S = 2
HANG_GUARD_S = 60  # a command still running after this is killed and the test fails
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1


def cli(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """A command run in env's root, killed (and the test failed) when it hangs."""
    return acceptance_cli(env, *args, timeout=HANG_GUARD_S, cwd=env.root, **extra)


def log_events(stderr: str) -> list[dict[str, object]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line[line.find("{") :]))
        except ValueError:
            continue
    return out


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP listener that completes the handshake (kernel backlog) and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        yield f"postgresql://nobody@127.0.0.1:{port}/none?sslmode=disable"


@pytest.mark.parametrize(
    ("command", "exit_code"),
    [(("status",), 1), (("status", "--json"), 1), (("migrate",), EX_TEMPFAIL)],
)
def test_commands_against_a_silent_server_fail_within_the_connect_timeout(
    tmp_path: Path, silent_server: str, command: tuple[str, ...], exit_code: int
) -> None:
    """A server that accepts TCP and never answers: `status` and `migrate` end on their own
    (connect timeout) with a clear message and the documented exit code (status 1: database
    unreachable; migrate 75: try again later), never with a traceback."""
    env = Env(tmp_path, silent_server, {"SESSION_DB_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S)})
    done = cli(env, *command)
    assert exit_code == done.returncode, done.stdout + done.stderr
    assert "timeout" in (done.stdout + done.stderr).lower()
    assert "crashed" not in done.stderr
    assert "Traceback" not in done.stderr


def test_run_without_postgresql_binaries_exits_78_without_a_crash(tmp_path: Path) -> None:
    """No SESSION_DB_URL and no PostgreSQL binaries: a configuration error (exit 78, one
    `fatal` line naming the fix), not a crash (exit 70) that systemd would restart-loop."""
    env = Env(tmp_path, "", {"SESSION_DB_PG_BIN": str(tmp_path / "no-such-dir")})
    for command in (("run",), ("ingest", "--once"), ("status",)):
        done = cli(env, *command)
        if command == ("status",):
            assert 1 == done.returncode
            assert "SESSION_DB_PG_BIN" in done.stdout
            continue
        assert EX_CONFIG == done.returncode, done.stderr
        assert "crashed" not in done.stderr
        fatal = [e for e in log_events(done.stderr) if e.get("event") == "fatal"]
        assert 1 == len(fatal)
        assert "SESSION_DB_PG_BIN" in str(fatal[0]["error"])


def test_run_with_postgresql_14_binaries_is_refused_up_front(tmp_path: Path) -> None:
    """The schema needs PostgreSQL >= 15 (NULLS NOT DISTINCT): older binaries are refused
    before initdb, exit 78, with a message that says so."""
    bindir = tmp_path / "pg14"
    bindir.mkdir()
    for name in ("initdb", "pg_ctl", "postgres"):
        tool = bindir / name
        tool.write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 14.10'\n")
        tool.chmod(0o755)
    env = Env(tmp_path, "", {"SESSION_DB_PG_BIN": str(bindir)})
    done = cli(env, "run")
    assert EX_CONFIG == done.returncode, done.stderr
    assert "PostgreSQL 14, older than the supported 15" in done.stderr
    assert not (env.state / "pg" / "data").exists()


def _daemons(env: Env) -> list[dict[str, object]]:
    done = cli(env, "status", "--json")
    assert 0 == done.returncode, done.stderr
    daemons = json.loads(done.stdout)["daemons"]
    assert isinstance(daemons, list)
    return daemons


def test_status_tells_a_clean_stop_from_a_crash_and_lists_no_one_shot_runs(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """After SIGTERM the daemon's row says `stopped` (never STALE); a daemon killed with -9
    stays `running` until it goes stale; `ingest --once` leaves no row at all."""
    write_event(env.spool, b'{"hook_event_name":"SessionStart"}', event="SessionStart")
    assert 0 == cli(env, "ingest", "--once").returncode
    assert [] == _daemons(env)

    clean = start_daemon()
    wait_for(lambda: len(_daemons(env)) == 1, what="the heartbeat row")
    assert 0 == clean.stop()
    [row] = _daemons(env)
    assert (row["pid"], row["state"], row["stale"]) == (clean.proc.pid, "stopped", False)
    assert row["stopped_at"] is not None
    text = cli(env, "status").stdout
    assert f"pid {clean.proc.pid} (stopped)" in text

    crashed = start_daemon()
    wait_for(lambda: len(_daemons(env)) == 2, what="the second heartbeat row")
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.proc.wait(30)
    states = {d["pid"]: (d["state"], d["stopped_at"]) for d in _daemons(env)}
    assert ("running", None) == states[crashed.proc.pid]  # stale once silent for 60 s
    with psycopg.connect(env.db_url) as conn:
        conn.execute("UPDATE daemon_heartbeats SET last_heartbeat = now() - interval '2 minutes'")
    states = {d["pid"]: (d["state"], d["stale"]) for d in _daemons(env)}
    assert ("stale", True) == states[crashed.proc.pid]
    assert ("stopped", False) == states[clean.proc.pid]


LOGGED_DELAY_ROUNDING_S = 0.005  # database_retry logs delay_s rounded to 2 decimals


def _retries(daemon: Daemon) -> list[tuple[float, float]]:
    """(time, delay_s) of each `database_retry` line, in log order."""
    out = []
    for e in daemon.events():
        if e.get("event") == "database_retry":
            at = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
            out.append((at, float(str(e["delay_s"]))))
    return out


def test_backoff_holds_while_new_spool_files_keep_waking_the_loop(
    tmp_path: Path, start_daemon: Callable[..., Daemon], env: Env
) -> None:
    """During an outage every retry waits its whole backoff delay although hooks keep adding
    files (each wakes the loop): the next attempt never starts before the delay ends."""
    env.db_url = UNREACHABLE
    daemon = start_daemon(SESSION_DB_CONNECT_TIMEOUT_S="1")
    daemon.wait_logged("database_down")
    end = time.monotonic() + 8
    n = 0
    while time.monotonic() < end:
        write_event(env.spool, f'{{"hook_event_name":"Stop","n":{n}}}'.encode(), event="Stop")
        n += 1
        time.sleep(0.05)
    retries = _retries(daemon)
    assert 0 == daemon.stop()
    assert len(retries) >= 2
    for (at, delay), (next_at, _) in itertools.pairwise(retries):
        # The next attempt's line comes after the delay (and the attempt) of this one. The log
        # shows the delay rounded to 10 ms, so allow that rounding and nothing more.
        assert next_at >= at + delay - LOGGED_DELAY_ROUNDING_S, (at, delay, next_at)
    assert n > 10 * len(retries)


NON_UTF8 = b"slug-\xff\xfe"


def test_non_utf8_slug_directory_is_skipped_with_one_warning_and_ingestion_goes_on(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A slug directory whose name is not UTF-8 under a watched agents/sessions: the daemon
    keeps running, skips it with one warning naming it escaped, applies the good state.json
    beside it and keeps ingesting hook events."""
    project = tmp_path / "project"
    sessions = project / "agents" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "good").mkdir()
    (sessions / "good" / "state.json").write_text(json.dumps({"slug": "good", "status": "plan"}))
    daemon = start_daemon(SESSION_DB_WATCH=str(project))
    wait_for(lambda: env.rows("SELECT count(*) FROM sessions WHERE slug = 'good'") == 1)
    daemon.wait_logged("watching")

    bad = os.fsencode(sessions) + b"/" + NON_UTF8
    os.mkdir(bad)
    with open(bad + b"/state.json", "wb") as fh:
        fh.write(json.dumps({"status": "plan"}).encode())
    daemon.wait_logged("state_path_undecodable")
    (sessions / "good" / "state.json").write_text(json.dumps({"slug": "good", "status": "build"}))
    accepted = []
    for i in range(3):
        payload = f'{{"hook_event_name":"Stop","session_id":"s{i}"}}'.encode()
        assert 0 == run_hook(env, payload, "Stop").returncode
        accepted.append(i)
    wait_for(lambda: env.rows() == len(accepted), what="hook events after the bad slug")
    wait_for(
        lambda: env.rows("SELECT count(*) FROM sessions WHERE slug = 'good' AND status = 'build'"),
        what="the good state.json applied again",
    )
    assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
    warnings = [e for e in daemon.events() if e.get("event") == "state_path_undecodable"]
    assert 1 == len(warnings)
    assert "slug-\\xff\\xfe" in str(warnings[0]["path"])
    assert 0 == daemon.stop()
