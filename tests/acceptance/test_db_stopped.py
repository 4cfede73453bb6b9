"""PostgreSQL stopped for minutes while the real hook keeps writing (docs/design/spool.md §7 row 6).

The server is a dedicated pytest-postgresql process fixture (its own data directory and port),
stopped with `pg_ctl stop -m fast` and started again, so the rest of the suite never sees it go.
The outage lasts OUTAGE_S (override with SESSION_DB_TEST_OUTAGE_S for a quick local run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories

from tests.acceptance.conftest import Daemon, Env, HookLoop, wait_for
from tests.conftest import PG_CTL, PG_USER, fresh_database, migrate_template

OUTAGE_S = float(os.environ.get("SESSION_DB_TEST_OUTAGE_S", "120"))
HOOK_INTERVAL_S = 0.1  # one real hook process every 100 ms, before, during and after the outage
DRAIN_S = 120.0  # the daemon's reconnect backoff is capped at 60 s; this allows two full waits

outage_proc = factories.postgresql_proc(
    executable=PG_CTL, user=PG_USER, unixsocketdir="/tmp", load=[migrate_template]
)

pytestmark = pytest.mark.slow  # a 120 s database outage


@pytest.fixture
def outage_env(outage_proc: Any, tmp_path: Any) -> Iterator[tuple[Env, Any]]:
    with fresh_database(outage_proc, "o") as url:
        yield Env(tmp_path, url), outage_proc




def _markers(env: Env) -> list[str]:
    with psycopg.connect(env.db_url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT payload->>'marker' FROM agent_logs WHERE event_category = 'hook'"
            )
        ]


@pytest.mark.timeout(OUTAGE_S + 3 * DRAIN_S)
def test_db_stopped_for_minutes_hooks_keep_writing_every_event_lands_once(
    outage_env: tuple[Env, Any], tmp_path: Any
) -> None:
    """While the server is down the daemon stays up, hooks keep succeeding and the spool keeps
    every event; after the restart each accepted event is exactly one row, nothing quarantined."""
    env, proc = outage_env
    daemon = Daemon(env, tmp_path / "daemon.log", SESSION_DB_CONNECT_TIMEOUT_S="2")
    hooks = HookLoop(env, "m", HOOK_INTERVAL_S)
    try:
        hooks.start()
        wait_for(lambda: len(_markers(env)) >= 5, what="rows before the outage")
        # Rows can be visible before the pass that wrote them has ended (and so before the
        # daemon logs its first database_up): stop the server only once the daemon has
        # declared the database up, or the outage starts before that line (as in 52cb8fc).
        daemon.wait_logged("database_up")

        proc.stop()
        stopped_at = time.monotonic()
        daemon.wait_logged("database_down", timeout=60)
        while time.monotonic() - stopped_at < OUTAGE_S:
            assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
            time.sleep(1)
        waiting = len(list((env.spool / "new").iterdir()))
        proc.start()

        wait_for(lambda: len(list((env.spool / "new").iterdir())) < waiting, DRAIN_S, "drain")
        hooks.stop()
        accepted = set(hooks.accepted)
        wait_for(lambda: set(_markers(env)) >= accepted, DRAIN_S, "every accepted event")
        assert 0 == daemon.stop()
    finally:
        hooks.stop()
        if daemon.proc.poll() is None:
            daemon.kill()

    markers = _markers(env)
    assert [] == hooks.failed
    assert waiting >= OUTAGE_S / HOOK_INTERVAL_S / 4, "hooks did not keep writing during the outage"
    assert len(markers) == len(set(markers)), "duplicate rows"
    assert accepted == set(markers)
    assert [] == sorted(p.name for p in (env.spool / "new").iterdir())
    assert not any((env.spool / "quarantine").iterdir())
    events = [e.get("event") for e in daemon.events()]
    # Up at start, down once for the whole outage (not once per retry), up again.
    assert (1, 2) == (events.count("database_down"), events.count("database_up"))
