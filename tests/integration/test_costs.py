"""Transcripts → token_usage → cost views, against Claude Code 2.1.330's own numbers."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from daemon.sink import PostgresSink
from daemon.transcripts import TranscriptReader
from tests.conftest import FIXTURES
from tests.integration.conftest import read_transcripts

TRANSCRIPTS = FIXTURES / "transcripts"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["scenarios"]
TOLERANCE = Decimal("0.000001")
SUB_MAIN = "a4559b86e76dea3ec"


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def reader(sink: PostgresSink, tmp_path: Path) -> TranscriptReader:
    return TranscriptReader(sink, "test-host", allowed_roots=[tmp_path])






def session_cost(url: str, sid: str) -> Decimal:
    ((cost,),) = query(
        url, "SELECT cost_usd FROM claude_session_costs WHERE claude_session_id = %s", sid
    )
    return Decimal(cost)


def result(scenario: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "results" / f"{scenario}.result.json").read_text())


@pytest.mark.parametrize("scenario", ["main", "perm", "extras", "expand", "model", "error"])
def test_costs_session_cost_equals_claude_total_cost_usd(
    reader: TranscriptReader, copies: Path, db_url: str, scenario: str
) -> None:
    """claude_session_costs.cost_usd equals the CLI's total_cost_usd to 1e-6 USD."""
    read_transcripts(reader, copies / scenario)
    sid = EXPECTED[scenario]["session_id"]
    expected = Decimal(str(result(scenario)["total_cost_usd"]))
    rows = query(
        db_url, "SELECT cost_usd FROM claude_session_costs WHERE claude_session_id = %s", sid
    )
    actual = Decimal(rows[0][0]) if rows else Decimal(0)  # model/error: no priced response at all
    assert abs(expected - actual) < TOLERANCE, (expected, actual)


