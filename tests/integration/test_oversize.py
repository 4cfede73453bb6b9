"""Oversize payloads: per-field byte cap with hash and size kept, the original kept on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
import psycopg

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.support.spoolwriter import write_event

CAP = 64 * 1024


def ingestor_for(
    spool: Spool, sink: PostgresSink, *, keep_originals: bool = True, max_file_bytes: int = 1 << 30
) -> Ingestor:
    return Ingestor(
        spool,
        sink,
        host="h",
        batch_max_files=100,
        batch_max_bytes=8 << 20,
        foreign_grace_s=0,
        field_cap_bytes=CAP,
        keep_originals=keep_originals,
        max_file_bytes=max_file_bytes,
    )


def edit_payload(size: int) -> dict[str, object]:
    """A PostToolUse of Write whose originalFile is `size` bytes (the usual culprit)."""
    return {
        "session_id": "s-big",
        "hook_event_name": "PostToolUse",
        "tool_name": "Write",
        "tool_use_id": "toolu_big",
        "tool_response": {
            "filePath": "/x",
            "originalFile": "é" + "x" * (size - 2),
            "type": "update",
        },
    }


def test_oversize_field_is_capped_with_hash_size_and_original_kept(
    spool: Spool, sink: PostgresSink, db_url: str
) -> None:
    """A 2 MB field is stored cut to the cap; the row keeps the original's sha256 and size; the
    untruncated file stays in originals/; small fields are untouched."""
    raw = orjson.dumps(edit_payload(2_000_000))
    name = write_event(spool.root, raw, event="PostToolUse")
    original_file = (spool.new / name).read_bytes()
    stats = ingestor_for(spool, sink).drain()
    assert (1, 0) == (stats.inserted, stats.quarantined)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT octet_length(payload->'tool_response'->>'originalFile'), payload->'tool_response'->>'filePath',"
            " payload_sha256, payload_bytes, transforms, tool_use_id FROM agent_logs"
        ).fetchone()
    assert row is not None
    stored_len, file_path, sha, size, transforms, tool_use_id = row
    assert CAP - 1 <= stored_len <= CAP  # cut at a character boundary
    assert ("/x", hashlib.sha256(raw).hexdigest(), len(raw), "toolu_big") == (
        file_path,
        sha,
        size,
        tool_use_id,
    )
    assert ["truncated", "truncated:/tool_response/originalFile"] == transforms
    assert original_file == (spool.originals / name).read_bytes()
    assert [] == list(spool.new.iterdir())


def test_oversize_50mb_payload_lands_capped(spool: Spool, sink: PostgresSink, db_url: str) -> None:
    """A 50 MB event is one capped row, not a failed batch; its neighbours land too."""
    big = write_event(
        spool.root, orjson.dumps(edit_payload(50 * 2**20)), event="PostToolUse", fsync=False
    )
    small = write_event(spool.root, b'{"session_id": "s-small"}', event="Stop", fsync=False)
    stats = ingestor_for(spool, sink).drain()
    assert (2, 0) == (stats.inserted, stats.quarantined)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT event_uid, pg_column_size(payload) < 1000000 FROM agent_logs ORDER BY 1"
        ).fetchall()
    assert sorted([(big, True), (small, True)]) == rows


def test_oversize_originals_can_be_switched_off(spool: Spool, sink: PostgresSink) -> None:
    """With keep_originals off the row is still capped and nothing is kept on disk."""
    write_event(spool.root, orjson.dumps(edit_payload(200_000)), event="PostToolUse")
    ingestor_for(spool, sink, keep_originals=False).drain()
    assert [] == list(spool.originals.iterdir())


def test_oversize_file_over_max_is_quarantined_unread(
    spool: Spool, sink: PostgresSink, tmp_path: Path
) -> None:
    """A file larger than max_file_bytes is quarantined (too_large) by its stat() size, never parsed."""
    name = write_event(spool.root, orjson.dumps(edit_payload(300_000)), event="PostToolUse")
    stats = ingestor_for(spool, sink, max_file_bytes=100_000).drain()
    assert (0, 1) == (stats.inserted, stats.quarantined)
    reason = json.loads((spool.quarantine / f"{name}.reason.json").read_text())
    assert "too_large" == reason["reason"]


def test_oversize_field_deep_in_nesting_is_quarantined_not_a_crash(
    spool: Spool, sink: PostgresSink, db_url: str
) -> None:
    """An oversize string inside a payload nested too deep to re-encode (256 levels: orjson's
    limit; 1000: Python's recursion limit) is quarantined with its reason; the events around it
    in the same batch land, and the drain does not crash."""
    good = write_event(spool.root, orjson.dumps(edit_payload(1000)), event="PostToolUse")
    bad = []
    for depth in (300, 1000):
        text = b'{"a":' * depth + b'"' + b"y" * (CAP + 10) + b'"' + b"}" * depth
        bad.append(write_event(spool.root, text, event="PostToolUse"))
    stats = ingestor_for(spool, sink).drain()
    assert (1, 2) == (stats.inserted, stats.quarantined)
    for name in bad:
        reason = json.loads((spool.quarantine / f"{name}.reason.json").read_text())
        assert "too_deep_to_cap" == reason["reason"]
    with psycopg.connect(db_url) as conn:
        assert [(good,)] == conn.execute("SELECT event_uid FROM agent_logs").fetchall()
