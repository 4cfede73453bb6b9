"""PostgreSQL sink: one transaction per batch of events, idempotent by event_uid."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from daemon import db
from daemon.config import LOCK_TIMEOUT_MS, Settings
from daemon.events import END_EVENTS, SUBAGENT_END_EVENTS, Event
from daemon.messages import MessageRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SESSIONS_SUBDIR = Path("agents") / "sessions"


def ns_to_datetime(ns: int) -> datetime:
    """Exact to the microsecond (PostgreSQL's resolution)."""
    return EPOCH + timedelta(microseconds=ns // 1000)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed batch did."""

    inserted: int
    duplicates: int
    agents: int
    backfilled: int


@dataclass(slots=True)
class _AgentObs:
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


def observe_agents(events: Iterable[Event]) -> list[_AgentObs]:
    """One observation per (claude session, subagent) in the batch, mains included.

    Deduplicated here because ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    """
    obs: dict[tuple[str, str | None], _AgentObs] = {}
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
                o = obs[key] = _AgentObs(
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


def _agent_params(items: Sequence[_AgentObs]) -> dict[str, list[Any]]:
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


def event_uid(name: str, host: str) -> str:
    """The row's idempotency key: the spool file name, qualified by the event's host.

    The hook's names end in `.<host>` and are kept as they are; any other name (a foreign
    writer's) gets `@<host>` appended, so the same file name on two hosts is two events.
    """
    return name if name.endswith(f".{host}") else f"{name}@{host}"


def event_row(e: Event) -> tuple[Any, ...]:
    return (
        event_uid(e.uid, e.host), e.host, e.claude_session_id, e.claude_agent_id, e.event_type, e.tool_name,
        e.tool_use_id, e.prompt_id, ns_to_datetime(e.received_ns), e.cwd, e.project_dir,
        e.workflow_slug, e.agent_type, e.payload, e.payload_bytes, e.payload_sha256, e.transforms,
    )  # fmt: skip


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

    @classmethod
    def for_settings(cls, settings: Settings, url: str) -> PostgresSink:
        return cls(
            url,
            host=settings.host,
            connect_timeout_s=settings.connect_timeout_s,
            statement_timeout_ms=settings.statement_timeout_ms,
            lock_timeout_ms=LOCK_TIMEOUT_MS,
        )

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

    def write_messages(
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
        new_roots = sorted(
            {sessions_root_of(e.project_dir) for e in events if e.project_dir} - self.known_roots
        )
        with db.transaction(conn) as cur:
            slugs = sorted({(o.host, o.slug) for o in obs if o.slug})
            if slugs:
                cur.execute(
                    db.ENSURE_WORKFLOW_SESSIONS, ([h for h, _ in slugs], [s for _, s in slugs])
                )
            linked: list[Any] = []
            for group in ([o for o in obs if o.aid is None], [o for o in obs if o.aid is not None]):
                if group:
                    cur.execute(db.UPSERT_AGENTS_FROM_EVENTS, _agent_params(group))
                    linked.extend(row[0] for row in cur.fetchall() if row[1] is not None)
            if linked:
                cur.execute(db.LINK_CHILD_AGENTS, (linked,))
                linked.extend(row[0] for row in cur.fetchall())
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
