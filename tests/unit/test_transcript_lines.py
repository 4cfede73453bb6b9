"""daemon.transcript_lines.parse_lines: parsing only candidate lines finds what parsing every line finds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from daemon.messages import MessageArchive, MessageRow
from daemon.redaction import Redactor
from daemon.transcript_lines import Usage, parse_lines, usage_from_line

REPO = Path(__file__).resolve().parents[2]
TRANSCRIPTS = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "transcripts"
FILES = sorted(TRANSCRIPTS.rglob("*.jsonl"))


def parse_every_line(
    data: bytes, prompt_id: str | None, path: str
) -> tuple[dict[tuple[str, str], Usage], str | None, int]:
    """The reference: orjson.loads on every line, as the reader did before the pre-filter."""
    merged: dict[tuple[str, str], Usage] = {}
    bad = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "user" and isinstance(entry.get("promptId"), str):
            prompt_id = entry["promptId"]
        usage = usage_from_line(entry, prompt_id, path)
        if usage is None:
            continue
        known = merged.get(usage.key)
        if known is None:
            merged[usage.key] = usage
        else:
            known.merge(usage)
    return merged, prompt_id, bad


def test_parse_lines_equals_full_parse_on_every_fixture_transcript() -> None:
    """For each recorded transcript: same usages (every field), same final prompt id, nothing unreadable."""
    assert FILES
    for path in FILES:
        data = path.read_bytes()
        expected = parse_every_line(data, None, str(path))
        assert expected == parse_lines(data, len(data), None, str(path)), path


def test_parse_lines_equals_full_parse_across_random_chunk_boundaries() -> None:
    """Cut at line ends as the reader does, carrying the prompt id from chunk to chunk."""
    rng = random.Random(7)
    for path in FILES:
        lines = path.read_bytes().splitlines(keepends=True)
        cuts = sorted(rng.sample(range(1, len(lines)), min(3, len(lines) - 1)))
        got_prompt: str | None = None
        want_prompt: str | None = None
        for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True):
            chunk = b"".join(lines[a:b])
            # The reader reads past the last newline; parse_lines must not look beyond `end`.
            padded = chunk + b'{"type":"assistant","message":{"usage":'
            got, got_prompt, _ = parse_lines(padded, len(chunk), got_prompt, str(path))
            want, want_prompt, _ = parse_every_line(chunk, want_prompt, str(path))
            assert (want, want_prompt) == (got, got_prompt), (path, a, b)


def line(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry) + b"\n"


def assistant(mid: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "assistant",
        "sessionId": "s1",
        "requestId": f"req_{mid}",
        "message": {"id": mid, "model": "claude-sonnet-4-5", "usage": {"input_tokens": 7}},
        **extra,
    }


def test_parse_lines_edge_cases() -> None:
    """Spaced JSON, unreadable candidates, keys only inside strings, prompt ids, blank lines."""
    spaced = b'{"type": "assistant", "requestId": "r2", "message": {"id": "m2", "usage": {"input_tokens": 3}}}\n'
    data = (
        line({"type": "user", "promptId": "p1", "message": {"content": 'say "usage" twice'}})
        + line(assistant("m1"))
        + b"\n   \n"
        + line({"type": "attachment", "text": 'a "usage" quoted, "promptId": "no"'})
        + b'{"type":"assistant","message":{"usage":{"input_tokens": 5}\n'  # cut off: unreadable
        + b'{"type":"attachment","truncated":true\n'  # unreadable but carries neither key: skipped
        + spaced
        + line({"type": "user", "promptId": "p2"})
        + line(assistant("m1", promptId="p-own"))  # a duplicate: merged into m1
    )
    expected = parse_every_line(data, None, "t")
    got = parse_lines(data, len(data), None, "t")
    assert ["m1", "m2"] == [k[0] for k in got[0]]
    assert ("p1", "p1") == (got[0][("m1", "req_m1")].prompt_id, got[0][("m2", "r2")].prompt_id)
    assert ("p2", 1) == (got[1], got[2])
    assert (expected[0], expected[1], 2) == (got[0], got[1], expected[2])


def test_parse_lines_skips_lines_whose_first_key_names_a_type_that_yields_nothing() -> None:
    """`{"type":"api-request-blob",…}` holding "usage" and "promptId" is not parsed, so not
    counted when cut off; the same line with a blank after the colon goes through the key test
    and is. A type written with an escape is parsed: its prompt id counts. Usages and prompt ids
    equal parsing every line; only the skipped unreadable line is not counted."""
    data = (
        line({"type": "user", "promptId": "p1"})
        + line({"type": "api-request-shape", "promptId": "p-shape", "message": {"usage": {}}})
        + b'{"type":"api-request-blob","promptId":"p-cut","usage":\n'  # cut off: never parsed
        + b'{"type": "api-request-blob","promptId":"p-cut","usage":\n'  # spaced: parsed, unreadable
        + b'{"type":"\\u0075ser","promptId":"p-escaped"}\n'  # "user" with an escape: parsed
        + line(assistant("m1"))
    )
    got, prompt, bad = parse_lines(data, len(data), None, "t")
    expected = parse_every_line(data, None, "t")
    assert ("p-escaped", 1) == (prompt, bad)
    assert "p-escaped" == got[("m1", "req_m1")].prompt_id
    assert (expected[0], expected[1], 2) == (got, prompt, expected[2])


def test_parse_lines_archive_rows_equal_rows_of_every_line() -> None:
    """With the archive on, the rows of each recorded transcript (main and subagents) equal
    MessageArchive.row over every line parsed one by one, in order: the type test drops none."""
    archive = MessageArchive(redactor=Redactor())
    for path in FILES:
        data = path.read_bytes()
        want: list[MessageRow] = []
        prompt: str | None = None
        for raw in data.splitlines():
            entry = orjson.loads(raw)
            if entry.get("type") == "user" and isinstance(entry.get("promptId"), str):
                prompt = entry["promptId"]
            row = archive.row(entry, prompt, str(path), len(raw))
            if row is not None:
                want.append(row)
        got: list[MessageRow] = []
        parse_lines(data, len(data), None, str(path), {}, archive=archive, messages=got)
        assert want == got, path
        assert want, path
