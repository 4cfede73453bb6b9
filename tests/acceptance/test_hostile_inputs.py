"""Issue 12: what a planted file or a payload can do to the running daemon (nothing that stops it).

Non-regular files and non-UTF-8 names in new/, numbers orjson cannot hold, transcript paths
outside the Claude folders and a symlinked state.json. Every test that feeds events ends with
the §9 oracle of reference/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from tests.acceptance.conftest import Daemon, Env, assert_oracle, run_hook, wait_for
from tests.support.spoolwriter import encode, write_event


def small_payload(i: int) -> bytes:
    return json.dumps({"hook_event_name": "Notification", "message": f"n{i}"}).encode()


def quarantine_reasons(env: Env) -> dict[str, str]:
    return {
        p.name.removesuffix(".reason.json"): json.loads(p.read_bytes())["reason"]
        for p in (env.spool / "quarantine").glob("*.reason.json")
    }


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """cwd = folder (a Unix socket path must be short: bind it by a relative name)."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def test_spool_fifo_socket_and_device_quarantined_daemon_keeps_ingesting(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """A FIFO, a Unix socket and a character device in new/ are quarantined `not_a_regular_file`
    (never opened for reading, never waited on); the events around them become rows and the
    daemon stays up and stops cleanly."""
    before = {write_event(env.spool, small_payload(i), event="Notification") for i in range(3)}
    new = env.spool / "new"
    os.mkfifo(new / "planted-fifo")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with inside(new):
        listener.bind("planted-socket")
    os.mknod(new / "planted-device", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    planted = {"planted-fifo", "planted-socket", "planted-device"}
    try:
        daemon = start_daemon()
        daemon.wait_logged("watching")
        after = {
            write_event(env.spool, small_payload(i), event="Notification") for i in range(3, 6)
        }
        wait_for(lambda: env.rows() == 6, timeout=20, what="6 rows around planted files")
        wait_for(lambda: len(quarantine_reasons(env)) == 3, timeout=20, what="3 quarantined")
        assert daemon.proc.poll() is None
        assert 0 == daemon.stop()
    finally:
        listener.close()
    assert dict.fromkeys(planted, "not_a_regular_file") == quarantine_reasons(env)
    assert_oracle(env, before | after | planted)


def ingest_once(env: Env) -> subprocess.CompletedProcess[bytes]:
    """`session-db ingest --once`: the daemon's drain without the file watcher."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", "ingest", "--once"],
        env=env.vars(),
        cwd=env.root,
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_spool_non_utf8_name_quarantined_ingest_keeps_going(env: Env) -> None:
    """A file whose name is not UTF-8 is quarantined `undecodable_name` with a printable name in
    its sidecar and its bytes kept; the drain does not crash on it (exit 0) and ingests the
    rest. (`ingest --once` runs the daemon's drain without the watcher, whose own handling of
    such names belongs to the watcher's fix.)"""
    good = {write_event(env.spool, small_payload(i), event="Notification") for i in range(3)}
    bad = os.fsdecode(b"1795436016586690803.P1R\xff\xfe00.host")
    data = encode(small_payload(9), event="Notification", received_ns=1, host="h")
    (env.spool / "new" / bad).write_bytes(data)
    done = ingest_once(env)
    assert 0 == done.returncode, done.stderr.decode(errors="replace")[-2000:]
    assert {bad: "undecodable_name"} == quarantine_reasons(env)
    sidecar = json.loads((env.spool / "quarantine" / (bad + ".reason.json")).read_bytes())
    assert "1795436016586690803.P1R\\xff\\xfe00.host" == sidecar["name"]
    assert data == (env.spool / "quarantine" / bad).read_bytes()
    assert 3 == env.rows()
    assert_oracle(env, good | {bad})


def test_json_numbers_beyond_orjson_stored_exactly(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """`1e400` and a 1000-digit integer (valid JSON, beyond a double or 64 bits) become a row
    whose jsonb numbers equal the text sent, not a `json_decode` quarantine."""
    big = "9" * 1000
    payload = b'{"hook_event_name":"Notification","huge":1e400,"long":' + big.encode() + b"}"
    daemon = start_daemon()
    daemon.wait_logged("watching")
    proc = run_hook(env, payload, "Notification")
    assert (0, b"", b"") == (proc.returncode, proc.stdout, proc.stderr)
    wait_for(lambda: env.rows() == 1, timeout=20, what="the row with big numbers")
    assert 0 == daemon.stop()
    with psycopg.connect(env.db_url) as conn:
        row = conn.execute(
            "SELECT event_uid, (payload->'huge')::numeric = 1e400, payload->>'long' FROM agent_logs"
            " WHERE event_category = 'hook'"
        ).fetchone()
    assert row is not None
    assert (True, big) == (row[1], row[2])
    assert {} == quarantine_reasons(env)
    assert_oracle(env, {row[0]})
