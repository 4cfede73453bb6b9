"""What one state.json content writes, inside the transaction PostgresSink opened.

The sessions row, an agents row per listed agent (linked to the session, with their children
and events), and a phase row in agent_logs when the status changed (daemon/workflows.py reads
the files; docs/reference/state-json.md has the rules)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from daemon import db
from daemon.event_rows import ns_to_datetime
from daemon.sink_port import AppliedState, StateAgent, WorkflowState

Cursor = psycopg.Cursor[tuple[Any, ...]]


def apply(cur: Cursor, host: str, state: WorkflowState) -> AppliedState | None:
    """Store one state.json content; None when it is already the stored one."""
    cur.execute(db.SELECT_SESSION_STATE, (host, state.slug))
    row = cur.fetchone()
    old_status = str(row[1]) if row else None
    if row and row[2] == state.sha256:
        return None  # another daemon (or an earlier run) applied this content
    cur.execute(
        db.UPSERT_SESSION_STATE,
        {
            "host": host,
            "slug": state.slug,
            "title": state.title,
            "status": state.status,
            "session_type": state.session_type,
            "working_dir": state.working_dir,
            "state_path": state.state_path,
            "total_cost": state.total_cost,
            "state": state.state_json,
            "sha": state.sha256,
            "created_at": state.created_at,
            "completed_at": state.completed_at,
        },
    )
    fetched = cur.fetchone()
    assert fetched is not None
    session_id: uuid.UUID = fetched[0]
    agent_ids = [_upsert_agent(cur, host, agent, session_id) for agent in state.agents]
    if agent_ids:
        cur.execute(db.LINK_CHILD_AGENTS, (agent_ids,))
        children = [r[0] for r in cur.fetchall()]
        cur.execute(db.BACKFILL_SESSION_LINKS, (agent_ids + children,))
    new_status = state.status or old_status or "created"
    changed = row is None or new_status != old_status
    if changed:
        payload = {
            "from": old_status,
            "to": new_status,
            "state_sha256": state.sha256,
            "state_path": state.state_path,
        }
        cur.execute(
            db.INSERT_PHASE_EVENT,
            {
                "uid": f"phase:{host}:{state.slug}:{old_status}:{new_status}:{state.sha256}",
                "host": host,
                "session_id": session_id,
                "event_type": new_status,
                "occurred_at": ns_to_datetime(state.mtime_ns),
                "payload": Jsonb(payload),
                "payload_bytes": len(orjson.dumps(payload)),
                "slug": state.slug,
            },
        )
    return AppliedState(session_id, old_status, new_status, changed)


def _upsert_agent(cur: Cursor, host: str, agent: StateAgent, session_id: uuid.UUID) -> uuid.UUID:
    """The agents row of one state.json entry (db.SELECT_STATE_AGENT_TARGET has the rule).

    An entry may name its Claude session only in a later version of the file, or name
    another one; neither may hit the primary key of the row its id already has."""
    params = {**asdict(agent), "session_id": session_id, "host": host}
    statement = db.UPSERT_STATE_AGENT_BY_ID
    if agent.sdk_session_id:
        cur.execute(db.SELECT_STATE_AGENT_TARGET, params)
        target = cur.fetchone()
        assert target is not None
        session_row, placeholder = target
        if session_row is not None:
            statement = db.UPSERT_STATE_AGENT_BY_SDK
            if agent.id is not None and agent.id != session_row and placeholder:
                cur.execute(db.DETACH_STATE_AGENT_PLACEHOLDER, params)
        elif not placeholder:
            statement = db.UPSERT_STATE_AGENT_BY_SDK
            if placeholder is False:  # the id belongs to another session's row
                params["id"] = None
    cur.execute(statement, params)
    row = cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]  # uuid column
