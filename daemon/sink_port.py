"""The Sink port: what the Ingestor, the SessionTracker and the TranscriptReader ask of storage.

The three consumers depend on this protocol, never on a connection: PostgresSink
(daemon/sink.py) implements it with the statements of daemon/db.py, and the tests' in-memory
fake (tests/support/fake_sink.py) with the same observable semantics. tests/conformance runs one
contract suite against both.

Every method raises only daemon.errors' classes for storage failures: TransientDbError (try
again later), PermanentRowError (this data is refused) or UnknownDbError.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from daemon.cost_states import CostState
from daemon.events import Event
from daemon.messages import MessageRow
from daemon.transcript_lines import Usage

AgentKey = tuple[str, str | None]  # (claude session id, subagent id or None for the main agent)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed batch of events did."""

    inserted: int
    duplicates: int
    agents: int
    backfilled: int


@dataclass
class FileState:
    """A row of `transcript_files`."""

    path: str
    claude_session_id: str | None = None
    claude_agent_id: str | None = None
    byte_offset: int = 0
    file_dev: int | None = None
    file_ino: int | None = None
    head_sha256: str | None = None
    last_prompt_id: str | None = None
    missing: bool = False


@dataclass(frozen=True, slots=True)
class FileOffset:
    """A transcript's new position, committed with the rows read before it."""

    path: str
    offset: int
    dev: int
    ino: int
    head_sha256: str | None
    prompt_id: str | None
    lines: int


@dataclass(slots=True)
class TranscriptWrite:
    """What one transcript transaction commits: rows, agents, cost states and offsets."""

    usages: Sequence[Usage] = ()
    agents: Iterable[AgentKey] = ()  # agents the rows belong to (created when unknown)
    # Per agent, the model of its latest response (set where the agent has none yet).
    models: Mapping[AgentKey, str] = field(default_factory=dict)
    messages: Sequence[MessageRow] = ()
    cost_states: Mapping[str, CostState] = field(default_factory=dict)
    offsets: Sequence[FileOffset] = ()


@dataclass(frozen=True, slots=True)
class TranscriptCommit:
    """What a committed TranscriptWrite did."""

    inserted: int  # new token_usage rows
    updated: int  # responses already stored, merged
    archived: int  # new messages rows


@dataclass(frozen=True, slots=True)
class StateAgent:
    """One entry of a state.json's `agents` list, as its `agents` row."""

    id: uuid.UUID | None  # None only with an sdk_session_id (the row is found by that)
    agent_type: str | None
    sdk_session_id: str | None
    model: str | None
    model_alias: str | None
    status: str | None
    checkpoint_id: str | None
    cost_usd: Decimal | None
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """One state.json content, as its `sessions` row and agents."""

    slug: str
    sha256: str  # of the file's bytes: one content is applied once
    state_path: str
    mtime_ns: int  # when the status change it may carry happened
    title: str | None
    status: str | None
    session_type: str | None
    working_dir: str | None
    total_cost: Decimal | None
    state_json: str  # the redacted file
    created_at: datetime | None
    completed_at: datetime | None
    agents: Sequence[StateAgent] = ()


@dataclass(frozen=True, slots=True)
class AppliedState:
    """A WorkflowState that changed the stored row."""

    session_id: uuid.UUID
    old_status: str | None
    new_status: str
    changed: bool  # the status changed (a phase row was written)


class Sink(Protocol):
    """Storage as the daemon's three writers see it (module docstring)."""

    def write_events(
        self, events: Sequence[Event], before_commit: Callable[[], None] | None = None
    ) -> WriteResult:
        """Insert events and their agents in one transaction, idempotent by (event_uid,
        occurred_at). A row the store refuses fails the whole batch with PermanentRowError."""
        ...

    def abort(self) -> None:
        """From another thread: make a write that hangs fail with TransientDbError."""
        ...

    def apply_workflow_state(self, state: WorkflowState) -> AppliedState | None:
        """Store a state.json content in one transaction; None when this content (sha256) is
        the one already stored for its slug."""
        ...

    def register_transcripts(self, files: Sequence[tuple[str, str | None, str | None]]) -> int:
        """Make (path, claude session id, subagent id) known; returns how many were new."""
        ...

    def transcript_files(self, only: Iterable[str] | None = None) -> list[FileState]:
        """The registered transcripts (or those of `only`), in path order."""
        ...

    def mark_transcript_missing(self, path: str) -> None:
        """Record that a registered transcript no longer exists (its rows stay)."""
        ...

    def commit_transcripts(self, write: TranscriptWrite) -> TranscriptCommit:
        """Commit rows and offsets in one transaction, idempotent by (message_id, request_id),
        messages' uuid and cost states' rank."""
        ...
