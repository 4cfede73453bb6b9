"""Events as the Ingestor gets them (hook format, parsed), without going through a spool."""

from __future__ import annotations

import itertools

import orjson

from daemon.events import Event, parse
from tests.support.spoolwriter import encode, spool_name

_CLOCK = itertools.count(1_767_225_600_000_000_000, 1_000_000)  # 2026-01-01, 1 ms apart


def hook_event(
    host: str,
    *,
    session: str = "s-1",
    tool: str = "Read",
    event: str = "PreToolUse",
    received_ns: int | None = None,
) -> Event:
    """One parsed PreToolUse-like event of `session` calling `tool`, named like the hook's."""
    ns = next(_CLOCK) if received_ns is None else received_ns
    payload = orjson.dumps({"session_id": session, "tool_name": tool, "hook_event_name": event})
    data = encode(payload, event=event, received_ns=ns, host=host)
    return parse(spool_name(host, ns), data, default_host=host, mtime_ns=ns)
