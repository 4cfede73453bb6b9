"""Transcript batches: the rows and file offsets that commit in one transaction, and the
writer thread that commits them (daemon/transcripts.py reads, this module commits).

The reader fills a Batch; BatchWriter.submit hands it to a single writer thread once the batch
before it has committed, so the database works on batch N while the reader parses batch N+1,
and batches still commit one at a time and in reading order. A batch's error is raised in the
reading thread, by the next submit or settle; no later batch is then committed, so every file
keeps the offset of its last committed batch and is read again from there. The writer owns the
sink's connection while a batch is in flight: call settle() before any other use of the sink.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import structlog

from daemon.cost_states import CostState
from daemon.messages import MessageRow
from daemon.sink_port import FileOffset, FileState, Sink, TranscriptCommit, TranscriptWrite
from daemon.transcript_lines import Usage

log = structlog.get_logger("session_db.transcripts")

WRITER_THREAD_PREFIX = "transcript-writer"  # the thread that commits batches (one at a time)


@dataclass(slots=True)
class FileRead:
    """A file's state once the transaction it was read in commits."""

    state: FileState
    offset: int
    dev: int
    ino: int
    head: str | None
    prompt_id: str | None
    lines: int = 0


@dataclass
class Batch:
    """Rows and file offsets that commit in one transaction."""

    usages: dict[tuple[str, str], Usage] = field(default_factory=dict)
    agents: set[tuple[str, str | None]] = field(default_factory=set)
    # Per agent, the model of its latest response (what FILL_AGENT_MODELS may set).
    models: dict[tuple[str, str | None], tuple[datetime | None, str]] = field(default_factory=dict)
    files: dict[str, FileRead] = field(default_factory=dict)
    messages: list[MessageRow] = field(default_factory=list)
    states: dict[str, CostState] = field(default_factory=dict)
    bytes: int = 0

    def take(self) -> tuple[TranscriptWrite, list[FileRead], int]:
        """The write that commits this batch, its files and bytes; the batch starts empty
        again with new containers (the write, in flight in the writer thread, keeps the old)."""
        reads = sorted(self.files.values(), key=lambda r: r.state.path)
        write = TranscriptWrite(
            usages=list(self.usages.values()),
            agents=sorted(self.agents, key=lambda k: (k[0], k[1] or "")),
            models={k: model for k, (_, model) in self.models.items()},
            messages=self.messages,
            cost_states=self.states,
            offsets=[
                FileOffset(r.state.path, r.offset, r.dev, r.ino, r.head, r.prompt_id, r.lines)
                for r in reads
            ],
        )
        size = self.bytes
        self.usages, self.agents, self.models = {}, set(), {}
        self.files, self.messages, self.states, self.bytes = {}, [], {}, 0
        return write, reads, size

    def add(self, usages: Iterable[Usage]) -> None:
        """Add one chunk's usages; a response already in the batch is merged (one row each)."""
        for u in usages:
            if u.claude_session_id:
                agent = (u.claude_session_id, u.claude_agent_id)
                self.agents.add(agent)
                if u.model is not None:
                    best = self.models.get(agent)
                    if best is None or (
                        u.occurred_at is not None and (best[0] is None or u.occurred_at > best[0])
                    ):
                        self.models[agent] = (u.occurred_at, u.model)
            known = self.usages.get(u.key)
            if known is None:
                self.usages[u.key] = u
            else:
                known.merge(u)


@dataclass(slots=True)
class _InFlight:
    """A batch the writer thread is committing, and what follows once it has."""

    future: Future[TranscriptCommit]
    reads: list[FileRead]
    on_commit: Callable[[TranscriptCommit], None]
    bytes: int
    responses: int
    messages: int
    started: float


class BatchWriter:
    """Commits Batches in a writer thread, one at a time and in order (module docstring)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WRITER_THREAD_PREFIX)
        self._in_flight: _InFlight | None = None

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._in_flight is not None:
            # Leaving on an error of the reading thread: the batch in flight finishes first (its
            # outcome is dropped; the next pass reads its files again from the offsets the
            # database holds, and the keys absorb what it had committed).
            wait([self._in_flight.future])
            self._in_flight = None
        self._pool.shutdown(wait=True)

    def submit(self, batch: Batch, on_commit: Callable[[TranscriptCommit], None]) -> None:
        """Hand the batch to the writer thread once the batch before it has committed; the
        batch is emptied. `on_commit` runs in the reading thread, at the settle after COMMIT."""
        if not batch.files:
            return
        write, reads, size = batch.take()
        self.settle()  # batches commit in reading order, one at a time
        self._in_flight = _InFlight(
            self._pool.submit(self.sink.commit_transcripts, write),
            reads, on_commit, size, len(write.usages), len(write.messages), time.monotonic(),
        )  # fmt: skip

    def settle(self) -> None:
        """Wait for the batch in flight to commit (its error is raised here, in the reading
        thread); then its files' in-memory states follow, `on_commit` runs, one line is logged."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        done = flight.future.result()
        for r in flight.reads:
            s = r.state
            s.byte_offset, s.file_dev, s.file_ino = r.offset, r.dev, r.ino
            s.head_sha256, s.last_prompt_id, s.missing = r.head, r.prompt_id, False
        flight.on_commit(done)
        log.debug(
            "transcript_batch_committed",
            files=len(flight.reads),
            bytes=flight.bytes,
            responses=flight.responses,
            messages=flight.messages,
            inserted=done.inserted,
            updated=done.updated,
            archived=done.archived,
            ms=round((time.monotonic() - flight.started) * 1000, 1),
        )
