"""Failure matrix rows 15-17 and 19-22 (docs/design/spool.md §7), daemon as a subprocess.

Overflowing inotify, racing session folders, many concurrent writers, two daemons on one
spool, clock skew, planted directories and symlinks, an unusable spool, a dead watcher.
Every test that feeds events ends with the §5 oracle (docs/design/spool.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import Daemon, Env, assert_oracle, wait_for
from tests.conftest import FIXTURES, REPO
from tests.support.spoolwriter import write_event

ALL = FIXTURES / "hooks" / "all"
HOUR_NS = 3600 * 10**9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fixture_payloads() -> list[tuple[str, bytes]]:
    """(event name, payload) of every recorded Claude Code hook call."""
    return [
        (f.stem.split("_", 1)[1], f.read_bytes())
        for scenario in sorted(ALL.iterdir())
        for f in sorted(scenario.iterdir())
    ]


def small_payload(i: int) -> bytes:
    return json.dumps({"hook_event_name": "Notification", "message": f"n{i}"}).encode()


def row_uids(env: Env) -> list[str]:
    with psycopg.connect(env.db_url) as conn:
        return [
            r[0]
            for r in conn.execute("SELECT event_uid FROM agent_logs WHERE event_category = 'hook'")
        ]


def quarantine_reasons(env: Env) -> dict[str, str]:
    qdir = env.spool / "quarantine"
    return {
        p.name.removesuffix(".reason.json"): json.loads(p.read_bytes())["reason"]
        for p in qdir.glob("*.reason.json")
    }


def log_events(daemon: Daemon, name: str) -> list[dict[str, object]]:
    return [e for e in daemon.events() if e.get("event") == name]


def watched(event: dict[str, object]) -> list[str]:
    """The paths of one `watching` log line."""
    paths = event.get("paths")
    return [str(p) for p in paths] if isinstance(paths, list) else []


# --- row 15: inotify overflow ----------------------------------------------------------


def test_inotify_overflow_all_files_ingested_by_scans(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """20,000 files created while the daemon is stopped (inotify queue overflows) all become rows."""
    count = 20_000  # above the default fs.inotify.max_queued_events (16384)
    daemon = start_daemon()
    daemon.wait_logged("watching")
    daemon.signal(signal.SIGSTOP)
    try:
        accepted = {
            write_event(env.spool, small_payload(i), event="Notification", fsync=False)
            for i in range(count)
        }
    finally:
        daemon.signal(signal.SIGCONT)
    wait_for(lambda: env.rows() == count, timeout=60, what=f"{count} rows after SIGCONT")
    assert count == env.rows()
    assert 0 == daemon.stop()
    assert_oracle(env, accepted)


# --- row 16: new session dir race ------------------------------------------------------


def stored_states(env: Env) -> dict[str, str | None]:
    with psycopg.connect(env.db_url) as conn:
        return dict(conn.execute("SELECT slug, state_sha256 FROM sessions").fetchall())


def file_states(sessions: Path) -> dict[str, str]:
    """Oracle: slug → sha256 of its state.json as it is on disk now."""
    return {
        p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sessions.glob("*/state.json")
    }


@pytest.mark.parametrize("sessions_exists", [True, False], ids=["existing", "created-later"])
def test_session_dir_race_every_state_converges(
    env: Env, start_daemon: Callable[..., Daemon], sessions_exists: bool
) -> None:
    """50 × (mkdir sessions/<slug>, write state.json at once): each slug's row holds the file's sha256."""
    root = env.root / "project"
    sessions = root / "agents" / "sessions"
    (sessions if sessions_exists else root).mkdir(parents=True)
    daemon = start_daemon(SESSION_DB_WATCH=str(root))
    daemon.wait_logged("watching")
    for i in range(50):
        slug = f"race-{i:02d}"
        folder = sessions / slug
        folder.mkdir(parents=True)
        state = {"slug": slug, "title": f"race {i}", "status": "spec", "agents": []}
        (folder / "state.json").write_bytes(json.dumps(state).encode())
    expected = file_states(sessions)
    assert 50 == len(expected)
    wait_for(lambda: stored_states(env) == expected, timeout=20, what="50 converged sessions")
    # The folder created after start is watched too (inotify(7): watch, then scan).
    wait_for(
        lambda: any(str(sessions) in watched(e) for e in log_events(daemon, "watching")),
        timeout=10,
        what="a watch on the sessions folder",
    )
    assert 0 == daemon.stop()
    assert expected == stored_states(env)
    assert_oracle(env, set())


# --- row 19: concurrent writers --------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from tests.support.spoolwriter import write_event
spool, go, count, ns = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
names = [write_event(spool, b'{"n": %d}' % i, event="Notification", received_ns=ns, fsync=False)
         for i in range(count)]
sys.stdout.write("\\n".join(names) + "\\n")
"""


