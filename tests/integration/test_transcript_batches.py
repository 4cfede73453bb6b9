"""Transcripts read several files per transaction: same rows as one file at a time, and a
failed transaction moves no offset of any of its files."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from daemon import db
from daemon.errors import PermanentRowError
from daemon.sink import PostgresSink
from daemon.transcripts import TranscriptReader
from tests.conftest import FIXTURES, fresh_database

HOST = "test-host"
ROWS = """
SELECT message_id, request_id, claude_session_id, claude_agent_id, prompt_id, model, input_tokens,
    output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens,
    web_search_requests, web_fetch_requests, occurred_at, is_sidechain, transcript_path,
    (SELECT claude_agent_id FROM agents a WHERE a.id = t.agent_id) AS agent
FROM token_usage t ORDER BY message_id, request_id
"""
AGENTS = """
SELECT c.sdk_session_id, c.claude_agent_id, c.model, p.claude_agent_id IS NULL AND p.id IS NOT NULL
FROM agents c LEFT JOIN agents p ON p.id = c.parent_agent_id ORDER BY 1, 2 NULLS FIRST
"""
OFFSETS = "SELECT path, byte_offset, lines_read FROM transcript_files ORDER BY path"


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def other_db_url(postgresql_proc: Any) -> Iterator[str]:
    """A second fresh database at head, to compare two ways of reading the same files."""
    with fresh_database(postgresql_proc, "tb") as url:
        yield url


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Every recorded scenario in one folder (main and compact are one resumed session)."""
    dest = tmp_path / "history"
    shutil.copytree(FIXTURES / "transcripts", dest)
    return dest


def reader_for(url: str, **kw: Any) -> tuple[PostgresSink, TranscriptReader]:
    sink = PostgresSink(
        url, host=HOST, connect_timeout_s=5, statement_timeout_ms=30_000, lock_timeout_ms=10_000
    )
    kw.setdefault("allowed_roots", [Path(tempfile.gettempdir())])  # the copies live in tmp_path
    return sink, TranscriptReader(sink, HOST, **kw)


def test_batches_one_transaction_equals_one_file_and_small_chunk_at_a_time(
    db_url: str, other_db_url: str, history: Path
) -> None:
    """All scenarios in one transaction give the same rows, agents and offsets as one file per
    transaction read in 300-byte chunks (every line longer than a chunk)."""
    files = sorted(history.rglob("*.jsonl"), key=str)  # the registry's order
    results = []
    for url, kw in ((db_url, {}), (other_db_url, {"chunk_bytes": 300, "txn_max_files": 1})):
        sink, reader = reader_for(url, **kw)
        try:
            reader.register(files)
            stats = reader.sync()
        finally:
            sink.close()
        results.append((query(url, ROWS), query(url, AGENTS), query(url, OFFSETS)))
        assert (len(files), 0) == (stats.files, stats.bad_lines)
    assert results[0] == results[1]
    rows, _, offsets = results[0]
    assert [(str(p), p.stat().st_size) for p in files] == [o[:2] for o in offsets]
    assert [p.read_bytes().count(b"\n") for p in files] == [o[2] for o in offsets]
    assert 0 < len(rows)


def failing_on(path: str) -> str:
    """UPDATE_TRANSCRIPT_OFFSETS, failing (division by zero) in the transaction that holds `path`.

    The divisor is not a constant, so the planner cannot fold it into an error for every batch."""
    zero = "cardinality(%(path)s::text[]) - cardinality(%(path)s::text[])"
    return db.UPDATE_TRANSCRIPT_OFFSETS.replace(
        "WHERE t.host",
        f"WHERE (CASE WHEN %(path)s::text[] @> ARRAY['{path}'] THEN 1 / ({zero}) END) IS NULL"
        " AND t.host",
    )


def test_batches_failed_transaction_moves_no_offset_and_adds_no_row(
    db_url: str, other_db_url: str, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two files per transaction. When the first transaction fails nothing is stored; when the
    one holding `perm` fails, the files committed before it keep their offsets and rows and the
    rest stay at 0 with no row. The next pass, on the same connection, reads each file once."""
    files = sorted(history.rglob("*.jsonl"), key=str)  # the registry's order
    perm = next(str(p) for p in files if "/perm/" in str(p))
    fail_first, fail_perm = failing_on(str(files[0])), failing_on(perm)
    sink, reader = reader_for(db_url, txn_max_files=2)
    try:
        reader.register(files)
        monkeypatch.setattr(db, "UPDATE_TRANSCRIPT_OFFSETS", fail_first)
        with pytest.raises(PermanentRowError):
            reader.sync()
        assert [(0,)] == query(db_url, "SELECT count(*) FROM token_usage")
        assert {0} == {o for _, o, _ in query(db_url, OFFSETS)}
        monkeypatch.setattr(db, "UPDATE_TRANSCRIPT_OFFSETS", fail_perm)
        with pytest.raises(PermanentRowError):
            reader.sync()  # the rolled-back temporary table is created again first
        offsets = {p: o for p, o, _ in query(db_url, OFFSETS)}
        done = {p for p, o in offsets.items() if o}
        read_from = {p for (p,) in query(db_url, "SELECT transcript_path FROM token_usage")}
        assert perm not in done
        assert done
        assert {p: os.path.getsize(p) for p in done} == {p: offsets[p] for p in done}
        assert read_from <= done
        monkeypatch.undo()
        again = reader.sync()
    finally:
        sink.close()
    assert len(files) - len(done) == again.files
    assert [(str(p), p.stat().st_size) for p in files] == [o[:2] for o in query(db_url, OFFSETS)]
    sink, clean = reader_for(other_db_url)
    try:
        clean.register(files)
        clean.sync()
    finally:
        sink.close()
    assert query(other_db_url, ROWS) == query(db_url, ROWS)


def test_batches_subagent_files_found_beside_a_main_transcript_are_registered_and_read(
    db_url: str, history: Path, sink: PostgresSink
) -> None:
    """The daemon reads the transcript an event named; its subagents/ files join the same pass."""
    main = next((history / "main").glob("*.jsonl"))
    reader = TranscriptReader(sink, HOST, allowed_roots=[history])
    reader.register([main])
    stats = reader.sync(only={str(main)})
    subagent = next(main.with_suffix("").rglob("*.jsonl"))
    assert 2 == stats.files
    assert [(str(main), 5), (str(subagent), 2)] == query(
        db_url, "SELECT transcript_path, count(*) FROM token_usage GROUP BY 1 ORDER BY 1"
    )
