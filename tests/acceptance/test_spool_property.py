"""Issue 12: random entries planted in new/ among hooked events, while the real daemon runs.

Hypothesis draws lists of entries: events delivered by the real hook, random bytes, empty and
oversize files, JSON objects from a foreign writer, odd UTF-8 names, names that are not UTF-8,
FIFOs, Unix sockets, character devices and symlinks. After each list the oracle of
docs/design/spool.md §5 must hold for everything accepted so far (every entry exactly one row or
one quarantined file with a reason), non-regular files must be quarantined `not_a_regular_file`,
names that are not UTF-8 `undecodable_name`, and the daemon must still be running and ingesting.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.acceptance.conftest import Daemon, Env, assert_oracle, run_hook, wait_for
from tests.support.spoolwriter import write_event

pytestmark = pytest.mark.slow  # Hypothesis examples, each through the real daemon

HOST = "prop-host"  # a header-less file's row is keyed <name>@<host>
MAX_FILE_BYTES = 64 * 1024  # small, so that an oversize file stays cheap to write
EXAMPLES = 6  # each list costs a few seconds of daemon time (grace period, scans)
NON_REGULAR = ("fifo", "socket", "device")
KINDS = (
    "hooked",
    "written",
    "random_bytes",
    "empty",
    "oversize",
    "foreign_json",
    "symlink",
    "undecodable_name",
    *NON_REGULAR,
)
# Names a writer other than the hook could use: any UTF-8 but "/" and NUL, no leading dot.
ODD_NAME = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=24,
).filter(lambda n: not n.startswith("."))
ENTRY = st.tuples(st.sampled_from(KINDS), st.binary(max_size=512), ODD_NAME)


def reasons(env: Env) -> dict[str, str]:
    return {
        p.name.removesuffix(".reason.json"): json.loads(p.read_bytes())["reason"]
        for p in (env.spool / "quarantine").glob("*.reason.json")
    }


def test_spool_random_entries_settle_and_the_daemon_keeps_ingesting(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Whatever is planted in new/ between hooked events, every entry settles exactly once (one
    row or one quarantined file with a reason), non-regular files are quarantined
    `not_a_regular_file`, new/ drains and the daemon keeps running and ingesting."""
    daemon = start_daemon(
        SESSION_DB_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
        SESSION_DB_FOREIGN_GRACE_S="1",
        SESSION_DB_HOST=HOST,
    )
    daemon.wait_logged("watching")
    new = env.spool / "new"
    accepted: set[str] = set()
    markers: set[str] = set()
    non_regular: set[str] = set()
    undecodable: set[str] = set()
    kinds: dict[str, str] = {}  # planted name → kind (for the failure message)
    listeners: list[socket.socket] = []
    counter = itertools.count()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def plant(kind: str, data: bytes, odd: str) -> None:
        name = f"{odd}-{next(counter)}"
        path = new / name
        if kind == "hooked":
            marker = f"h-{uuid.uuid4()}"
            payload = json.dumps({"hook_event_name": "Notification", "message": marker}).encode()
            done = run_hook(env, payload, "Notification")
            assert (0, b"", b"") == (done.returncode, done.stdout, done.stderr)
            markers.add(marker)
            return
        if kind == "written":
            accepted.add(write_event(env.spool, data, event="Notification", fsync=False))
            return
        if kind == "undecodable_name":
            raw = b"\xff\xfe-" + os.fsencode(name)  # never valid UTF-8
            with open(os.path.join(os.fsencode(new), raw), "wb") as fh:
                fh.write(data)
            name = os.fsdecode(raw)  # as os.listdir(str) shows it (surrogate escapes)
            undecodable.add(name)
        elif kind == "random_bytes":
            path.write_bytes(data)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "oversize":
            path.write_bytes(b"x" * (MAX_FILE_BYTES + 1 + len(data)))
        elif kind == "foreign_json":
            path.write_bytes(json.dumps({"hook_event_name": "Notification", "n": name}).encode())
        elif kind == "symlink":
            target = elsewhere / name
            target.write_bytes(data)
            path.symlink_to(target)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.getcwd()
            os.chdir(new)  # a socket path must be short: bind by a relative name
            try:
                listener.bind(name)
            finally:
                os.chdir(old)
            listeners.append(listener)
        elif kind == "device":
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        if kind in NON_REGULAR:
            non_regular.add(name)
        kinds[name] = kind
        accepted.add(name)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(ENTRY, min_size=1, max_size=8))
    def check(entries: list[tuple[str, bytes, str]]) -> None:
        for kind, data, odd in entries:
            plant(kind, data, odd)
        # One ordinary event after the planted ones: the daemon must still ingest it.
        last = write_event(env.spool, b'{"hook_event_name":"Stop"}', event="Stop")
        accepted.add(last)
        wait_for(lambda: not os.listdir(new), timeout=30, what="new/ drained")
        assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
        with psycopg.connect(env.db_url) as conn:
            hooked = {
                r[0]: r[1]
                for r in conn.execute(
                    "SELECT payload->>'message', event_uid FROM agent_logs"
                    " WHERE payload->>'message' = ANY(%s)",
                    (sorted(markers),),
                )
            }
        assert sorted(markers) == sorted(hooked)
        accepted.update(hooked.values())
        settled = set(os.listdir(env.spool / "quarantine"))
        with psycopg.connect(env.db_url) as conn:
            settled |= {r[0] for r in conn.execute("SELECT event_uid FROM agent_logs")}
        for name in list(kinds):  # a planted file that became a row is keyed <name>@<host>
            if f"{name}@{HOST}" in settled:
                accepted.discard(name)
                accepted.add(f"{name}@{HOST}")
                del kinds[name]
        assert {} == {n: kinds.get(n) for n in accepted - settled}, "unsettled entries by kind"
        assert_oracle(env, accepted)
        quarantined = reasons(env)
        assert dict.fromkeys(non_regular, "not_a_regular_file") == {
            n: quarantined.get(n) for n in non_regular
        }
        assert dict.fromkeys(undecodable, "undecodable_name") == {
            n: quarantined.get(n) for n in undecodable
        }
        assert all(quarantined.values()), "a quarantined file without a reason"

    try:
        check()
    finally:
        for listener in listeners:
            listener.close()
    assert 0 == daemon.stop()
