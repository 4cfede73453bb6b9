"""Issue 12: what a planted file or a payload can do to the running daemon (nothing that stops it).

Non-regular files and non-UTF-8 names in new/, numbers orjson cannot hold, transcript paths
outside the Claude folders and a symlinked state.json. Every test that feeds events ends with
the §5 oracle (docs/design/spool.md) of reference/reliability.md.
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

from tests.acceptance.conftest import Daemon, Env, assert_oracle, cli, run_hook, wait_for
from tests.conftest import FIXTURES
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


def test_spool_non_utf8_name_under_the_running_daemon_is_quarantined_and_ingestion_goes_on(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """Under `session-db run` (watcher included), a file whose name is not UTF-8 is quarantined
    `undecodable_name`, the daemon keeps running, and events written after it still land."""
    daemon = start_daemon()
    daemon.wait_logged("watching")
    bad = os.fsdecode(b"1795436016586690803.P1R\xff\xfe01.host")
    (env.spool / "new" / bad).write_bytes(
        encode(small_payload(9), event="Notification", received_ns=1, host="h")
    )
    wait_for(lambda: bad in quarantine_reasons(env), timeout=30, what="the quarantine")
    good = {write_event(env.spool, small_payload(i), event="Notification") for i in range(3)}
    wait_for(lambda: env.rows() == 3, timeout=30, what="the events after it")
    assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
    assert {bad: "undecodable_name"} == quarantine_reasons(env)
    assert 0 == daemon.stop()
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


def database_text(env: Env) -> str:
    """Every row of the tables a payload or a state file can reach, as text."""
    with psycopg.connect(env.db_url) as conn:
        return "\n".join(
            str(row[0])
            for table in ("agent_logs", "sessions", "token_usage", "transcript_files")
            for row in conn.execute(f"SELECT t::text FROM {table} t")  # noqa: S608 - fixed names
        )


def test_transcript_paths_outside_claude_projects_are_refused(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A transcript_path outside the Claude config dirs' projects/ (here /etc/shadow and a real
    transcript copied elsewhere) is never opened: one `transcript_refused` warning names each
    path, no usage row comes from it; a transcript under projects/ is still read."""
    env.extra["CLAUDE_CONFIG_DIR"] = str(tmp_path / "claude")
    source = next((FIXTURES / "transcripts" / "main").glob("*.jsonl"))
    outside = tmp_path / "elsewhere" / "stolen.jsonl"
    inside = tmp_path / "claude" / "projects" / "p" / "ok.jsonl"
    for copy in (outside, inside):
        copy.parent.mkdir(parents=True)
        copy.write_bytes(source.read_bytes())
    accepted = set()
    for i, path in enumerate(("/etc/shadow", str(outside), str(inside))):
        payload = json.dumps(
            {"hook_event_name": "Stop", "session_id": f"s-{i}", "transcript_path": path}
        ).encode()
        accepted.add(write_event(env.spool, payload, event="Stop"))
    daemon = start_daemon()
    wait_for(lambda: env.rows() == 3, timeout=20, what="3 rows")
    wait_for(
        lambda: env.rows("SELECT count(DISTINCT transcript_path) FROM token_usage") >= 1,
        timeout=20,
        what="usage from the transcript under projects/",
    )
    wait_for(
        lambda: len([e for e in daemon.events() if e.get("event") == "transcript_refused"]) >= 2,
        timeout=20,
        what="two transcript_refused warnings",
    )
    assert 0 == daemon.stop()
    refused = [str(e["path"]) for e in daemon.events() if e.get("event") == "transcript_refused"]
    assert sorted(["/etc/shadow", str(outside)]) == sorted(refused)  # once each
    with psycopg.connect(env.db_url) as conn:
        read_from = {r[0] for r in conn.execute("SELECT DISTINCT transcript_path FROM token_usage")}
        opened = {
            r[0]
            for r in conn.execute("SELECT path FROM transcript_files WHERE file_ino IS NOT NULL")
        }
    assert ({str(inside)}, set()) == (read_from, opened & {"/etc/shadow", str(outside)})
    assert_oracle(env, accepted)


def test_state_json_symlink_not_followed_and_state_redacted(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """A state.json that is a symlink is not followed (its target, a token, reaches no table);
    a regular state.json is stored with its secrets redacted like a hook payload."""
    root = tmp_path / "proj"
    sessions = root / "agents" / "sessions"
    (sessions / "linked").mkdir(parents=True)
    (sessions / "plain").mkdir(parents=True)
    target = tmp_path / "token.json"
    target.write_text(json.dumps({"slug": "linked", "status": "build", "note": "tok-LINKED-0001"}))
    (sessions / "linked" / "state.json").symlink_to(target)
    secret = "hunter2-PLAIN-0002"
    (sessions / "plain" / "state.json").write_text(
        json.dumps({"slug": "plain", "status": "build", "db_password": secret})
    )
    daemon = start_daemon(SESSION_DB_WATCH=str(root))
    daemon.wait_logged("state_applied")
    daemon.wait_logged("state_unreadable")
    assert 0 == daemon.stop()
    with psycopg.connect(env.db_url) as conn:
        slugs = [r[0] for r in conn.execute("SELECT slug FROM sessions ORDER BY slug")]
        state = conn.execute("SELECT state->>'db_password' FROM sessions").fetchone()
    dump = database_text(env)
    assert (["plain"], ("[REDACTED:key_name]",)) == (slugs, state)
    assert ("tok-LINKED-0001" not in dump, secret not in dump) == (True, True)


def test_transcript_with_a_non_utf8_name_is_refused_and_backfill_reads_the_rest(
    env: Env,
) -> None:
    """A transcript file whose name is not UTF-8 (a text column cannot hold it) is refused with
    one `transcript_refused` warning (reason `undecodable_name`); backfill exits 0 and reads
    the other transcripts."""
    env.extra["CLAUDE_CONFIG_DIR"] = str(env.root)
    project = env.root / "projects" / "p"
    project.mkdir(parents=True)
    good = next((FIXTURES / "transcripts" / "main").glob("*.jsonl"))
    (project / good.name).write_bytes(good.read_bytes())
    with open(os.fsencode(project) + b"/bad-\xff.jsonl", "wb") as fh:
        fh.write(good.read_bytes())
    done = cli(env, "backfill", timeout=120)
    assert 0 == done.returncode, done.stderr[-3000:]
    refused = [
        json.loads(line) for line in done.stderr.splitlines() if '"transcript_refused"' in line
    ]
    assert [("undecodable_name", f"{project}/bad-\\xff.jsonl")] == [
        (r["reason"], r["path"]) for r in refused
    ]
    with psycopg.connect(env.db_url) as conn:
        (files,) = conn.execute("SELECT count(*) FROM transcript_files").fetchone() or (0,)
        (responses,) = conn.execute("SELECT count(*) FROM token_usage").fetchone() or (0,)
    assert (1, True) == (files, responses > 0)
