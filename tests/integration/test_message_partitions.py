"""messages is partitioned like agent_logs: the same code creates both tables' monthly partitions
ahead and prune drops whole months of both; DEFAULT keeps late and undated rows and is reported."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from daemon import partitions
from daemon.partitions import AGENT_LOGS, MESSAGES
from daemon.sink import PostgresSink
from daemon.transcripts import TranscriptReader
from tests.conftest import FIXTURES
from tests.integration.test_partitions import add_rows

Conn = psycopg.Connection[Any]
HOST = "test-host"


@pytest.fixture
def conn(db_url: str) -> Iterator[Conn]:
    with psycopg.connect(db_url) as c:
        yield c




def month(year: int, mon: int, day: int = 1) -> datetime:
    return datetime(year, mon, day, tzinfo=UTC)




def add_messages(conn: Conn, *times: datetime | None, prefix: str = "m") -> None:
    with conn.transaction():
        for i, at in enumerate(times):
            conn.execute(
                "INSERT INTO messages (uuid, occurred_at, role, entry_type, text)"
                " VALUES (%s, %s, 'user', 'prompt', 'some words')",
                (f"{prefix}{i}", at),
            )


def placement(conn: Conn, table: str) -> dict[str, int]:
    query = sql.SQL("SELECT tableoid::regclass::text, count(*) FROM {} GROUP BY 1")
    rows = conn.execute(query.format(sql.Identifier(table))).fetchall()
    conn.rollback()
    return {str(name): int(n) for name, n in rows}


def names(conn: Conn, table: partitions.PartitionedTable) -> list[str]:
    found = [p.name for p in partitions.list_partitions(conn, table)]
    conn.rollback()
    return found


def older_than(conn: Conn, cutoff: datetime) -> timedelta:
    row = conn.execute("SELECT now()").fetchone()
    conn.rollback()
    assert row is not None
    return row[0] - cutoff


def read(sink: PostgresSink, files: list[Path]) -> None:
    # The copies live below the temporary directory, not below a Claude projects/ folder.
    reader = TranscriptReader(sink, HOST, allowed_roots=[Path(tempfile.gettempdir())])
    reader.register(files)
    reader.sync()


def test_message_partitions_created_ahead_for_both_tables(conn: Conn) -> None:
    """ensure (migrate, maintain) and the daemon's daily upkeep create the current month and
    AHEAD_MONTHS after it for agent_logs and messages alike; a second run creates nothing."""
    start = partitions.current_month(conn)
    conn.rollback()
    months = [partitions.add_months(start, n) for n in range(partitions.AHEAD_MONTHS + 1)]
    for table in partitions.TABLES:
        for m in months[1:]:  # the migration made them; ensure must bring them back
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table.partition_name(m))))
    conn.commit()

    result = partitions.ensure(conn)

    expected = [t.partition_name(m) for t in partitions.TABLES for m in months[1:]]
    assert expected == result.created
    assert dict.fromkeys(expected[:3], AGENT_LOGS) | dict.fromkeys(expected[3:], MESSAGES) == result.table_of
    for table in partitions.TABLES:
        assert {table.partition_name(m) for m in months} <= set(names(conn, table))
    assert [] == partitions.ensure(conn).created

    last = MESSAGES.partition_name(months[-1])
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(last)))
    conn.commit()
    assert partitions.DAEMON_INTERVAL_S == partitions.maintain_in_daemon(lambda: conn)
    assert last in names(conn, MESSAGES)


def test_message_partitions_prune_drops_both_tables_by_month(conn: Conn) -> None:
    """prune drops the months of agent_logs and of messages that ended before the cutoff, and
    only them; each DEFAULT keeps its rows, the old ones and the undated messages row reported;
    --dry-run reports the same and drops nothing."""
    times = [month(2020, m, d) for m in range(1, 7) for d in (1, 28)]
    add_rows(conn, *times)
    add_messages(conn, *times)
    partitions.ensure(conn, split_default=True)
    add_rows(conn, month(1999, 5, 5), month(1999, 6, 6), prefix="late")
    add_messages(conn, month(1999, 5, 5), month(1999, 6, 6), None, prefix="late")
    before = {t.name: placement(conn, t.name) for t in partitions.TABLES}
    assert 3 == before["messages"]["messages_default"]
    cutoff = older_than(conn, month(2020, 4, 1) + timedelta(hours=12))

    dry = partitions.prune(conn, cutoff, dry_run=True)
    assert before == {t.name: placement(conn, t.name) for t in partitions.TABLES}
    result = partitions.prune(conn, cutoff)

    gone = [f"{t.name}_2020_{m:02d}" for t in partitions.TABLES for m in (1, 2, 3)]
    assert gone == [p.partition.name for p in result.dropped]
    assert [(p.partition.name, p.rows) for p in dry.dropped] == [
        (p.partition.name, p.rows) for p in result.dropped
    ]
    assert [AGENT_LOGS] * 3 + [MESSAGES] * 3 == [p.table for p in result.dropped]
    assert (6, 6) == (result.rows_of(AGENT_LOGS), result.rows_of(MESSAGES))
    assert {AGENT_LOGS: 2, MESSAGES: 2} == result.older_in_default
    assert {AGENT_LOGS: 0, MESSAGES: 1} == result.undated_in_default
    for table in partitions.TABLES:
        kept = {k: v for k, v in before[table.name].items() if k not in gone}
        assert kept == placement(conn, table.name)
        assert {f"{table.name}_2020_{m:02d}" for m in (4, 5, 6)} <= set(names(conn, table))
    assert 3 == placement(conn, "messages")["messages_default"]


def test_message_partitions_archive_of_a_transcript_pruned_by_month(
    conn: Conn, sink: PostgresSink, tmp_path: Path
) -> None:
    """A recorded session's archive lands in its months (DEFAULT when the month had no partition,
    as in a backfill of old history); --split-default gives those months partitions and prune
    then drops every messages row of them, token usage stays."""
    work = tmp_path / "main"
    shutil.copytree(FIXTURES / "transcripts" / "main", work)
    read(sink, sorted(work.rglob("*.jsonl")))
    total = sum(placement(conn, "messages").values())
    usage = conn.execute("SELECT count(*) FROM token_usage").fetchone()
    row = conn.execute("SELECT max(occurred_at), count(*) FILTER (WHERE occurred_at IS NULL) FROM messages").fetchone()
    conn.rollback()
    assert row is not None
    assert total > 0
    assert 0 == row[1]  # every conversation entry of a Claude Code transcript has a timestamp
    last_month = month(row[0].astimezone(UTC).year, row[0].astimezone(UTC).month)

    partitions.ensure(conn, split_default=True)
    assert "messages_default" not in placement(conn, "messages")

    result = partitions.prune(
        conn, older_than(conn, partitions.add_months(last_month, 1) + timedelta(hours=12))
    )

    assert total == result.rows_of(MESSAGES)
    assert MESSAGES.partition_name(last_month) in [p.partition.name for p in result.dropped]
    assert {} == placement(conn, "messages")
    assert usage == conn.execute("SELECT count(*) FROM token_usage").fetchone()


def test_message_partitions_copies_stay_one_row_with_or_without_timestamp(
    conn: Conn, sink: PostgresSink, tmp_path: Path
) -> None:
    """Under the (uuid, occurred_at) key, an entry copied into a resumed session's file (same uuid,
    same timestamp) is one row, and so is an entry without a timestamp (NULL, in DEFAULT)."""
    sid, resumed = "11111111-2222-4333-8444-555555555555", "66666666-2222-4333-8444-555555555555"
    dated = {
        "type": "user", "uuid": "dated-1", "parentUuid": None, "sessionId": sid,
        "timestamp": "2026-11-23T10:00:00.000Z", "promptId": "p1",
        "message": {"role": "user", "content": "a prompt with a time"},
    }  # fmt: skip
    undated = {
        "type": "user", "uuid": "undated-1", "parentUuid": "dated-1", "sessionId": sid,
        "promptId": "p1", "message": {"role": "user", "content": "a prompt without a time"},
    }  # fmt: skip
    first = tmp_path / "p" / f"{sid}.jsonl"
    first.parent.mkdir()
    first.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in (dated, undated)))
    copy = tmp_path / "p" / f"{resumed}.jsonl"
    copy.write_bytes(first.read_bytes())  # Claude Code copies the history on resume

    read(sink, [first])
    read(sink, [first, copy])

    rows = conn.execute(
        "SELECT uuid, occurred_at, tableoid::regclass::text FROM messages ORDER BY uuid"
    ).fetchall()
    assert [
        ("dated-1", month(2026, 11, 23) + timedelta(hours=10), rows[0][2]),
        ("undated-1", None, "messages_default"),
    ] == rows
