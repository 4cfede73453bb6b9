"""PostgresSink: the Sink port (daemon/sink_port.py) on PostgreSQL, with db.py's statements.

One transaction per batch of events (idempotent by event_uid), per state.json content and per
batch of transcript rows; one connection, reopened after a failure."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from daemon import db
from daemon.agent_observations import agent_params, observe_agents
from daemon.cost_states import CostState
from daemon.event_rows import AgentIds, AgentKey, copy_chunks, event_row, ns_to_datetime
from daemon.events import Event
from daemon.messages import MessageRow
from daemon.sink_port import (
    AppliedState,
    FileState,
    StateAgent,
    TranscriptCommit,
    TranscriptWrite,
    WorkflowState,
    WriteResult,
)

SESSIONS_SUBDIR = Path("agents") / "sessions"


class _RowsAlreadyStored(Exception):
    """The direct COPY met a unique violation: the batch is written again with ON CONFLICT."""


def sessions_root_of(project_dir: str) -> str:
    return str(Path(project_dir) / SESSIONS_SUBDIR)


class PostgresSink:
    """Writes batches of events; owns one connection and reopens it after a failure."""

    def __init__(
        self,
        url: str,
        *,
        host: str,
        connect_timeout_s: int,
        statement_timeout_ms: int,
        lock_timeout_ms: int,
    ) -> None:
        self._url = url
        self.host = host
        self._timeouts = (connect_timeout_s, statement_timeout_ms, lock_timeout_ms)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.known_roots: set[str] = set()
        self.known_transcripts: set[str] = set()
        self._temp_table_on: object = None  # the connection whose ingest_usage exists

    def connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            c, s, lk = self._timeouts
            self._conn = db.connect(
                self._url, connect_timeout_s=c, statement_timeout_ms=s, lock_timeout_ms=lk
            )
            with db.transaction(self._conn) as cur:
                cur.execute(db.CREATE_INGEST_TABLE)
                cur.execute(db.CREATE_MESSAGES_TABLE)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @contextmanager
    def classified(self) -> Iterator[None]:
        """Driver errors in the block become db.classify()'s classes (TransientDbError…);
        a connection that broke is dropped, so the next call opens a new one."""
        try:
            yield
        except Exception as exc:
            if not db.is_driver_error(exc):  # psycopg's, or SQLAlchemy's wrapping one (Alembic)
                raise
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self.close()
            raise db.classify(exc) from exc

    def _write_messages(
        self, cur: psycopg.Cursor[tuple[Any, ...]], rows: Iterable[MessageRow]
    ) -> int:
        """Insert archive rows inside the caller's transaction (the one that also commits the
        usage rows and the transcript offsets); returns how many were new."""
        with cur.copy(db.COPY_MESSAGES) as copy:
            for seq, row in enumerate(rows):
                copy.write_row((*row.copy_row(self.host), seq))
        cur.execute(db.INSERT_MESSAGES)
        return cur.rowcount

    def ping(self) -> None:
        """One round trip to the server; raises classified errors like write_events."""
        with self.classified(), db.transaction(self.connection()) as cur:
            cur.execute(db.PING)

    def abort(self) -> None:
        """From another thread: cut the connection under a call that hangs (a peer that stopped
        answering without closing). The call then fails as a lost connection, a transient error;
        the outcome of a COMMIT in flight is unknown, which the idempotent keys absorb."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(OSError, psycopg.Error):
            cut = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                cut.shutdown(socket.SHUT_RDWR)  # shared by both descriptors: wakes the reader
            finally:
                cut.close()

    def write_events(
        self, events: Sequence[Event], before_commit: Callable[[], None] | None = None
    ) -> WriteResult:
        """Insert events (and their agents) in one transaction; raises db.classify()'d errors."""
        with self.classified():
            return self._write(events, before_commit)

    def _write(
        self, events: Sequence[Event], before_commit: Callable[[], None] | None
    ) -> WriteResult:
        """COPY straight into agent_logs; a batch that meets a unique violation (some of its
        rows are already stored: a redelivery after a crash, a second daemon) is rolled back
        whole and written again through the temporary table and ON CONFLICT DO NOTHING."""
        try:
            return self._write_batch(events, before_commit, direct=True)
        except _RowsAlreadyStored:
            return self._write_batch(events, before_commit, direct=False)

    def _write_batch(
        self, events: Sequence[Event], before_commit: Callable[[], None] | None, *, direct: bool
    ) -> WriteResult:
        conn = self.connection()
        obs = observe_agents(events)
        transcripts: dict[str, tuple[str, str | None]] = {}
        for e in events:
            if e.transcript_path and e.claude_session_id:
                transcripts.setdefault(e.transcript_path, (e.claude_session_id, None))
            if e.agent_transcript_path and e.claude_session_id:
                transcripts.setdefault(
                    e.agent_transcript_path, (e.claude_session_id, e.claude_agent_id)
                )
        new_transcripts = sorted(set(transcripts) - self.known_transcripts)
        # Each distinct project folder once (every event of a session names the same one).
        project_dirs = {e.project_dir for e in events if e.project_dir}
        new_roots = sorted({sessions_root_of(d) for d in project_dirs} - self.known_roots)
        with db.transaction(conn) as cur:
            slugs = sorted({(o.host, o.slug) for o in obs if o.slug})
            if slugs:
                cur.execute(
                    db.ENSURE_WORKFLOW_SESSIONS, ([h for h, _ in slugs], [s for _, s in slugs])
                )
            linked: list[Any] = []
            agents: dict[AgentKey, AgentIds] = {}
            for group in ([o for o in obs if o.aid is None], [o for o in obs if o.aid is not None]):
                if group:
                    cur.execute(db.UPSERT_AGENTS_FROM_EVENTS, agent_params(group))
                    for agent_id, session_id, sid, aid in cur.fetchall():
                        agents[(sid, aid)] = (agent_id, session_id)  # type: ignore[index,assignment]  # text/uuid columns
                        if session_id is not None:
                            linked.append(agent_id)
            if linked:
                cur.execute(db.LINK_CHILD_AGENTS, (linked,))
                children: dict[Any, Any] = {row[0]: row[1] for row in cur.fetchall()}
                linked.extend(children)
                for key, (agent_id, session_id) in agents.items():
                    if session_id is None and agent_id in children:
                        agents[key] = (agent_id, children[agent_id])
            if direct:
                try:
                    with cur.copy(db.COPY_EVENTS_DIRECT) as copy:
                        for chunk in copy_chunks(events, agents):
                            copy.write(chunk)
                except psycopg.errors.UniqueViolation as exc:
                    raise _RowsAlreadyStored from exc
                inserted = len(events)
            else:
                with cur.copy(db.COPY_INGEST) as copy:
                    for e in events:
                        copy.write_row(event_row(e))
                cur.execute(db.INSERT_EVENTS)
                inserted = cur.rowcount
            ended = [o.sid for o in obs if o.aid is None and o.own_events and o.last_is_end]
            if ended:
                cur.execute(db.MARK_FAILED_SESSIONS, (ended,))
            backfilled = 0
            if linked:
                cur.execute(db.BACKFILL_SESSION_LINKS, (linked,))
                backfilled = cur.rowcount
            if new_roots:
                cur.execute(db.UPSERT_WATCH_ROOTS, (self.host, "event", new_roots))
            if new_transcripts:
                cur.execute(
                    db.REGISTER_TRANSCRIPTS,
                    (
                        self.host,
                        new_transcripts,
                        [transcripts[p][0] for p in new_transcripts],
                        [transcripts[p][1] for p in new_transcripts],
                    ),
                )
            if before_commit is not None:
                before_commit()
        self.known_roots.update(new_roots)
        self.known_transcripts.update(new_transcripts)
        return WriteResult(inserted, len(events) - inserted, len(obs), backfilled)

    # --- workflow state.json (daemon/workflows.py) -----------------------------------------

    def apply_workflow_state(self, state: WorkflowState) -> AppliedState | None:
        """One transaction: the sessions row, its agents, their links, and a phase row when the
        status changed; None when this content is already the stored one."""
        with self.classified(), db.transaction(self.connection()) as cur:
            cur.execute(db.SELECT_SESSION_STATE, (self.host, state.slug))
            row = cur.fetchone()
            old_status = str(row[1]) if row else None
            if row and row[2] == state.sha256:
                return None  # another daemon (or an earlier run) applied this content
            cur.execute(
                db.UPSERT_SESSION_STATE,
                {
                    "host": self.host,
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
            session_id: uuid.UUID = fetched[0]  # type: ignore[assignment]  # uuid column
            agent_ids = [self._upsert_state_agent(cur, agent, session_id) for agent in state.agents]
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
                        "uid": f"phase:{self.host}:{state.slug}:{old_status}:{new_status}:"
                        f"{state.sha256}",
                        "host": self.host,
                        "session_id": session_id,
                        "event_type": new_status,
                        "occurred_at": ns_to_datetime(state.mtime_ns),
                        "payload": Jsonb(payload),
                        "payload_bytes": len(orjson.dumps(payload)),
                        "slug": state.slug,
                    },
                )
        return AppliedState(session_id, old_status, new_status, changed)

    def _upsert_state_agent(
        self, cur: psycopg.Cursor[tuple[Any, ...]], agent: StateAgent, session_id: uuid.UUID
    ) -> uuid.UUID:
        """The agents row of one state.json entry (db.SELECT_STATE_AGENT_TARGET has the rule).

        An entry may name its Claude session only in a later version of the file, or name
        another one; neither may hit the primary key of the row its id already has."""
        params = {**asdict(agent), "session_id": session_id, "host": self.host}
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

    # --- transcripts (daemon/transcripts.py) ------------------------------------------------

    def register_transcripts(self, files: Sequence[tuple[str, str | None, str | None]]) -> int:
        if not files:
            return 0
        with self.classified(), db.transaction(self.connection()) as cur:
            cur.execute(
                db.REGISTER_TRANSCRIPTS,
                (self.host, [f[0] for f in files], [f[1] for f in files], [f[2] for f in files]),
            )
            return cur.rowcount

    def transcript_files(self, only: Iterable[str] | None = None) -> list[FileState]:
        with self.classified(), db.transaction(self.connection()) as cur:
            if only is None:
                cur.execute(db.SELECT_TRANSCRIPTS, (self.host,))
            else:
                cur.execute(db.SELECT_TRANSCRIPTS_BY_PATH, (self.host, list(only)))
            rows = cur.fetchall()
        return [
            FileState(
                path=str(r[0]),
                claude_session_id=r[1],  # type: ignore[arg-type]  # text column
                claude_agent_id=r[2],  # type: ignore[arg-type]  # text column
                byte_offset=int(r[3]),  # type: ignore[call-overload]  # bigint column
                file_dev=r[4],  # type: ignore[arg-type]  # bigint column
                file_ino=r[5],  # type: ignore[arg-type]  # bigint column
                head_sha256=r[6],  # type: ignore[arg-type]  # text column
                last_prompt_id=r[7],  # type: ignore[arg-type]  # text column
                missing=r[8] is not None,
            )
            for r in rows
        ]

    def mark_transcript_missing(self, path: str) -> None:
        with self.classified(), db.transaction(self.connection()) as cur:
            cur.execute(db.MARK_TRANSCRIPT_MISSING, (self.host, path))

    def commit_transcripts(self, write: TranscriptWrite) -> TranscriptCommit:
        """One transaction: usage rows, their agents, messages, cost states and every file's
        new offset. `synchronous_commit` stays on (db.connect): with many files per
        transaction the WAL flushes are about 2 % of a backfill."""
        inserted = updated = archived = 0
        with self.classified():
            conn = self.connection()
            with db.transaction(conn) as cur:
                if self._temp_table_on is not conn:
                    cur.execute(db.CREATE_USAGE_TABLE)
                agents = set(write.agents)
                if write.usages or write.messages:
                    mains = sorted({sid for sid, _ in agents})
                    subs = sorted((s, a) for s, a in agents if a is not None)
                    for group in ([(s, None) for s in mains], subs):
                        if group:
                            cur.execute(
                                db.ENSURE_AGENTS,
                                (self.host, [k[0] for k in group], [k[1] for k in group]),
                            )
                if write.usages:
                    with cur.copy(db.COPY_USAGE) as copy:
                        for u in write.usages:
                            copy.write_row(
                                (u.message_id, u.request_id, u.claude_session_id, u.claude_agent_id, u.prompt_id,
                                 u.model, u.input_tokens, u.output_tokens, u.cache_write_5m_tokens,
                                 u.cache_write_1h_tokens, u.cache_read_tokens, u.web_search_requests,
                                 u.web_fetch_requests, u.speed, u.service_tier, u.inference_geo, u.occurred_at,
                                 u.is_sidechain, self.host, u.transcript_path, u.cwd, u.git_branch)
                            )  # fmt: skip
                    cur.execute(db.UPSERT_USAGE)
                    for (was_inserted,) in cur.fetchall():
                        if was_inserted:
                            inserted += 1
                        else:
                            updated += 1
                    if write.models:
                        keys = sorted(write.models, key=lambda k: (k[0], k[1] or ""))
                        cur.execute(
                            db.FILL_AGENT_MODELS,
                            (
                                [k[0] for k in keys],
                                [k[1] for k in keys],
                                [write.models[k] for k in keys],
                            ),
                        )
                if write.messages:
                    archived = self._write_messages(cur, write.messages)
                if write.cost_states:
                    self._write_cost_states(cur, write.cost_states)
                offsets = sorted(write.offsets, key=lambda o: o.path)
                cur.execute(
                    db.UPDATE_TRANSCRIPT_OFFSETS,
                    {
                        "host": self.host,
                        "path": [o.path for o in offsets],
                        "offset": [o.offset for o in offsets],
                        "dev": [o.dev for o in offsets],
                        "ino": [o.ino for o in offsets],
                        "head": [o.head_sha256 for o in offsets],
                        "prompt_id": [o.prompt_id for o in offsets],
                        "lines": [o.lines for o in offsets],
                    },
                )
        self._temp_table_on = conn  # only now: a rolled-back CREATE leaves no table behind
        return TranscriptCommit(inserted, updated, archived)

    def _write_cost_states(
        self, cur: psycopg.Cursor[tuple[Any, ...]], states: Mapping[str, CostState]
    ) -> None:
        """Compactions, then each session's state where it is later than the stored one."""
        compacted = sorted(sid for sid, st in states.items() if st.compacted)
        if compacted:
            cur.execute(db.MARK_COST_STATES_COMPACTED, (self.host, compacted))
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
                    "host": self.host,
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