def test_costs_tui_session_equals_last_cost_state(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """Without a result JSON (interactive run) the transcript's last cost-state line is the anchor."""
    read_transcripts(reader, copies / "tui")
    expected = Decimal(str(EXPECTED["tui"]["cost_state_last"]["totalCostUSD"]))
    assert abs(expected - session_cost(db_url, EXPECTED["tui"]["session_id"])) < TOLERANCE


def test_costs_compact_differs_by_exactly_the_unrecorded_compaction(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """Documented exception: after --resume + /compact the CLI total is cumulative and includes the
    compaction call, which no transcript line records; we equal the total minus that call."""
    read_transcripts(reader, copies / "compact")
    res = result("compact")
    compaction = Decimal(
        str(res["model_usage_since_last_result"]["claude-sonnet-4-5-20250929"]["costUSD"])
    )
    total = Decimal(str(res["total_cost_usd"]))
    actual = session_cost(db_url, EXPECTED["compact"]["session_id"])
    assert abs((total - compaction) - actual) < TOLERANCE
    assert total - actual > Decimal("0.01")  # the gap is real, not rounding


def test_costs_subagent_tokens_land_on_the_subagent_row(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """The subagent's two responses are attributed to its own agents row, the rest to the main row."""
    read_transcripts(reader, copies / "main")
    rows = query(
        db_url,
        "SELECT coalesce(claude_agent_id, '(main)'), responses, input_tokens, cache_write_5m_tokens,"
        " cache_read_tokens, output_tokens FROM agent_costs WHERE claude_session_id = %s ORDER BY 1",
        EXPECTED["main"]["session_id"],
    )
    assert [("(main)", 5, 6515, 12015, 17515, 665), (SUB_MAIN, 2, 1003, 1203, 1403, 103)] == rows
    parent = query(
        db_url,
        "SELECT p.claude_agent_id IS NULL FROM agents c JOIN agents p ON p.id = c.parent_agent_id"
        " WHERE c.claude_agent_id = %s",
        SUB_MAIN,
    )
    assert [(True,)] == parent


def test_costs_naive_line_sum_would_double_count(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """Summing every assistant line overcounts (one line per content block); the stored total is the dedup one."""
    main = copies / "main" / f"{EXPECTED['main']['session_id']}.jsonl"
    naive = 0
    for line in main.read_bytes().splitlines():
        entry = orjson.loads(line)
        if entry.get("type") == "assistant":
            naive += entry["message"]["usage"]["input_tokens"]
    read_transcripts(reader, copies / "main")
    ((stored,),) = query(
        db_url, "SELECT sum(input_tokens) FROM token_usage WHERE transcript_path = %s", str(main)
    )
    assert (12626, 6515) == (naive, stored)


def test_costs_reading_twice_changes_nothing(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """A second pass over the same files adds and updates no row."""
    read_transcripts(reader, copies / "main")
    before = query(db_url, "SELECT * FROM token_usage ORDER BY id")
    again = reader.sync()
    fresh = TranscriptReader(reader.sink, "test-host", allowed_roots=reader.allowed_roots)
    fresh.register(sorted((copies / "main").rglob("*.jsonl")))
    third = fresh.sync()
    assert (0, 0, 0, 0) == (again.inserted, again.updated, third.inserted, third.updated)
    assert before == query(db_url, "SELECT * FROM token_usage ORDER BY id")


def test_costs_same_transcript_in_two_places_is_one_response(
    reader: TranscriptReader, copies: Path, db_url: str, tmp_path: Path
) -> None:
    """A copy of a transcript elsewhere (another machine, a backup) adds no response: the key has no path."""
    read_transcripts(reader, copies / "main")
    other = tmp_path / "elsewhere"
    shutil.copytree(copies / "main", other)
    read_transcripts(reader, other)
    assert [(7,)] == query(db_url, "SELECT count(*) FROM token_usage")


def test_costs_partial_last_line_waits_for_the_writer(
    reader: TranscriptReader, db_url: str, tmp_path: Path
) -> None:
    """A line without its newline is not consumed; once completed it is read exactly once."""
    source = (TRANSCRIPTS / "extras" / f"{EXPECTED['extras']['session_id']}.jsonl").read_bytes()
    path = tmp_path / "p" / f"{EXPECTED['extras']['session_id']}.jsonl"
    path.parent.mkdir()
    cut = source.rfind(b'"type":"assistant"')  # inside the last assistant line
    path.write_bytes(source[:cut])
    read_transcripts(reader, path.parent)
    first = query(db_url, "SELECT count(*) FROM token_usage")[0][0]
    with path.open("ab") as f:
        f.write(source[cut:])
    reader.sync()
    assert (6, 7) == (first, query(db_url, "SELECT count(*) FROM token_usage")[0][0])
    ((offset,),) = query(
        db_url, "SELECT byte_offset FROM transcript_files WHERE path = %s", str(path)
    )
    assert len(source) == offset


def test_costs_replaced_and_deleted_files(
    reader: TranscriptReader, db_url: str, tmp_path: Path
) -> None:
    """A replaced file is read again from the start; a deleted one keeps its rows and is marked missing."""
    folder = tmp_path / "r"
    folder.mkdir()
    path = folder / "s.jsonl"
    path.write_bytes(
        (TRANSCRIPTS / "expand" / f"{EXPECTED['expand']['session_id']}.jsonl").read_bytes()
    )
    read_transcripts(reader, folder)
    replacement = folder / "new.tmp"
    replacement.write_bytes(
        (TRANSCRIPTS / "extras" / f"{EXPECTED['extras']['session_id']}.jsonl").read_bytes()
    )
    replacement.replace(path)
    stats = reader.sync()
    assert (1, 7) == (stats.resets, stats.inserted)
    path.unlink()
    reader.sync()
    assert [(8, True)] == query(
        db_url,
        "SELECT (SELECT count(*) FROM token_usage), missing_since IS NOT NULL FROM transcript_files WHERE path = %s",
        str(path),
    )


def test_costs_unknown_model_is_null_and_flagged(
    reader: TranscriptReader, db_url: str, tmp_path: Path
) -> None:
    """A model without a price gives cost NULL (never 0) and is counted as unpriced."""
    line = {
        "type": "assistant", "sessionId": "s-unknown", "requestId": "req_1", "timestamp": "2026-11-23T10:00:00Z",
        "message": {"id": "msg_1", "model": "claude-future-9", "usage": {"input_tokens": 10, "output_tokens": 5}},
    }  # fmt: skip
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "s-unknown.jsonl").write_bytes(orjson.dumps(line) + b"\n")
    read_transcripts(reader, tmp_path / "u")
    rows = query(
        db_url,
        "SELECT cost_usd, unpriced_responses FROM claude_session_costs WHERE claude_session_id = 's-unknown'",
    )
    assert [(None, 1)] == rows


def usage_line(mid: str, model: str, **usage: Any) -> bytes:
    return (
        orjson.dumps(
            {
                "type": "assistant",
                "sessionId": "s-price",
                "requestId": f"req_{mid}",
                "timestamp": "2026-11-23T10:00:00Z",
                "message": {"id": mid, "model": model, "usage": usage},
            }
        )
        + b"\n"
    )


def test_costs_price_rules_long_context_fast_geo_search(
    reader: TranscriptReader, db_url: str, tmp_path: Path
) -> None:
    """Long context re-prices the whole request (Sonnet 4.5); fast, US residency and web search apply."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "s-price.jsonl").write_bytes(
        usage_line("m1", "claude-sonnet-4-5-20250929", input_tokens=150_000, cache_read_input_tokens=60_000,
                   output_tokens=1000)
        + usage_line("m2", "claude-sonnet-4-5-20250929", input_tokens=150_000, output_tokens=1000)
        + usage_line("m3", "claude-opus-4-8", input_tokens=1000, output_tokens=100, speed="fast")
        + usage_line("m4", "claude-sonnet-4-6", input_tokens=1000, inference_geo="us",
                     server_tool_use={"web_search_requests": 3})
    )  # fmt: skip
    read_transcripts(reader, tmp_path / "x")
    costs = dict(query(db_url, "SELECT message_id, cost_usd FROM token_usage_costs"))
    assert (
        Decimal("0.9") + Decimal("0.036") + Decimal("0.0225") == costs["m1"]
    )  # 150k×6 + 60k×0.6 + 1k×22.5
    assert Decimal("0.45") + Decimal("0.015") == costs["m2"]  # under 200k: standard
    assert (Decimal("0.005") + Decimal("0.0025")) * 2 == costs["m3"]
    assert Decimal("0.003") * Decimal("1.1") + Decimal("0.03") == costs["m4"]


def test_costs_price_correction_reprices_history(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """A new price row effective before the usage re-prices it; one effective after leaves it alone."""
    read_transcripts(reader, copies / "expand")
    sid = EXPECTED["expand"]["session_id"]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO prices (model_prefix, effective_from, input_usd_per_mtok, output_usd_per_mtok,"
            " cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok)"
            " VALUES ('claude-sonnet-4-5', '2030-01-01', 100, 100, 100, 100, 100)"
        )
    assert Decimal("0.009768") == session_cost(db_url, sid)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO prices (model_prefix, effective_from, input_usd_per_mtok, output_usd_per_mtok,"
            " cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok)"
            " VALUES ('claude-sonnet-4-5-20250929', '2026-01-01', 6, 30, 7.5, 12, 0.6)"
        )
    assert Decimal("0.009768") * 2 == session_cost(db_url, sid)


def test_costs_turn_cost_covers_main_thread_and_subagent(
    reader: TranscriptReader, copies: Path, db_url: str, spool: Any, ingestor: Any
) -> None:
    """The one prompt of the main scenario costs the whole session: main-thread and subagent responses."""
    from tests.support.spoolwriter import write_event

    for f in sorted((FIXTURES / "hooks" / "all" / "main").iterdir()):
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
    ingestor.drain()
    read_transcripts(reader, copies / "main")
    rows = query(db_url, "SELECT prompt_id, outcome, cost_usd FROM turns")
    assert [("3e855eb2-fa71-4af7-9a8d-8b1166c1a4e8", "stop", Decimal("0.0893169"))] == rows


def test_costs_agent_model_filled_from_responses(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """Agents no event or state.json named a model for get the model of their responses."""
    read_transcripts(reader, copies / "main")
    rows = query(db_url, "SELECT coalesce(claude_agent_id, '(main)'), model FROM agents ORDER BY 1")
    assert [
        ("(main)", "claude-sonnet-4-5-20250929"),
        (SUB_MAIN, "claude-sonnet-4-5-20250929"),
    ] == rows
