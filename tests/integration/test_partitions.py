"""agent_logs partitions: created ahead, DEFAULT rows moved in, old months dropped whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

from daemon import partitions
from daemon.errors import PartitionBusyError, PartitionPermissionError

Conn = psycopg.Connection[Any]


@pytest.fixture
def conn(db_url: str) -> Iterator[Conn]:
    with psycopg.connect(db_url) as c:
        yield c


def add_rows(conn: Conn, *times: datetime, prefix: str = "r") -> None:
    """One hook row per time, inserted through the parent (routed like ingest's)."""
    with conn.transaction():
        for i, at in enumerate(times):
            conn.execute(
                "INSERT INTO agent_logs (event_uid, host, event_category, event_type, occurred_at)"
                " VALUES (%s, 'h', 'hook', 'Stop', %s)",
                (f"{prefix}{i}.h", at),
            )
    conn.commit()


def placement(conn: Conn) -> dict[str, int]:
    """Rows per partition."""
    rows = conn.execute(
        "SELECT tableoid::regclass::text, count(*) FROM agent_logs GROUP BY 1"
    ).fetchall()
    conn.rollback()
    return dict(rows)


def names(conn: Conn) -> list[str]:
    found = [p.name for p in partitions.list_partitions(conn)]
    conn.rollback()
    return found


def month(year: int, mon: int, day: int = 1) -> datetime:
    return datetime(year, mon, day, tzinfo=UTC)


def drop_partition(conn: Conn, name: str) -> None:
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    conn.commit()


def test_partitions_ensure_creates_current_and_ahead_once(conn: Conn) -> None:
    """The current UTC month and AHEAD_MONTHS after it exist after ensure; a second run creates nothing."""
    start = partitions.current_month(conn)
    conn.rollback()
    expected = [partitions.partition_name(partitions.add_months(start, n)) for n in range(4)]
    for name in expected[1:]:
        drop_partition(conn, name)  # the migration made them; ensure must bring them back
    created = partitions.ensure(conn).created
    assert expected[1:] == created
    assert set(expected) <= set(names(conn))
    assert [] == partitions.ensure(conn).created


def test_partitions_ensure_moves_rows_out_of_default(conn: Conn) -> None:
    """Rows that reached DEFAULT because their month had no partition move into it when it is
    created (PostgreSQL would refuse the partition otherwise); ids, keys and counts are kept."""
    start = partitions.current_month(conn)
    conn.rollback()
    target = partitions.add_months(start, 2)
    name = partitions.partition_name(target)
    drop_partition(conn, name)
    add_rows(conn, target + timedelta(days=3), target + timedelta(days=9), start)
    assert 2 == placement(conn)["agent_logs_default"]
    ids = conn.execute("SELECT event_uid, id FROM agent_logs ORDER BY 1").fetchall()
    conn.rollback()

    result = partitions.ensure(conn)

    assert [name] == result.created
    assert {name: 2} == result.moved
    assert {name: 2, partitions.partition_name(start): 1} == placement(conn)
    assert ids == conn.execute("SELECT event_uid, id FROM agent_logs ORDER BY 1").fetchall()
    conn.rollback()
    with pytest.raises(psycopg.errors.UniqueViolation):  # the moved rows are under the unique key
        add_rows(conn, target + timedelta(days=3))


def test_partitions_split_default_gives_old_months_partitions(conn: Conn) -> None:
    """--split-default: every month with rows in DEFAULT gets its partition and the rows."""
    add_rows(conn, month(2019, 3, 5), month(2019, 3, 20), month(2019, 7, 1))
    assert 3 == placement(conn)["agent_logs_default"]
    result = partitions.ensure(conn, split_default=True)
    assert {"agent_logs_2019_03": 2, "agent_logs_2019_07": 1} == result.moved
    assert {"agent_logs_2019_03": 2, "agent_logs_2019_07": 1} == placement(conn)


def old_months(conn: Conn) -> None:
    """Rows in Jan..Jun 2020 (two in each month), each month its own partition, plus old rows in
    DEFAULT (a year without partitions)."""
    times = [month(2020, m, d) for m in range(1, 7) for d in (1, 28)]
    add_rows(conn, *times)
    partitions.ensure(conn, split_default=True)
    add_rows(conn, month(1999, 5, 5), month(1999, 6, 6), prefix="late")


def older_than(conn: Conn, cutoff: datetime) -> timedelta:
    row = conn.execute("SELECT now()").fetchone()
    conn.rollback()
    assert row is not None
    return row[0] - cutoff


def test_partitions_prune_drops_exactly_the_old_partitions(conn: Conn) -> None:
    """prune drops the monthly partitions that ended before the cutoff, and only them: later
    months, the current ones and DEFAULT keep every row; DEFAULT's old rows are reported."""
    old_months(conn)
    before = placement(conn)
    dropped: list[partitions.Pruned] = []

    # Cutoff 2020-04-01 12:00: Jan, Feb, Mar ended before it; April did not end yet.
    result = partitions.prune(
        conn, older_than(conn, month(2020, 4, 1) + timedelta(hours=12)), on_drop=dropped.append
    )

    gone = ["agent_logs_2020_01", "agent_logs_2020_02", "agent_logs_2020_03"]
    assert gone == [p.partition.name for p in result.dropped]
    assert [2, 2, 2] == [p.rows for p in result.dropped]
    assert result.dropped == dropped
    assert 6 == result.rows
    assert 2 == result.older_in_default[partitions.AGENT_LOGS]
    after = placement(conn)
    assert {k: v for k, v in before.items() if k not in gone} == after
    assert set(gone).isdisjoint(names(conn))
    assert {"agent_logs_2020_04", "agent_logs_2020_05", "agent_logs_2020_06"} <= set(names(conn))
    assert 2 == after["agent_logs_default"]


def test_partitions_prune_dry_run_drops_nothing(conn: Conn) -> None:
    """--dry-run reports the same partitions and counts, and every row stays."""
    old_months(conn)
    before = placement(conn)
    result = partitions.prune(conn, older_than(conn, month(2020, 3, 2)), dry_run=True)
    assert ["agent_logs_2020_01", "agent_logs_2020_02"] == [
        p.partition.name for p in result.dropped
    ]
    assert 4 == result.rows
    assert before == placement(conn)


def test_partitions_ddl_gives_up_behind_a_long_query(conn: Conn, db_url: str) -> None:
    """A partition DDL waits at most its lock timeout behind an analyst's open query (ingest would
    queue behind the DDL), then fails as busy; the daemon logs it and retries later."""
    start = partitions.current_month(conn)
    conn.rollback()
    drop_partition(conn, partitions.partition_name(partitions.add_months(start, 3)))
    with psycopg.connect(db_url) as analyst:
        analyst.execute(
            "SELECT count(*) FROM agent_logs"
        ).fetchone()  # holds ACCESS SHARE until rollback
        with pytest.raises(PartitionBusyError):
            partitions.ensure(conn, lock_timeout_ms=200)
        with capture_logs() as logs:
            delay = partitions.maintain_in_daemon(lambda: conn)
        analyst.rollback()
    assert partitions.DAEMON_RETRY_S == delay
    assert ["partitions_lock_timeout"] == [e["event"] for e in logs]
    assert [partitions.partition_name(partitions.add_months(start, 3))] == partitions.ensure(
        conn
    ).created


def test_partitions_ingest_is_not_blocked_long_by_waiting_ddl(conn: Conn, db_url: str) -> None:
    """While a partition DDL waits behind a long query, an insert waits at most the DDL's lock
    timeout, then goes through."""
    start = partitions.current_month(conn)
    conn.rollback()
    drop_partition(conn, partitions.partition_name(partitions.add_months(start, 3)))
    errors: list[BaseException] = []

    def maintain() -> None:
        with psycopg.connect(db_url) as c:
            try:
                partitions.ensure(c, lock_timeout_ms=500)
            except PartitionBusyError as exc:
                errors.append(exc)

    with psycopg.connect(db_url) as analyst:
        analyst.execute("SELECT count(*) FROM agent_logs").fetchone()
        ddl = threading.Thread(target=maintain)
        ddl.start()
        time.sleep(0.2)  # let the DDL queue for its lock first
        waited = datetime.now(UTC)
        add_rows(conn, start + timedelta(hours=1))  # queues behind the DDL's pending lock
        waited_s = (datetime.now(UTC) - waited).total_seconds()
        ddl.join()
        analyst.rollback()
    assert 1 == len(errors)
    assert waited_s < 5


def test_partitions_writer_role_is_warned_not_crashed(conn: Conn, db_url: str) -> None:
    """A role that may only write rows cannot create partitions: a clear error for `maintain`, one
    warning and no further tries for the daemon."""
    role = f"writer_{conn.info.dbname}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    conn.execute(
        sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(
            sql.Identifier(role)
        )
    )
    conn.commit()
    start = partitions.current_month(conn)
    conn.rollback()
    drop_partition(conn, partitions.partition_name(partitions.add_months(start, 1)))
    try:
        with psycopg.connect(db_url, user=role) as writer:
            with pytest.raises(PartitionPermissionError, match="owns the schema"):
                partitions.ensure(writer)
            with capture_logs() as logs:
                delay = partitions.maintain_in_daemon(lambda: writer)
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.commit()
    assert float("inf") == delay
    assert ["partitions_not_owner"] == [e["event"] for e in logs]


def test_partitions_phase_row_once_per_uid_whatever_its_time(conn: Conn) -> None:
    """A phase row's time is its state.json's mtime, which a rewrite with the same content
    changes; the same phase event_uid still becomes one row, even across months (partitions)."""
    from psycopg.types.json import Jsonb

    from daemon import db

    params = {
        "uid": "phase:h:wf:None:build:abc",
        "host": "h",
        "session_id": None,
        "event_type": "build",
        "payload": Jsonb({"to": "build"}),
        "payload_bytes": 15,
        "slug": "wf",
    }
    for at in (month(2026, 1, 31), month(2026, 2, 1), month(2026, 1, 31)):
        conn.execute(db.INSERT_PHASE_EVENT, {**params, "occurred_at": at})
    conn.commit()
    rows = conn.execute("SELECT occurred_at FROM agent_logs WHERE event_uid = %s", (params["uid"],))
    assert [(month(2026, 1, 31),)] == rows.fetchall()
