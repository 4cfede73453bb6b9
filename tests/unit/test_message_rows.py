"""daemon/messages.py: which transcript entries become rows, and what a row keeps."""

from __future__ import annotations

from typing import Any

import orjson

from daemon.messages import BOOKKEEPING_TYPES, TOO_DEEP, MessageArchive
from daemon.redaction import Redactor


def entry(**kw: Any) -> dict[str, Any]:
    base = {
        "uuid": "u-1",
        "parentUuid": "u-0",
        "sessionId": "s-1",
        "timestamp": "2026-11-23T10:00:00Z",
    }
    return {**base, **kw}


def test_message_rows_skip_bookkeeping_and_entries_without_uuid() -> None:
    """Bookkeeping line types and any line without a uuid give no row."""
    archive = MessageArchive(redactor=Redactor())
    for kind in BOOKKEEPING_TYPES:
        assert archive.row({"type": kind, "sessionId": "s-1"}, None, "p") is None
        assert archive.row(entry(type=kind), None, "p") is None
    assert archive.row({"type": "user", "message": {"content": "hi"}}, None, "p") is None


def test_message_rows_too_deep_content_keeps_its_place() -> None:
    """Content nested deeper than orjson encodes is not stored, but the row (thread link,
    role, time) is, with too_deep in transforms; no exception reaches the reader."""
    deep: Any = "x"
    for _ in range(400):
        deep = [deep]
    row = MessageArchive(redactor=Redactor()).row(
        entry(
            type="user",
            message={"role": "user", "content": [{"type": "tool_result", "content": deep}]},
        ),
        None,
        "p",
        line_bytes=1234,
    )
    assert row is not None
    assert ("u-0", "tool_result", [TOO_DEEP], None, 1234) == (
        row.parent_uuid, row.entry_type, row.transforms, row.text, row.content_bytes,
    )  # fmt: skip


def test_message_rows_nul_is_escaped_and_metadata_mode_keeps_no_text() -> None:
    """A NUL in a prompt is escaped as in payloads (reversibly: U+2400 then 0); metadata mode
    keeps tool names, no words."""
    full = MessageArchive(redactor=Redactor()).row(
        entry(type="user", promptId="p-1", message={"role": "user", "content": "a\u0000b"}),
        None,
        "p",
    )
    assert full is not None
    assert (["nul_escaped"], "a\u24000b", "p-1") == (full.transforms, full.text, full.prompt_id)
    tool = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "Bash",
        "input": {"command": "echo secret-words"},
    }
    meta = MessageArchive("metadata", Redactor()).row(
        entry(type="assistant", message={"id": "msg_1", "model": "m", "content": [tool]}),
        "p-1",
        "p",
    )
    assert meta is not None
    assert ("tool_use", "Bash", "toolu_1", None, "p-1") == (
        meta.entry_type, meta.tool_name, meta.tool_use_id, meta.text, meta.prompt_id,
    )  # fmt: skip
    assert meta.content is not None
    assert "secret-words" not in meta.content
    assert {"type": "tool_use", "name": "Bash", "id": "toolu_1"} == orjson.loads(meta.content)
    assert len(orjson.dumps(tool)) == meta.content_bytes
