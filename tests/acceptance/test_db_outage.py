"""The database goes away and comes back: the daemon stays up, keeps the spool, recovers by itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.acceptance.conftest import Daemon, Env, assert_oracle, wait_for
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event
from tests.support.tcpproxy import TcpProxy

ALL = FIXTURES / "hooks" / "all"
IDLE_OUTAGE_S = 8.0


@pytest.fixture
def proxy(env: Env) -> Iterator[TcpProxy]:
    """A cuttable path to the test database; env.db_url is rewritten to go through it."""
    parts = urlsplit(env.db_url)
    p = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    direct = env.db_url
    env.extra["SESSION_DB_URL"] = direct.replace(f":{parts.port}/", f":{p.port}/")
    yield p
    p.stop()


def test_daemon_survives_database_outage(
    env: Env, proxy: TcpProxy, start_daemon: Callable[..., Daemon]
) -> None:
    """DB unreachable at start and again mid-run: no exit, spool kept, every event lands once after recovery."""
    payloads = [f.read_bytes() for f in sorted((ALL / "main").iterdir())]
    accepted = {write_event(env.spool, p, event="PostToolUse", fsync=False) for p in payloads}
    daemon = start_daemon(SESSION_DB_CONNECT_TIMEOUT_S="1")
    daemon.wait_logged("database_down")
    assert daemon.proc.poll() is None
    assert len(accepted) == len(list((env.spool / "new").iterdir()))

    proxy.start()
    wait_for(lambda: env.rows() == len(accepted), what="rows after the database came up")
    # Rows can be visible before the pass that wrote them has finished; cut only once the
    # daemon has declared the database up, or this outage merges with the first one.
    daemon.wait_logged("database_up")

    proxy.stop()
    more = {write_event(env.spool, p, event="PreToolUse", fsync=False) for p in payloads}
    wait_for(
        lambda: sum(e.get("event") == "database_down" for e in daemon.events()) == 2,
        what="second outage seen",
    )
    assert daemon.proc.poll() is None
    proxy.start()
    wait_for(lambda: env.rows() == len(accepted | more), what="rows after the second recovery")
    assert 0 == daemon.stop()
    assert_oracle(env, accepted | more)
    events = [e.get("event") for e in daemon.events()]
    # State changes are logged once each way, not once per retry.
    assert (2, 2) == (events.count("database_down"), events.count("database_up"))


def test_daemon_idle_through_outage_with_transcripts_known_stays_up(
    env: Env, proxy: TcpProxy, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """An outage while nothing is spooled, with a transcript registered: every periodic database
    call of the main loop (heartbeat, state files, transcripts) meets the dead connection; each
    is a transient error, never a crash, and the daemon recovers by itself."""
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("")
    proxy.start()
    payload = json.dumps(
        {
            "hook_event_name": "SessionStart",
            "session_id": "s-idle",
            "transcript_path": str(transcript),
        }
    ).encode()
    accepted = {write_event(env.spool, payload, event="SessionStart", fsync=False)}
    daemon = start_daemon(SESSION_DB_CONNECT_TIMEOUT_S="1")
    wait_for(lambda: env.rows() == 1, what="the first row")
    daemon.wait_logged("database_up")
    proxy.stop()
    daemon.wait_logged("database_down")
    time.sleep(IDLE_OUTAGE_S)  # several scan intervals and backoff retries while down
    assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
    proxy.start()
    wait_for(
        lambda: sum(e.get("event") == "database_up" for e in daemon.events()) == 2,
        what="recovery",
    )
    assert 0 == daemon.stop()
    assert_oracle(env, accepted)
