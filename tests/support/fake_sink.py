"""An in-memory Sink (daemon/sink_port.py) with PostgresSink's observable semantics.

What the consumers rely on, kept here and checked against PostgreSQL by tests/conformance:
- events are unique by (event_uid, occurred_at): a repeat counts as a duplicate;
- a batch is one transaction: a refused row (`refuse_tool_name`, like a CHECK constraint)
  fails the whole batch with PermanentRowError and stores nothing of it;
- token usage is unique by (message_id, request_id) (a repeat is merged: "updated"),
  messages by uuid, a workflow's content by its sha256 per slug; a session status outside
  schema.SESSION_STATUSES is refused (PermanentRowError), as the column's CHECK does;
- transcript registrations are unique by path, offsets move only with their commit.
Faults the tests can ask for: `fail_next` raises the given errors on the next calls (of one
method, if named; before anything is stored), and `hang_next` makes the next write_events block until `abort()`,
which then fails it with TransientDbError (a peer that stopped answering).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from daemon.agent_observations import observe_agents
from daemon.cost_states import CostState
from daemon.errors import PermanentRowError, TransientDbError
from daemon.event_rows import event_uid, ns_to_datetime
from daemon.events import Event
from daemon.schema import SESSION_STATUSES
from daemon.sink_port import (
    AgentKey,
    AppliedState,
    FileState,
    TranscriptCommit,
    TranscriptWrite,
    WorkflowState,
    WriteResult,
)
from daemon.transcript_lines import Usage

CHECK_VIOLATION = "23514"  # the SQLSTATE PostgreSQL gives a CHECK constraint's refusal


@dataclass
class _Workflow:
    session_id: uuid.UUID
    status: str | None
    sha256: str


@dataclass
class FakeSink:
    """The Sink port in memory (module docstring). Not thread-safe beyond what the Ingestor
    does: one writer thread, and abort() from the caller's thread."""

    host: str = "fake-host"
    events: dict[tuple[str, datetime], Event] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)  # sizes of the write_events calls
    usages: dict[tuple[str, str], Usage] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)
    agents: set[AgentKey] = field(default_factory=set)
    cost_states: dict[str, CostState] = field(default_factory=dict)
    transcripts: dict[str, FileState] = field(default_factory=dict)
    workflows: dict[str, _Workflow] = field(default_factory=dict)
    phase_uids: set[str] = field(default_factory=set)
    refused_tool_names: set[str] = field(default_factory=set)
    _faults: list[tuple[str | None, Exception]] = field(default_factory=list)
    _hangs: int = 0
    _aborted: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)  # set while a write hangs

    # --- fault control ---------------------------------------------------------------------

    def refuse_tool_name(self, name: str) -> None:
        """Refuse rows with this tool_name (as a CHECK constraint would)."""
        self.refused_tool_names.add(name)

    def fail_next(self, *errors: Exception, method: str | None = None) -> None:
        """The next len(errors) calls (of `method` only, if given) raise these, one each,
        storing nothing."""
        self._faults.extend((method, e) for e in errors)

    def hang_next(self) -> None:
        """The next write_events blocks until abort(), then fails with TransientDbError."""
        self._hangs += 1

    def _fault(self, method: str) -> None:
        if self._faults and self._faults[0][0] in (None, method):
            raise self._faults.pop(0)[1]

    # --- events ------------------------------------------------------------------------------

    def write_events(
        self, events: Sequence[Event], before_commit: Callable[[], None] | None = None
    ) -> WriteResult:
        self.batches.append(len(events))
        self._fault("write_events")
        if self._hangs:
            self._hangs -= 1
            self._aborted.clear()
            self.hanging.set()
            self._aborted.wait()
            self.hanging.clear()
            raise TransientDbError("connection cut by abort() (fake)")
        for e in events:
            if e.tool_name in self.refused_tool_names:
                raise PermanentRowError(
                    f"new row violates check constraint (tool_name {e.tool_name!r})",
                    CHECK_VIOLATION,
                )
        obs = observe_agents(events)
        fresh: dict[tuple[str, datetime], Event] = {}
        for e in events:
            key = (event_uid(e.spool_name, e.host), ns_to_datetime(e.received_ns))
            if key not in self.events:
                fresh.setdefault(key, e)
        if before_commit is not None:
            before_commit()
        self.events.update(fresh)
        self.agents.update((o.sid, o.aid) for o in obs)
        return WriteResult(len(fresh), len(events) - len(fresh), len(obs), 0)

    def abort(self) -> None:
        self._aborted.set()

    # --- workflows -----------------------------------------------------------------------

    def apply_workflow_state(self, state: WorkflowState) -> AppliedState | None:
        self._fault("apply_workflow_state")
        if state.status is not None and state.status not in SESSION_STATUSES:
            raise PermanentRowError(
                f"status {state.status!r} violates sessions_status_check", CHECK_VIOLATION
            )
        known = self.workflows.get(state.slug)
        if known is not None and known.sha256 == state.sha256:
            return None
        old_status = known.status if known else None
        session_id = known.session_id if known else uuid.uuid4()
        new_status = state.status or old_status or "created"
        changed = known is None or new_status != old_status
        self.workflows[state.slug] = _Workflow(session_id, new_status, state.sha256)
        if changed:
            self.phase_uids.add(
                f"phase:{self.host}:{state.slug}:{old_status}:{new_status}:{state.sha256}"
            )
        return AppliedState(session_id, old_status, new_status, changed)

    # --- transcripts ---------------------------------------------------------------------

    def register_transcripts(self, files: Sequence[tuple[str, str | None, str | None]]) -> int:
        self._fault("register_transcripts")
        new = 0
        for path, sid, aid in files:
            if path not in self.transcripts:
                self.transcripts[path] = FileState(path, sid, aid)
                new += 1
        return new

    def transcript_files(self, only: Iterable[str] | None = None) -> list[FileState]:
        self._fault("transcript_files")
        wanted = set(self.transcripts) if only is None else set(only) & set(self.transcripts)
        return [replace(self.transcripts[p]) for p in sorted(wanted)]

    def mark_transcript_missing(self, path: str) -> None:
        self._fault("mark_transcript_missing")
        if path in self.transcripts:
            self.transcripts[path].missing = True

    def commit_transcripts(self, write: TranscriptWrite) -> TranscriptCommit:
        self._fault("commit_transcripts")
        inserted = updated = archived = 0
        for u in write.usages:
            known = self.usages.get(u.key)
            if known is None:
                self.usages[u.key] = replace(u)
                inserted += 1
            else:
                known.merge(u)
                updated += 1
        for m in write.messages:
            if m.uuid not in self.messages:
                self.messages[m.uuid] = m
                archived += 1
        self.agents.update(write.agents)
        for sid, st in write.cost_states.items():
            stored = self.cost_states.get(sid)
            if stored is None:
                self.cost_states[sid] = replace(st, models=dict(st.models))
            else:
                stored.merge(st)
        for o in write.offsets:
            f = self.transcripts.setdefault(o.path, FileState(o.path))
            f.byte_offset, f.file_dev, f.file_ino = o.offset, o.dev, o.ino
            f.head_sha256, f.last_prompt_id, f.missing = o.head_sha256, o.prompt_id, False
        return TranscriptCommit(inserted, updated, archived)
