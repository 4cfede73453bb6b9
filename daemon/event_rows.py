"""An event's row in `agent_logs`: its idempotency key (`event_uid`) and its column values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.events import Event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