def test_concurrent_writers_equal_time_unique_names_rows_equal_files(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """50 processes × 200 events, all with one received_ns: 10,000 distinct names, 10,000 rows."""
    procs_n, per_proc = 50, 200
    daemon = start_daemon()
    daemon.wait_logged("watching")
    go = tmp_path / "go"
    ns = time.time_ns()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(env.spool), str(go), str(per_proc), str(ns)],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(procs_n)
    ]
    go.touch()
    names: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert 0 == p.returncode
        names += out.decode().split()
    assert procs_n * per_proc == len(names)
    assert procs_n * per_proc == len(set(names))
    assert {str(ns)} == {n.split(".", 1)[0] for n in names}
    wait_for(
        lambda: env.rows() == len(names),
        timeout=60,
        what=f"{len(names)} rows from {procs_n} writers",
    )
    assert 0 == daemon.stop()
    assert sorted(names) == sorted(row_uids(env))
    assert_oracle(env, set(names))


# --- row 20: two daemons ---------------------------------------------------------------


def test_two_daemons_same_spool_no_duplicates_nothing_lost(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """Two daemons on one spool and database: every event one row, none quarantined, both exit 0."""
    payloads = fixture_payloads()
    accepted = {
        write_event(env.spool, p, event=e, fsync=False) for _ in range(10) for e, p in payloads
    }
    first, second = start_daemon(), start_daemon()
    first.wait_logged("watching")
    second.wait_logged("watching")
    for _ in range(5):  # more while both run, so they race on fresh files too
        accepted |= {write_event(env.spool, p, event=e, fsync=False) for e, p in payloads}
        time.sleep(0.3)
    wait_for(lambda: env.rows() == len(accepted), timeout=60, what=f"{len(accepted)} rows")
    assert (0, 0) == (first.stop(), second.stop())
    assert {} == quarantine_reasons(env)
    assert_oracle(env, accepted)
    inserted = [int(str(e["events"])) for d in (first, second) for e in log_events(d, "stopped")]
    assert len(accepted) == sum(inserted)


# --- row 21: clock jumps ---------------------------------------------------------------


def at(ns: int) -> datetime:
    """A nanosecond timestamp at PostgreSQL's resolution (microseconds, truncated)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def deliver_with_mtime(env: Env, staging: Path, mtime_ns: int, received_ns: int) -> str:
    """Write an event outside the spool, set its mtime, then rename it into new/ (accepted)."""
    name = write_event(
        staging, small_payload(mtime_ns), event="Notification", received_ns=received_ns, fsync=False
    )
    os.utime(staging / "new" / name, ns=(mtime_ns, mtime_ns))
    os.rename(staging / "new" / name, env.spool / "new" / name)
    return name


def test_clock_skew_events_ingested_at_once_with_header_time(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """received_ns ±1 h and mtimes +1 h: each event one row at once, occurred_at = header (or mtime) time."""
    staging = tmp_path / "staging"
    daemon = start_daemon()
    daemon.wait_logged("watching")
    now = time.time_ns()
    expected: dict[str, datetime] = {}
    for skew in (HOUR_NS, -HOUR_NS):
        name = write_event(
            env.spool, small_payload(skew), event="Notification", received_ns=now + skew
        )
        expected[name] = at(now + skew)
    future_mtime = deliver_with_mtime(env, staging, now + HOUR_NS, received_ns=now)
    expected[future_mtime] = at(now)
    future_both = deliver_with_mtime(env, staging, now + HOUR_NS, received_ns=now + HOUR_NS)
    expected[future_both] = at(now + HOUR_NS)
    # A header-less file (foreign writer) takes its time from the mtime.
    foreign = "foreign-future.json"
    (staging / foreign).write_bytes(b'{"hook_event_name": "Notification"}')
    os.utime(staging / foreign, ns=(now + HOUR_NS, now + HOUR_NS))
    os.rename(staging / foreign, env.spool / "new" / foreign)
    expected[f"{foreign}@{socket.gethostname()}"] = at(now + HOUR_NS)  # a foreign name gets @<host>
    start = time.monotonic()
    wait_for(lambda: env.rows() == len(expected), timeout=10, what="skewed events ingested")
    elapsed = time.monotonic() - start
    with psycopg.connect(env.db_url) as conn:
        stored: dict[str, datetime] = dict(
            conn.execute("SELECT event_uid, occurred_at FROM agent_logs").fetchall()
        )
    assert 0 == daemon.stop()
    assert expected == stored
    assert elapsed < 5, f"ingestion took {elapsed:.1f}s"
    assert_oracle(env, set(expected))


def test_clock_future_mtime_does_not_extend_foreign_grace(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """A truncated foreign file with an mtime 1 h ahead is quarantined after the grace period, not 1 h later."""
    now = time.time_ns()
    names = {"truncated-now.json": now, "truncated-future.json": now + HOUR_NS}
    (env.spool / "new").mkdir(parents=True)
    for name, mtime_ns in names.items():
        path = env.spool / "new" / name
        path.write_bytes(b'{"hook_event_name": "Notif')
        os.utime(path, ns=(mtime_ns, mtime_ns))
    daemon = start_daemon(SESSION_DB_FOREIGN_GRACE_S="1")
    daemon.wait_logged("watching")
    wait_for(
        lambda: len(quarantine_reasons(env)) == len(names),
        timeout=10,
        what="both truncated files quarantined",
    )
    assert 0 == daemon.stop()
    assert dict.fromkeys(names, "json_decode") == quarantine_reasons(env)
    assert_oracle(env, set(names))


# --- row 22: permission and planted-entry errors ---------------------------------------


def test_spool_under_regular_file_exits_78_naming_spool_and_fix(env: Env, tmp_path: Path) -> None:
    """A spool path that cannot be created stops the daemon with exit 78 and names the path and setting."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spool = blocker / "spool"
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run"],
        env={**env.vars(), "SESSION_DB_SPOOL": str(spool)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert 78 == done.returncode
    stderr = done.stderr.decode(errors="replace")
    assert str(spool) in stderr, stderr
    assert "SESSION_DB_SPOOL" in stderr, stderr
    assert "not a directory" == blocker.read_text()


def test_spool_directory_planted_in_new_is_ignored(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """A directory inside new/ is left alone and does not hold back the files around it."""
    before = {write_event(env.spool, small_payload(i), event="Notification") for i in range(5)}
    planted = env.spool / "new" / "0000000000000000000.P1R0000000000000000.planted"
    planted.mkdir()
    (planted / "inner").write_bytes(small_payload(99))
    daemon = start_daemon()
    daemon.wait_logged("watching")
    after = {write_event(env.spool, small_payload(i), event="Notification") for i in range(5)}
    wait_for(lambda: env.rows() == 10, timeout=15, what="10 rows around a planted directory")
    time.sleep(1.5)  # at least one more timer scan over the directory
    assert daemon.proc.poll() is None
    assert 0 == daemon.stop()
    assert (["inner"], {}) == (os.listdir(planted), quarantine_reasons(env))
    assert sorted(before | after) == sorted(row_uids(env))
    shutil.rmtree(planted)  # not an event: the oracle is about files
    assert_oracle(env, before | after)


def test_spool_symlink_planted_in_new_is_quarantined(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Symlinks in new/ (to a valid event, or dangling) are quarantined `symlink`, never followed."""
    outside = tmp_path / "outside"
    target_name = write_event(outside, small_payload(1), event="Notification")
    target = outside / "new" / target_name
    target_bytes = target.read_bytes()
    good = {write_event(env.spool, small_payload(i), event="Notification") for i in range(3)}
    links = {"link-to-event": target, "link-dangling": tmp_path / "nowhere"}
    for name, dest in links.items():
        (env.spool / "new" / name).symlink_to(dest)
    daemon = start_daemon()
    wait_for(lambda: len(quarantine_reasons(env)) == 2, timeout=15, what="symlinks quarantined")
    wait_for(lambda: env.rows() == len(good), timeout=15, what="the regular events")
    assert 0 == daemon.stop()
    assert dict.fromkeys(links, "symlink") == quarantine_reasons(env)
    assert target_bytes == target.read_bytes()
    assert sorted(good) == sorted(row_uids(env))
    assert all((env.spool / "quarantine" / n).is_symlink() for n in links)
    assert_oracle(env, good | set(links))


# --- row 17: a side task dies ----------------------------------------------------------


def test_watcher_death_is_logged_and_ingestion_goes_on(
    env: Env, start_daemon: Callable[..., Daemon]
) -> None:
    """The watcher thread failing (its spool dir gone when it restarts) does not stop the
    daemon: it logs `watcher_failed`, keeps scanning on its timer, restarts the watcher after
    a backoff, and every event lands (docs/reliability-processes.md)."""
    root = env.root / "project"
    root.mkdir()
    daemon = start_daemon(SESSION_DB_WATCH=str(root))
    daemon.wait_logged("watching")
    accepted = {write_event(env.spool, small_payload(i), event="Notification") for i in range(5)}
    wait_for(lambda: env.rows() == 5, what="5 rows")
    shutil.rmtree(env.spool / "new")
    # A new sessions folder changes the watched set: the watcher restarts over a missing new/.
    (root / "agents" / "sessions").mkdir(parents=True)
    daemon.wait_logged("watcher_failed")
    assert daemon.proc.poll() is None
    more = {write_event(env.spool, small_payload(i), event="Notification") for i in range(5)}
    wait_for(lambda: env.rows() == 10, what="10 rows after the watcher died")

    def restarted() -> bool:
        events = [e.get("event") for e in daemon.events()]
        return "watching" in events[events.index("watcher_failed") :]

    wait_for(restarted, what="the watcher restarted after its backoff")
    assert [] == log_events(daemon, "crashed")
    assert 0 == daemon.stop()
    assert_oracle(env, accepted | more)


def test_spool_removed_while_running_later_events_still_ingested(
    env: Env, start_daemon: Callable[..., Daemon], hook_path: Path
) -> None:
    """The whole spool deleted under a running daemon: the hook recreates it, the daemon keeps ingesting."""
    daemon = start_daemon()
    daemon.wait_logged("watching")
    first = {write_event(env.spool, small_payload(i), event="Notification") for i in range(3)}
    wait_for(lambda: env.rows() == 3, what="3 rows")
    shutil.rmtree(env.spool)
    daemon.signal(signal.SIGSTOP)  # hold it while we learn the names the hook chose
    try:
        for i in range(3):
            done = subprocess.run(
                [str(hook_path), "--spool", str(env.spool), "Notification"],
                input=small_payload(i), capture_output=True, env=env.vars(), timeout=30, check=False,
            )  # fmt: skip
            assert (0, b"", b"") == (done.returncode, done.stdout, done.stderr)
        later = {p.name for p in (env.spool / "new").iterdir()}
    finally:
        daemon.signal(signal.SIGCONT)
    assert 3 == len(later)
    wait_for(lambda: env.rows() == 6, timeout=10, what="rows of events written after the removal")
    assert daemon.proc.poll() is None
    assert 0 == daemon.stop()
    assert_oracle(env, first | later)
