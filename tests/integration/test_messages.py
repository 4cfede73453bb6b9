"""The conversation archive: one `messages` row per conversation entry of a transcript, kept
after the transcript is gone, with redaction, caps and the privacy setting applied."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import psycopg

from daemon import messages as archive_rows
from daemon.messages import MessageArchive
from daemon.redaction import Redactor
from daemon.sink import PostgresSink
from daemon.transcripts import TranscriptReader
from tests.conftest import FIXTURES

HOST = "test-host"
MAIN_SID = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
ROWS = """
SELECT m.uuid, m.parent_uuid, m.claude_session_id, m.claude_agent_id, m.role, m.entry_type,
    a.sdk_session_id, a.claude_agent_id
FROM messages m LEFT JOIN agents a ON a.id = m.agent_id
"""


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()




def read(sink: PostgresSink, files: list[Path], archive: MessageArchive | None = None) -> Any:
    # The copies live below the temporary directory, not below a Claude projects/ folder.
    reader = TranscriptReader(
        sink, HOST, archive=archive, allowed_roots=[Path(tempfile.gettempdir())]
    )
    reader.register(files)
    return reader.sync()


def entries(files: list[Path]) -> list[dict[str, Any]]:
    """Every transcript line, decoded (the test's own reading, not the daemon's)."""
    return [orjson.loads(line) for p in files for line in p.read_bytes().splitlines()]


def expected_kind(e: dict[str, Any]) -> str | None:
    """The entry types the issue names: a user prompt, an assistant text or thinking block."""
    content = e.get("message", {}).get("content")
    if (
        e["type"] == "user"
        and isinstance(content, str)
        and not e.get("isMeta")
        and not e.get("isCompactSummary")
    ):
        return "prompt"
    if (
        e["type"] == "assistant"
        and isinstance(content, list)
        and content[0]["type"] in ("text", "thinking")
    ):
        return str(content[0]["type"])
    return None


def test_messages_every_prompt_and_reply_block_is_one_row(
    db_url: str, sink: PostgresSink, tmp_path: Path
) -> None:
    """For every recorded scenario (subagents included, main and compact being one resumed
    session), each entry with a uuid of a conversation type is exactly one row, with the
    transcript's parent uuid, session and agent; each user prompt and assistant text or
    thinking block is a row of that entry type; bookkeeping lines are not stored."""
    history = tmp_path / "history"
    shutil.copytree(FIXTURES / "transcripts", history)
    files = sorted(history.rglob("*.jsonl"))
    read(sink, files)
    lines = entries(files)
    conversation = {
        e["uuid"]: e
        for e in lines
        if "uuid" in e and e["type"] in ("user", "assistant", "system", "attachment")
    }
    rows = {r[0]: r for r in query(db_url, ROWS)}
    assert len(rows) == len(query(db_url, "SELECT 1 FROM messages"))  # uuid is unique
    assert sorted(conversation) == sorted(rows)
    kinds = 0
    for uuid, e in conversation.items():
        _, parent, sid, aid, role, entry_type, agent_sid, agent_aid = rows[uuid]
        assert (e.get("parentUuid"), e["sessionId"], e.get("agentId"), e["type"]) == (
            parent,
            sid,
            aid,
            role,
        )
        assert (e["sessionId"], e.get("agentId")) == (agent_sid, agent_aid)  # the agents row
        kind = expected_kind(e)
        if kind is not None:
            kinds += 1
            assert kind == entry_type, uuid
    assert kinds == 35  # distinct prompts and text/thinking blocks over the fixtures
    subagent_texts = [r for r in rows.values() if r[3] is not None and r[5] == "text"]
    assert subagent_texts, "the subagents' replies are archived"
    skipped = {e["type"] for e in lines if "uuid" not in e}
    assert skipped <= set(archive_rows.BOOKKEEPING_TYPES)


def test_messages_survive_deletion_and_resume_adds_nothing(
    db_url: str, sink: PostgresSink, tmp_path: Path
) -> None:
    """Rows stay after Claude Code deletes the transcript (subagent folder included); reading
    the resumed session (the compact scenario: the same file grown) and a copy of its history
    in another session file adds no duplicate row."""
    src = FIXTURES / "transcripts"
    work = tmp_path / "p"
    shutil.copytree(src / "main", work)
    main = work / f"{MAIN_SID}.jsonl"
    files = [main, *sorted((work / MAIN_SID).rglob("*.jsonl"))]
    read(sink, files)
    before = query(db_url, "SELECT uuid, content, text FROM messages ORDER BY uuid")
    assert before

    shutil.copyfile(src / "compact" / f"{MAIN_SID}.jsonl", main)  # --resume appends
    copy = work / "11111111-2222-4333-8444-555555555555.jsonl"
    copy.write_bytes((src / "main" / f"{MAIN_SID}.jsonl").read_bytes())  # history copied
    read(sink, [*files, copy])
    expected = {
        e["uuid"]
        for e in entries([src / "compact" / f"{MAIN_SID}.jsonl", *files[1:]])
        if "uuid" in e
    }
    after = query(db_url, "SELECT uuid FROM messages")
    assert len(expected) == len(after)
    assert expected == {r[0] for r in after}

    shutil.rmtree(work)
    stats = read(sink, [])
    assert stats.archived == 0
    kept = query(db_url, "SELECT uuid, content, text FROM messages WHERE uuid = ANY(%s) ORDER BY uuid",
                 ([r[0] for r in before],))  # fmt: skip
    assert before == kept
    TranscriptReader(
        sink, HOST, allowed_roots=[Path(tempfile.gettempdir())]
    ).sync()  # notices the deleted files
    assert query(db_url, "SELECT count(*) FROM transcript_files WHERE missing_since IS NULL") == [
        (0,)
    ]
    assert len(expected) == len(query(db_url, "SELECT uuid FROM messages"))


def test_messages_metadata_mode_keeps_no_text(
    db_url: str, sink: PostgresSink, tmp_path: Path
) -> None:
    """archive = metadata keeps roles, times, tools and sizes but no text; off keeps no row."""
    work = tmp_path / "main"
    shutil.copytree(FIXTURES / "transcripts" / "main", work)
    files = sorted(work.rglob("*.jsonl"))
    read(sink, files, MessageArchive("metadata", Redactor()))
    rows = query(
        db_url,
        "SELECT role, entry_type, tool_name, content_bytes, text, content::text FROM messages",
    )
    assert rows
    assert all(r[4] is None for r in rows)
    assert not [
        r for r in rows if "do the thing" in r[5] or "echo hello" in r[5] or "subagent" in r[5]
    ]
    assert {"Bash", "Write", "Read", "Agent"} <= {r[2] for r in rows}
    assert all(r[3] > 0 for r in rows)


def test_messages_off_mode_stores_no_row_and_keeps_usage(
    db_url: str, sink: PostgresSink, tmp_path: Path
) -> None:
    """archive = off: no messages rows, token usage read as before."""
    work = tmp_path / "main"
    shutil.copytree(FIXTURES / "transcripts" / "main", work)
    stats = read(sink, sorted(work.rglob("*.jsonl")), MessageArchive("off"))
    assert (0, 0) == (stats.messages, stats.archived)
    assert [(0,)] == query(db_url, "SELECT count(*) FROM messages")
    assert [(7,)] == query(db_url, "SELECT count(*) FROM token_usage")


def test_messages_redacted_and_capped_like_payloads(
    db_url: str, sink: PostgresSink, tmp_path: Path
) -> None:
    """A secret in a prompt is replaced (no hash kept); a tool result over the field cap is
    cut, its original size and sha256 kept, and both say so in transforms."""
    big = "x" * 5000
    result_content = [{"tool_use_id": "toolu_1", "type": "tool_result", "content": big}]
    lines = [
        {"type": "user", "uuid": "u-1", "parentUuid": None, "sessionId": "s-1", "promptId": "p-1",
         "timestamp": "2026-11-23T10:00:00.000Z", "message": {"role": "user", "content": f"token {GITHUB_TOKEN} here"}},
        {"type": "user", "uuid": "u-2", "parentUuid": "u-1", "sessionId": "s-1", "promptId": "p-1",
         "timestamp": "2026-11-23T10:00:01.000Z", "message": {"role": "user", "content": result_content}},
    ]  # fmt: skip
    path = tmp_path / "s-1.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    read(sink, [path], MessageArchive("full", Redactor(), field_cap_bytes=1000))
    rows = {
        r[0]: r[1:]
        for r in query(
            db_url, "SELECT uuid, text, content_bytes, content_sha256, transforms FROM messages"
        )
    }
    text, _, sha, transforms = rows["u-1"]
    assert GITHUB_TOKEN not in text
    assert "[REDACTED:" in text
    assert sha is None
    assert "redacted" in transforms
    text, size, sha, transforms = rows["u-2"]
    original = orjson.dumps(result_content)
    assert (len(original), hashlib.sha256(original).hexdigest()) == (size, sha)
    assert "truncated" in transforms
    assert len(text) == 1000
