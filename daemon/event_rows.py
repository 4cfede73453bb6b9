"""An event's row in `agent_logs`: its idempotency key (`event_uid`) and its column values,
as a tuple (`event_row`, for psycopg's `write_row`) or as COPY text (`copy_text`, the fast path:
one string per batch instead of a `write_row` call per row)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.events import Event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COPY_NULL = "\\N"  # COPY text format: a NULL field
COPY_CHUNK_BYTES = 256 * 1024  # COPY data is sent in pieces of about this many bytes
EVENT_CATEGORY = "hook"  # agent_logs.event_category of a hook event
AgentKey = tuple[str, str | None]  # (claude session id, subagent id or None)
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")  # what COPY's text format escapes
AgentIds = tuple[uuid.UUID, uuid.UUID | None]  # (agents.id, agents.session_id)


def ns_to_datetime(ns: int) -> datetime:
    """Exact to the microsecond (PostgreSQL's resolution)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def event_uid(name: str, host: str) -> str:
    """The row's idempotency key: the spool file name, qualified by the event's host.

    The hook's names end in `.<host>` and are kept as they are; any other name (a foreign
    writer's) gets `@<host>` appended, so the same file name on two hosts is two events.
    """
    return name if name.endswith(f".{host}") else f"{name}@{host}"


def event_row(e: Event) -> tuple[Any, ...]:
    return (
        event_uid(e.spool_name, e.host), e.host, e.claude_session_id, e.claude_agent_id, e.event_type, e.tool_name,
        e.tool_use_id, e.prompt_id, ns_to_datetime(e.received_ns), e.cwd, e.project_dir,
        e.workflow_slug, e.agent_type, e.payload, e.payload_bytes, e.payload_sha256, e.transforms,
    )  # fmt: skip


def copy_field(value: str | None) -> str:
    """One text field in COPY's text format: backslash, tab, newline and carriage return
    escaped; None is `\\N`. The `in` tests are memchr scans, so a clean value costs no copy."""
    if value is None:
        return COPY_NULL
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    return value


def array_literal(items: Sequence[str]) -> str:
    """A text[] literal with every element quoted (JSON pointers may hold `,{}"` and blanks)."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def copy_text(events: Sequence[Event], agents: Mapping[AgentKey, AgentIds]) -> bytes:
    """All of copy_chunks in one piece."""
    return b"".join(copy_chunks(events, agents))


def copy_chunks(
    events: Sequence[Event],
    agents: Mapping[AgentKey, AgentIds],
    chunk_bytes: int = COPY_CHUNK_BYTES,
) -> Iterator[bytes]:
    """The COPY data (UTF-8) of db.COPY_EVENTS_DIRECT for a batch, in pieces of about
    `chunk_bytes` (a line longer than that alone): one line per event, agent_id and session_id
    taken from `agents` (what INSERT_EVENTS's join would find). Pieces keep memory flat with
    large payloads and let the server parse one while the next is formatted.

    Per row: the short text columns are checked for COPY's special characters in one regex
    search over their concatenation (escaped one by one only when one is found), the agents'
    ids are formatted once per agent and the timestamp's date and time once per second."""
    ids_text = {
        key: f"{agent_id}\t{COPY_NULL if session_id is None else session_id}"
        for key, (agent_id, session_id) in agents.items()
    }
    no_ids = f"{COPY_NULL}\t{COPY_NULL}"
    seconds: dict[int, str] = {}
    lines: list[bytes] = []
    pending = 0
    special = _COPY_SPECIAL.search
    for e in events:
        sid = e.claude_session_id
        small = (
            event_uid(e.spool_name, e.host), e.host, sid, e.claude_agent_id, e.event_type,
            e.tool_name, e.tool_use_id, e.prompt_id, e.cwd, e.project_dir, e.workflow_slug,
            e.agent_type, e.payload_sha256,
        )  # fmt: skip
        if special("\x00".join([v for v in small if v is not None])):
            text = [copy_field(v) for v in small]
        else:
            text = [COPY_NULL if v is None else v for v in small]
        us = e.received_ns // 1000
        second = seconds.get(us // 1_000_000)
        if second is None:
            second = seconds[us // 1_000_000] = ns_to_datetime(us * 1000).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
        # Encoded per line: a non-ASCII payload widens only its own line, not the batch.
        line = (
            f"{text[0]}\t{text[1]}\t{text[2]}\t{text[3]}\t"
            f"{ids_text.get((sid, e.claude_agent_id), no_ids) if sid else no_ids}\t"
            f"{EVENT_CATEGORY}\t{text[4]}\t{text[5]}\t{text[6]}\t{text[7]}\t"
            f"{second}.{us % 1_000_000:06d}+00\t{text[8]}\t{text[9]}\t{text[10]}\t{text[11]}\t"
            f"{copy_field(e.payload)}\t{e.payload_bytes}\t{text[12]}\t"
            f"{COPY_NULL if e.transforms is None else copy_field(array_literal(e.transforms))}\n"
        ).encode("utf-8", "surrogatepass")
        if len(line) >= chunk_bytes:
            if lines:
                yield b"".join(lines)
                lines, pending = [], 0
            yield line
            continue
        lines.append(line)
        pending += len(line)
        if pending >= chunk_bytes:
            yield b"".join(lines)
            lines, pending = [], 0
    if lines:
        yield b"".join(lines)
