"""Faults injected around a real PostgreSQL: lost COMMIT replies, async-commit roles, a full disk."""

from __future__ import annotations

import errno
import time
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from daemon import spool as spool_module
from daemon.errors import FatalIOError, TransientDbError
from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event, write_raw
from tests.support.tcpproxy import TcpProxy

MAIN = FIXTURES / "hooks" / "all" / "main"
FROZEN_DEADLINE_S = 3.0


def deliver(spool: Spool) -> set[str]:
    return {
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
        for f in sorted(MAIN.iterdir())
    }


def keys(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT event_uid FROM agent_logs")]


def test_fault_commit_reply_lost_retry_adds_no_duplicate(
    spool: Spool,
    sink: PostgresSink,
    ingestor: Ingestor,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
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
    assert accepted == {
        p.name for p in spool.new.iterdir()
    }  # nothing unlinked without a known COMMIT
    stats = ingestor.drain()
    assert (0, len(accepted)) == (stats.inserted, stats.duplicates)
    rows = keys(db_url)
    assert (sorted(accepted), len(rows)) == (sorted(rows), len(set(rows)))
    assert [] == list(spool.new.iterdir())


def test_fault_async_commit_database_setting_is_overridden(
    spool: Spool, sink: PostgresSink, db_url: str
) -> None:
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

    monkeypatch.setattr(spool_module, "replace_file", full)
    with pytest.raises(FatalIOError):
        ingestor.drain()
    left = {p.name for p in spool.new.iterdir()}
    # The bad file comes first in its batch (oldest name), so the batch stopped before any COMMIT.
    assert (set(), good | {bad}) == (set(keys(db_url)), left)
    assert [] == list(spool.quarantine.iterdir())


def test_fault_frozen_database_batch_cut_off_at_deadline_then_retried(
    spool: Spool, db_url: str
) -> None:
    """A database that stops answering mid-batch without closing the connection (a stalled
    path: statement_timeout cannot fire, TCP sees no loss) does not hang the drain: at the
    deadline the connection is cut, the batch fails as transient with its files kept, and the
    retry after the thaw lands every event once."""
    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    sink = PostgresSink(
        db_url.replace(f":{parts.port}/", f":{proxy.port}/"),
        host="test-host",
        connect_timeout_s=5,
        statement_timeout_ms=30_000,
        lock_timeout_ms=10_000,
    )
    ingestor = Ingestor(
        spool,
        sink,
        host="test-host",
        batch_max_files=500,
        batch_max_bytes=8 << 20,
        foreign_grace_s=0.0,
        batch_deadline_s=FROZEN_DEADLINE_S,
    )
    try:
        sink.connection()  # connected before the freeze: the hang is mid-conversation
        accepted = deliver(spool)
        proxy.freeze()
        ticks: list[float] = []

        def tick() -> bool:  # the stop check, called on every wait: never stop, record when
            ticks.append(time.monotonic())
            return False

        started = time.monotonic()
        with pytest.raises(TransientDbError):
            ingestor.drain(tick)
        waited = time.monotonic() - started
        assert FROZEN_DEADLINE_S <= waited < FROZEN_DEADLINE_S + 10
        assert len(ticks) >= FROZEN_DEADLINE_S - 1, "the caller was not ticked while it waited"
        assert accepted == {p.name for p in spool.new.iterdir()}
        proxy.thaw()
        stats = ingestor.drain()
        assert len(accepted) == stats.inserted + stats.duplicates
    finally:
        sink.close()
        proxy.stop()
    rows = keys(db_url)
    assert (sorted(accepted), len(rows)) == (sorted(rows), len(set(rows)))
    assert [] == list(spool.new.iterdir())


def test_fault_tcp_timeouts_bound_a_silent_peer_unless_the_url_sets_them(db_url: str) -> None:
    """Daemon connections carry keepalives and tcp_user_timeout (a black-holed server fails the
    call instead of blocking it forever); a value written in the URL is kept as written."""
    from daemon import db

    with db.connect(
        db_url, connect_timeout_s=5, statement_timeout_ms=1000, lock_timeout_ms=1000
    ) as conn:
        params = conn.info.get_parameters()
    expected = {k: str(v) for k, v in db.TCP_DEFAULTS.items()}
    assert expected == {k: params.get(k) for k in expected}
    sep = "&" if "?" in db_url else "?"
    with db.connect(
        f"{db_url}{sep}tcp_user_timeout=1234",
        connect_timeout_s=5,
        statement_timeout_ms=1000,
        lock_timeout_ms=1000,
    ) as conn:
        assert "1234" == conn.info.get_parameters().get("tcp_user_timeout")
