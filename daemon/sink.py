"""PostgresSink: the Sink port (daemon/sink_port.py) on PostgreSQL, with db.py's statements.

One transaction per batch of events (idempotent by event_uid), per state.json content and per
batch of transcript rows; one connection, reopened after a failure."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from daemon import db, transcript_writes, workflow_writes
from daemon.agent_observations import agent_params, observe_agents
from daemon.event_rows import AgentIds, AgentKey, copy_chunks, event_row
from daemon.events import Event
from daemon.sink_port import (
    AppliedState,
    FileState,
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

    # --- workflow state.json (daemon/workflows.py, daemon/workflow_writes.py) --------------

    def apply_workflow_state(self, state: WorkflowState) -> AppliedState | None:
        """One transaction: the sessions row, its agents, their links, and a phase row when the
        status changed; None when this content is already the stored one."""
        with self.classified(), db.transaction(self.connection()) as cur:
            return workflow_writes.apply(cur, self.host, state)

    # --- transcripts (daemon/transcripts.py, daemon/transcript_writes.py) ------------------

    def register_transcripts(self, files: Sequence[tuple[str, str | None, str | None]]) -> int:
        if not files:
            return 0
        with self.classified(), db.transaction(self.connection()) as cur:
            return transcript_writes.register(cur, self.host, files)

    def transcript_files(self, only: Iterable[str] | None = None) -> list[FileState]:
        with self.classified(), db.transaction(self.connection()) as cur:
            if only is None:
                cur.execute(db.SELECT_TRANSCRIPTS, (self.host,))
            else:
                cur.execute(db.SELECT_TRANSCRIPTS_BY_PATH, (self.host, list(only)))
            return transcript_writes.file_states(cur.fetchall())

    def mark_transcript_missing(self, path: str) -> None:
        with self.classified(), db.transaction(self.connection()) as cur:
            cur.execute(db.MARK_TRANSCRIPT_MISSING, (self.host, path))

    def commit_transcripts(self, write: TranscriptWrite) -> TranscriptCommit:
        """One transaction: usage rows, their agents, messages, cost states and every file's
        new offset. `synchronous_commit` stays on (db.connect): with many files per
        transaction the WAL flushes are about 2 % of a backfill."""
        with self.classified():
            conn = self.connection()
            with db.transaction(conn) as cur:
                if self._temp_table_on is not conn:
                    cur.execute(db.CREATE_USAGE_TABLE)
                committed = transcript_writes.write(cur, self.host, write)
        self._temp_table_on = conn  # only now: a rolled-back CREATE leaves no table behind
        return committed
