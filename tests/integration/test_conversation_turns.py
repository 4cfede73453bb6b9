"""conversation_turns (migration 0008): each user prompt to its final reply, with the turns
view's hook timing and the prompt's tool calls, tokens and cost."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.transcripts import TranscriptReader
from tests.conftest import FIXTURES
from tests.integration.test_timing_views import replay

MAIN = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
MAIN_PROMPT = "3e855eb2-fa71-4af7-9a8d-8b1166c1a4e8"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["scenarios"]
TURN = """
SELECT prompt_text, reply_text, started_at, replied_at, duration_ms, duration_source, outcome,
    tool_uses, tool_calls, responses, input_tokens, output_tokens, cost_usd
FROM conversation_turns WHERE claude_session_id = %s
"""


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def read_main(sink: PostgresSink, tmp_path: Path) -> list[dict[str, Any]]:
    work = tmp_path / "main"
    shutil.copytree(FIXTURES / "transcripts" / "main", work)
    files = sorted(work.rglob("*.jsonl"))
    reader = TranscriptReader(sink, "test-host", allowed_roots=[tmp_path])
    reader.register(files)
    reader.sync()
    return [orjson.loads(x) for p in files for x in p.read_bytes().splitlines()]


def test_conversation_turns_prompt_to_final_reply_from_the_transcript(
    db_url: str, sink: PostgresSink, tmp_path: Path
) -> None:
    """Without hook events: one row for the main prompt, its last assistant text as the reply,
    the transcript's times for the duration, every tool_use block (the subagent's too), and
    the session's tokens and cost (the subagent's lines carry the parent's prompt id)."""
    lines = read_main(sink, tmp_path)
    tool_uses = sum(
        1
        for e in lines
        if e["type"] == "assistant" and e["message"]["content"][0]["type"] == "tool_use"
    )
    main_texts = [
        e for e in lines
        if e["type"] == "assistant" and "agentId" not in e and e["message"]["content"][0]["type"] == "text"
    ]  # fmt: skip
    rows = query(db_url, TURN, MAIN)
    assert 1 == len(rows)
    (
        prompt,
        reply,
        started,
        replied,
        ms,
        source,
        outcome,
        uses,
        calls,
        responses,
        tin,
        tout,
        cost,
    ) = rows[0]
    assert ("do the thing", main_texts[-1]["message"]["content"][0]["text"]) == (prompt, reply)
    assert Decimal(str(round((replied - started).total_seconds() * 1000, 3))) == ms
    assert ("transcript", None, None) == (source, outcome, calls)
    assert 6 == tool_uses == uses
    usage = EXPECTED["main"]
    assert 7 == responses
    assert (7518, 768) == (tin, tout)
    assert Decimal(str(usage["result"]["total_cost_usd"])) == cost


def test_conversation_turns_take_hook_timing_from_turns(
    db_url: str, sink: PostgresSink, spool: Spool, ingestor: Ingestor, tmp_path: Path
) -> None:
    """With the hook events too, duration, outcome and tool calls are the turns view's."""
    replay(spool, "main")
    ingestor.drain()
    read_main(sink, tmp_path)
    turn = query(
        db_url,
        "SELECT duration_ms, outcome, tool_calls FROM turns WHERE prompt_id = %s",
        MAIN_PROMPT,
    )
    rows = query(
        db_url, "SELECT duration_ms, duration_source, outcome, tool_calls FROM conversation_turns"
    )
    assert [(*turn[0][:1], "hooks", *turn[0][1:])] == rows
    assert "stop" == rows[0][2]
