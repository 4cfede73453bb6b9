"""What one batch of events says about each Claude session and subagent (`agents` rows)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.event_rows import ns_to_datetime
from daemon.events import END_EVENTS, SUBAGENT_END_EVENTS, Event


@dataclass(slots=True)
class AgentObservation:
    sid: str
    aid: str | None
    host: str
    first_ns: int
    last_ns: int
    last_is_end: bool
    own_events: bool = False  # False: only a subagent's events mention this (main) session
    agent_type: str | None = None
    model: str | None = None
    model_ns: int = -1
    cwd: str | None = None
    slug: str | None = None


def observe_agents(events: Iterable[Event]) -> list[AgentObservation]:
    """One observation per (claude session, subagent) in the batch, mains included.

    Deduplicated here because ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    """
    obs: dict[tuple[str, str | None], AgentObservation] = {}
    for e in events:
        if not e.claude_session_id:
            continue
        keys: list[tuple[str, str | None]] = [(e.claude_session_id, None)]
        if e.claude_agent_id:
            keys.append((e.claude_session_id, e.claude_agent_id))
        for key in keys:
            own = key[1] == e.claude_agent_id
            o = obs.get(key)
            if o is None:
                o = obs[key] = AgentObservation(
                    key[0], key[1], e.host, e.received_ns, e.received_ns, False
                )
            o.first_ns = min(o.first_ns, e.received_ns)
            if not own:
                continue  # a subagent's event only proves its parent exists
            if not o.own_events or e.received_ns >= o.last_ns:
                o.own_events = True
                o.last_ns = e.received_ns
                ends = SUBAGENT_END_EVENTS if key[1] else END_EVENTS
                o.last_is_end = e.event_type in ends
                o.cwd = e.cwd or o.cwd
            if e.agent_type and not o.agent_type:
                o.agent_type = e.agent_type
            if e.model and e.received_ns >= o.model_ns:
                o.model, o.model_ns = e.model, e.received_ns
            if e.workflow_slug and key[1] is None:
                o.slug = e.workflow_slug
    return list(obs.values())


def agent_params(items: Sequence[AgentObservation]) -> dict[str, list[Any]]:
    return {
        "sid": [o.sid for o in items],
        "aid": [o.aid for o in items],
        "agent_type": [o.agent_type for o in items],
        "model": [o.model for o in items],
        "status": [
            ("complete" if o.last_is_end else "executing") if o.own_events else None for o in items
        ],
        "cwd": [o.cwd for o in items],
        "host": [o.host for o in items],
        "started": [ns_to_datetime(o.first_ns) for o in items],
        "completed": [
            ns_to_datetime(o.last_ns) if o.own_events and o.last_is_end else None for o in items
        ],
        "last_at": [ns_to_datetime(o.last_ns) if o.own_events else None for o in items],
        "slug": [o.slug for o in items],
    }
