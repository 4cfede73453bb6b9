"""Faults injected around a real PostgreSQL: lost COMMIT replies, async-commit roles, a full disk."""

from __future__ import annotations

import errno
from typing import Any

import psycopg
import pytest

from daemon import spool as spool_module
from daemon.errors import FatalIOError, TransientDbError
from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event, write_raw

MAIN = FIXTURES / "hooks" / "all" / "main"


def deliver(spool: Spool) -> set[str]:
    return {
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
        for f in sorted(MAIN.iterdir())
    }


def keys(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT event_uid FROM agent_logs")]


def test_fault_commit_reply_lost_retry_adds_no_duplicate(
    spool: Spool, sink: PostgresSink, ingestor: Ingestor, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMMIT reached the server but its reply was lost (unknown outcome): the batch is retried, the
    idempotent key absorbs it, and every event is one row."""
    accepted = deliver(spool)
    conn = sink.connection()
    real_commit = conn.commit
    calls = {"n": 0}

    def commit_then_lose_reply() -> None:
        real_commit()
        calls["n"] += 1
        if calls["n"] == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(conn, "commit", commit_then_lose_reply)
    with pytest.raises(TransientDbError):
        ingestor.drain()
    assert accepted == {p.name for p in spool.new.iterdir()}  # nothing unlinked without a known COMMIT
    stats = ingestor.drain()
    assert (0, len(accepted)) == (stats.inserted, stats.duplicates)
    rows = keys(db_url)
    assert (sorted(accepted), len(rows)) == (sorted(rows), len(set(rows)))
    assert [] == list(spool.new.iterdir())


def test_fault_async_commit_database_setting_is_overridden(spool: Spool, sink: PostgresSink, db_url: str) -> None:
    """synchronous_commit=off set on the database does not reach the daemon's session: it forces on,
    because spool files are unlinked right after COMMIT."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        dbname = admin.info.dbname
        admin.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    with psycopg.connect(db_url) as plain:
        assert ("off",) == plain.execute("SHOW synchronous_commit").fetchone()
    sink.close()
    assert ("on",) == sink.connection().execute("SHOW synchronous_commit").fetchone()


def test_fault_disk_full_while_quarantining_stops_without_losing(
    spool: Spool, ingestor: Ingestor, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC writing a quarantine record is fatal (fail-stop); the bad file stays in new/ and the
    good files of its batch are not unlinked before their COMMIT."""
    bad = write_raw(spool.root, b"[not an object]")
    good = deliver(spool)

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module, "write_durably", full)
    with pytest.raises(FatalIOError):
        ingestor.drain()
    left = {p.name for p in spool.new.iterdir()}
    # The bad file comes first in its batch (oldest name), so the batch stopped before any COMMIT.
    assert (set(), good | {bad}) == (set(keys(db_url)), left)
    assert [] == list(spool.quarantine.iterdir())
