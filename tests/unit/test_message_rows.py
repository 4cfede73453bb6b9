"""daemon/messages.py: which transcript entries become rows, and what a row keeps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.messages import BOOKKEEPING_TYPES, TOO_DEEP, Entry, MessageArchive
from daemon.redaction import Redactor
from tests.unit.test_redaction import SECRETS


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


def secret_entries(secret: str, at: int, total: int = 70) -> list[Entry]:
    """`total` conversation entries of the four roles; the one at `at` carries `secret`."""
    out: list[Entry] = []
    for i in range(total):
        words = secret if i == at else f"line {i}: nothing to hide here"
        shapes: list[dict[str, Any]] = [
            entry(type="user", message={"role": "user", "content": words}),
            entry(type="assistant", message={"id": f"m{i}", "content": [{"type": "text", "text": words}]}),
            entry(type="user", message={"content": [{"type": "tool_result", "tool_use_id": "t", "content": words}]}),
            entry(type="attachment", attachment={"type": "file", "filename": words}),
            entry(type="system", subtype="informational", content=words),
        ]  # fmt: skip
        e = shapes[i % len(shapes)]
        e["uuid"] = f"u-{i}"
        out.append((e, "p-1", 100 + i))
    return out


@pytest.mark.parametrize(("kind", "text", "secret"), SECRETS)
def test_message_rows_grouped_redaction_equals_redacting_each_row(
    kind: str, text: str, secret: str
) -> None:
    """MessageArchive.rows redacts a group of rows with one call, and makes them again one by one
    when it finds a secret: for every secret of the redaction corpus, in any row of a group
    (first, middle, last, first of the second group), with the default rules and with settings'
    patterns that anchor (`^`, `$`) and key names, the rows equal `row` of each entry, and the
    secret is in none of them."""
    redactors = [
        Redactor(),
        Redactor(extra_patterns=[r"^line 3", r"hide here$", r"n[a-z]+"], extra_keys=["filename"]),
    ]
    for redactor in redactors:
        archive = MessageArchive(redactor=redactor)
        for at in (0, 31, 63, 64, 69):
            entries = secret_entries(text, at)
            one_by_one = [archive.row(e, p, "t", n) for e, p, n in entries]
            got = archive.rows(entries, "t")
            assert one_by_one == got, (kind, at)
            assert not any(secret in (r.content or "") for r in got), (kind, at)
            assert got[at].transforms, (kind, at)
