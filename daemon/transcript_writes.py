"""What one batch of transcript rows writes, inside the transaction PostgresSink opened.

Usage rows (upserted: a later copy of a response carries the final counts), the agents they
name, archive rows (daemon/messages.py), Claude Code's cost states (daemon/cost_states.py) and
every file's new offset go in together, so a crash leaves either all of them or none."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from daemon import db
from daemon.cost_states import CostState
from daemon.messages import MessageRow
from daemon.sink_port import FileState, TranscriptCommit, TranscriptWrite

Cursor = psycopg.Cursor[tuple[Any, ...]]


def register(cur: Cursor, host: str, files: Sequence[tuple[str, str | None, str | None]]) -> int:
    """Known transcript files (path, Claude session, agent); returns how many were new."""
    cur.execute(
        db.REGISTER_TRANSCRIPTS,
        (host, [f[0] for f in files], [f[1] for f in files], [f[2] for f in files]),
    )
    return cur.rowcount


def file_states(rows: Iterable[tuple[Any, ...]]) -> list[FileState]:
    """FileState of each row of db.SELECT_TRANSCRIPTS(_BY_PATH)."""
    return [
        FileState(
            path=str(r[0]),
            claude_session_id=r[1],
            claude_agent_id=r[2],
            byte_offset=int(r[3]),
            file_dev=r[4],
            file_ino=r[5],
            head_sha256=r[6],
            last_prompt_id=r[7],
            missing=r[8] is not None,
        )
        for r in rows
    ]


def write(cur: Cursor, host: str, batch: TranscriptWrite) -> TranscriptCommit:
    """Every row of one batch and every file's new offset (the usage temporary table exists)."""
    inserted = updated = archived = 0
    if batch.usages or batch.messages:
        _ensure_agents(cur, host, set(batch.agents))
    if batch.usages:
        inserted, updated = _upsert_usages(cur, host, batch)
    if batch.messages:
        archived = write_messages(cur, host, batch.messages)
    if batch.cost_states:
        write_cost_states(cur, host, batch.cost_states)
    offsets = sorted(batch.offsets, key=lambda o: o.path)
    cur.execute(
        db.UPDATE_TRANSCRIPT_OFFSETS,
        {
            "host": host,
            "path": [o.path for o in offsets],
            "offset": [o.offset for o in offsets],
            "dev": [o.dev for o in offsets],
            "ino": [o.ino for o in offsets],
            "head": [o.head_sha256 for o in offsets],
            "prompt_id": [o.prompt_id for o in offsets],
            "lines": [o.lines for o in offsets],
        },
    )
    return TranscriptCommit(inserted, updated, archived)


def _ensure_agents(cur: Cursor, host: str, agents: set[tuple[str, str | None]]) -> None:
    """An agents row for each main session, then for each subagent (which needs its parent)."""
    mains = sorted({sid for sid, _ in agents})
    subs = sorted((s, a) for s, a in agents if a is not None)
    for group in ([(s, None) for s in mains], subs):
        if group:
            cur.execute(db.ENSURE_AGENTS, (host, [k[0] for k in group], [k[1] for k in group]))


def _upsert_usages(cur: Cursor, host: str, batch: TranscriptWrite) -> tuple[int, int]:
    """COPY the usage rows to the temporary table, upsert them; (inserted, updated)."""
    inserted = updated = 0
    with cur.copy(db.COPY_USAGE) as copy:
        for u in batch.usages:
            copy.write_row(
                (u.message_id, u.request_id, u.claude_session_id, u.claude_agent_id, u.prompt_id,
                 u.model, u.input_tokens, u.output_tokens, u.cache_write_5m_tokens,
                 u.cache_write_1h_tokens, u.cache_read_tokens, u.web_search_requests,
                 u.web_fetch_requests, u.speed, u.service_tier, u.inference_geo, u.occurred_at,
                 u.is_sidechain, host, u.transcript_path, u.cwd, u.git_branch)
            )  # fmt: skip
    cur.execute(db.UPSERT_USAGE)
    for (was_inserted,) in cur.fetchall():
        if was_inserted:
            inserted += 1
        else:
            updated += 1
    if batch.models:
        keys = sorted(batch.models, key=lambda k: (k[0], k[1] or ""))
        cur.execute(
            db.FILL_AGENT_MODELS,
            ([k[0] for k in keys], [k[1] for k in keys], [batch.models[k] for k in keys]),
        )
    return inserted, updated


def write_messages(cur: Cursor, host: str, rows: Iterable[MessageRow]) -> int:
    """Archive rows; returns how many were new (a re-read transcript adds none)."""
    with cur.copy(db.COPY_MESSAGES) as copy:
        for seq, row in enumerate(rows):
            copy.write_row((*row.copy_row(host), seq))
    cur.execute(db.INSERT_MESSAGES)
    return cur.rowcount


def write_cost_states(cur: Cursor, host: str, states: Mapping[str, CostState]) -> None:
    """Compactions, then each session's state where it is later than the stored one."""
    compacted = sorted(sid for sid, st in states.items() if st.compacted)
    if compacted:
        cur.execute(db.MARK_COST_STATES_COMPACTED, (host, compacted))
    rows = []
    for sid in sorted(states):
        st = states[sid]
        if st.total_cost_usd is None:
            continue
        models = sorted(st.models)
        m = [st.models[k] for k in models]
        rows.append(
            {
                "sid": sid,
                "host": host,
                "path": st.transcript_path,
                "total_cost_usd": st.total_cost_usd,
                "api_ms": st.total_api_duration_ms,
                "api_nr_ms": st.total_api_duration_without_retries_ms,
                "tool_ms": st.total_tool_duration_ms,
                "duration_ms": st.total_duration_ms,
                "lines_added": st.lines_added,
                "lines_removed": st.lines_removed,
                "started_at": st.started_at,
                "unknown": st.has_unknown_model_cost,
                "model": models,
                "input": [x.input_tokens for x in m],
                "output": [x.output_tokens for x in m],
                "thinking": [x.thinking_tokens for x in m],
                "cache_read": [x.cache_read_tokens for x in m],
                "cache_write": [x.cache_write_tokens for x in m],
                "cw5m": [x.cache_write_5m_tokens for x in m],
                "cw1h": [x.cache_write_1h_tokens for x in m],
                "web_search": [x.web_search_requests for x in m],
                "cost": [x.cost_usd for x in m],
            }
        )
    if rows:
        cur.executemany(db.UPSERT_COST_STATE, rows)
