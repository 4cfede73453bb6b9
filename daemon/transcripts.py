"""Claude Code transcripts → `token_usage`, read incrementally and exactly once.

Each file's byte offset lives in `transcript_files` and is updated in the same transaction
as the usage rows read before it, so a crash can only make us read a chunk again (which
the unique key absorbs), never skip one. Only complete lines are consumed. A file that was
truncated or replaced (other inode, or another first line) is read again from the start;
a deleted file keeps its rows. Several files share a transaction (at most TXN_MAX_FILES
files and TXN_MAX_BYTES read), each with its new offset in it. A writer thread commits batch N
while this thread reads and parses batch N+1 (daemon/transcript_batches.py).

This module holds the reader: the file registry, the path policy (transcript_roots) and the
incremental reads. What a line means is daemon/transcript_lines.py (usage, merged per
response) and daemon/cost_states.py (Claude Code's own cost figures); the reader hands each
batch to the BatchWriter (daemon/transcript_batches.py), whose thread has the Sink
(daemon/sink_port.py) commit it in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.fs_names import is_utf8, printable
from daemon.messages import MessageArchive
from daemon.redaction import Redactor
from daemon.sink_port import FileState, Sink, TranscriptCommit
from daemon.transcript_batches import Batch, BatchWriter, FileRead
from daemon.transcript_lines import parse_lines

log = structlog.get_logger("session_db.transcripts")

READ_CHUNK_BYTES = 8 * 2**20  # bytes read from a file at once (a longer line is read whole)
TXN_MAX_FILES = 256  # files whose rows and offsets commit in one transaction
TXN_MAX_BYTES = 64 * 2**20  # bytes of transcript per transaction (what a lost commit re-reads)
HEAD_BYTES = 64 * 1024  # the first line is fingerprinted to notice a replaced file
TRIGGER_EVENTS = frozenset({"Stop", "SubagentStop", "PreCompact", "SessionEnd"})
# Transcript paths come from hook payloads, which anyone who can write the spool controls: only
# regular files below these roots are read (the Claude config dirs' projects/, plus these).
# Non-blocking: a FIFO planted under projects/ does not hang the open (fstat then refuses it).
TRANSCRIPT_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


def transcript_roots(
    env: Mapping[str, str] | None = None, extra: Iterable[Path] = ()
) -> list[Path]:
    """Where transcripts may be read: each `$CLAUDE_CONFIG_DIR` (comma list), else `~/.claude`
    and `~/.config/claude`, with `projects/` appended; then the `extra` roots (the
    `transcript_roots` setting). Resolved (a symlinked ~/.claude counts as its target); they
    need not exist yet."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    bases = [Path(p.strip()).expanduser() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",")]
    bases = [b for b in bases if str(b) not in ("", ".")] or [
        home / ".claude",
        home / ".config" / "claude",
    ]
    roots = [b / "projects" for b in bases] + [Path(p).expanduser() for p in extra]
    return [Path(os.path.realpath(r)) for r in roots]


def _below(real: str, roots: Iterable[Path]) -> bool:
    """Whether a resolved path lies below (not at) one of the resolved roots."""
    return any(real.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


@dataclass
class ReadStats:
    """What reading transcripts did."""

    files: int = 0
    bytes: int = 0
    lines: int = 0  # complete lines read, as `wc -l` counts them
    bad_lines: int = 0  # lines parsed (parse_lines) that were not JSON
    responses: int = 0
    inserted: int = 0
    updated: int = 0
    resets: int = 0
    missing: int = 0
    messages: int = 0  # conversation entries read (daemon/messages.py)
    archived: int = 0  # … of which new rows in `messages`

    def add(self, other: ReadStats) -> None:
        for name in (
            "messages",
            "archived",
            "files",
            "bytes",
            "lines",
            "bad_lines",
            "responses",
            "inserted",
            "updated",
            "resets",
            "missing",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def subagent_files(main_transcript: Path) -> list[Path]:
    """`<session>/subagents/**/*.jsonl` beside a main transcript `<session>.jsonl`."""
    folder = main_transcript.with_suffix("") / "subagents"
    if not folder.is_dir():
        return []
    return sorted(folder.rglob("*.jsonl"))


def ids_from_path(path: Path) -> tuple[str | None, str | None]:
    """(claude session id, subagent id) implied by Claude Code's file layout."""
    if path.parent.name == "subagents" or "subagents" in path.parts:
        parts = path.parts
        sid = parts[parts.index("subagents") - 1] if "subagents" in parts else None
        aid = path.stem.removeprefix("agent-") if path.stem.startswith("agent-") else None
        return sid, aid
    return path.stem, None


def _first_line_sha(fd: int) -> str | None:
    head = os.pread(fd, HEAD_BYTES, 0)
    end = head.find(b"\n")
    if end < 0:
        return None
    return hashlib.sha256(head[:end]).hexdigest()


class TranscriptReader:
    """Reads the transcripts this host knows about (registered in `transcript_files`)."""

    def __init__(
        self,
        sink: Sink,
        host: str,
        chunk_bytes: int = READ_CHUNK_BYTES,
        *,
        txn_max_files: int = TXN_MAX_FILES,
        txn_max_bytes: int = TXN_MAX_BYTES,
        archive: MessageArchive | None = None,
        allowed_roots: Iterable[Path] | None = None,
    ) -> None:
        self.sink = sink
        # The conversation archive; by default the `archive` setting's default (full, with
        # the default redaction, no field cap): callers with settings pass theirs.
        self.archive = archive if archive is not None else MessageArchive(redactor=Redactor())
        # None: transcript_roots() of this process's environment.
        self.allowed_roots = (
            transcript_roots()
            if allowed_roots is None
            else [Path(os.path.realpath(r)) for r in allowed_roots]
        )
        self._refused: set[str] = set()  # paths already warned about (one warning each)
        self.host = host
        self.chunk_bytes = chunk_bytes
        self.txn_max_files = txn_max_files
        self.txn_max_bytes = txn_max_bytes
        self._writer: BatchWriter | None = None  # during sync(): commits batches

    # --- registry ----------------------------------------------------------------------

    def register(self, paths: Iterable[Path]) -> int:
        """Make files known (idempotent). Returns how many were new."""
        rows: list[tuple[str, str | None, str | None]] = []
        for p in paths:
            if not is_utf8(p):  # a text column cannot hold it: never registered, never read
                self._refuse(printable(p), "undecodable_name")
                continue
            sid, aid = ids_from_path(p)
            rows.append((str(p), sid, aid))
        return self.sink.register_transcripts(rows)

    def known(self, only: Iterable[str] | None = None) -> list[FileState]:
        """The registered files (or those of `only`), in path order, in one query. A name that
        is not UTF-8 was never registered (see `register`), so it is not looked up."""
        if only is not None:
            only = [p for p in only if is_utf8(p)]
        return self.sink.transcript_files(only)

    # --- reading -----------------------------------------------------------------------

    def sync(
        self, only: set[str] | None = None, progress: Callable[[ReadStats], None] | None = None
    ) -> ReadStats:
        """Read new complete lines of every known file (or of `only`); register subagent files found.

        The registry is loaded once; subagent files found beside a main transcript are
        registered and loaded only when this pass did not load them already.
        """
        total = ReadStats()
        states = {s.path: s for s in self.known(only)}
        queue = deque(states.values())
        batch = Batch()
        with BatchWriter(self.sink) as writer:
            self._writer = writer
            try:
                while queue:
                    state = queue.popleft()
                    discovered = self._read(state, batch, total, progress)
                    new = sorted(p for p in discovered if p not in states)
                    if new:
                        writer.settle()  # the connection is the writer's until its batch commits
                        self.register(Path(p) for p in new)
                        for found in self.known(new):
                            states[found.path] = found
                            queue.append(found)
                self._commit(batch, total)
                writer.settle()
            finally:
                self._writer = None
        return total

    def _read(
        self,
        state: FileState,
        batch: Batch,
        total: ReadStats,
        progress: Callable[[ReadStats], None] | None,
    ) -> set[str]:
        """Add a file's new complete lines to `batch` (committing it when full); returns the
        subagent transcripts found beside it."""
        path = Path(state.path)
        discovered: set[str] = set()
        real = os.path.realpath(path)  # resolved once: checked, then opened
        if not _below(real, self.allowed_roots):
            self._refuse(state.path, "outside_transcript_roots")
            return discovered
        if path.suffix == ".jsonl" and "subagents" not in path.parts:
            discovered = {str(p) for p in subagent_files(path)}
        try:
            fd = os.open(real, TRANSCRIPT_OPEN_FLAGS)
        except FileNotFoundError:
            if not state.missing:
                self._mark_missing(state.path)
                state.missing = True
                total.missing += 1
            return discovered
        except OSError as exc:
            log.warning("transcript_unreadable", path=state.path, error=str(exc))
            return discovered
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._refuse(state.path, "not_a_regular_file")
                return discovered
            head = _first_line_sha(fd)
            replaced = (
                (
                    state.file_ino is not None
                    and (st.st_ino, st.st_dev) != (state.file_ino, state.file_dev)
                )
                or st.st_size < state.byte_offset
                or (
                    state.head_sha256 is not None and head is not None and head != state.head_sha256
                )
            )
            offset, prompt_id = state.byte_offset, state.last_prompt_id
            if replaced:
                log.info("transcript_reset", path=state.path, old_offset=offset, size=st.st_size)
                offset, prompt_id = 0, None
                total.resets += 1
            elif st.st_size == offset and state.file_ino is not None:
                return discovered
            if replaced or state.file_ino is None:
                # Store the file's identity even if no complete line follows yet.
                batch.files[state.path] = FileRead(
                    state, offset, st.st_dev, st.st_ino, head, prompt_id
                )
            consumed = False
            size = st.st_size  # read what the file held when opened; more is for the next pass
            while offset < size:
                data = os.pread(fd, min(self.chunk_bytes, size - offset), offset)
                end = data.rfind(b"\n") + 1
                while not end and data and offset + len(data) < size:  # a line longer than a chunk
                    more = os.pread(
                        fd, min(self.chunk_bytes, size - offset - len(data)), offset + len(data)
                    )
                    if not more:
                        break
                    newline = more.rfind(b"\n")
                    end = len(data) + newline + 1 if newline >= 0 else 0
                    data += more
                if not end:
                    break  # nothing, or only a partial last line: wait for the writer
                seen = len(batch.messages)
                usages, prompt_id, bad = parse_lines(
                    data, end, prompt_id, state.path, batch.states,
                    archive=self.archive, messages=batch.messages,
                )  # fmt: skip
                for m in batch.messages[seen:]:
                    if m.claude_session_id:
                        batch.agents.add((m.claude_session_id, m.claude_agent_id))
                total.messages += len(batch.messages) - seen
                lines = data.count(b"\n", 0, end)
                offset += end
                read = batch.files.get(state.path)
                if read is None:
                    read = batch.files[state.path] = FileRead(
                        state, offset, st.st_dev, st.st_ino, head, prompt_id
                    )
                read.offset, read.prompt_id, read.lines = offset, prompt_id, read.lines + lines
                batch.add(usages.values())
                batch.bytes += end
                consumed = True
                total.bytes += end
                total.lines += lines
                total.bad_lines += bad
                total.responses += len(usages)
                if len(batch.files) >= self.txn_max_files or batch.bytes >= self.txn_max_bytes:
                    self._commit(batch, total)
                if progress is not None:
                    snapshot = ReadStats()
                    snapshot.add(total)
                    progress(snapshot)
            if consumed or replaced:
                total.files += 1
            if len(batch.files) >= self.txn_max_files:
                self._commit(batch, total)
            return discovered
        finally:
            os.close(fd)

    def _refuse(self, path: str, reason: str) -> None:
        """One warning per path that is never read (outside the roots, not a regular file, or a
        name that is not UTF-8)."""
        if path not in self._refused:
            self._refused.add(path)
            log.warning(
                "transcript_refused",
                path=path,
                reason=reason,
                roots=[str(r) for r in self.allowed_roots],
            )

    def _commit(self, batch: Batch, total: ReadStats) -> None:
        """Hand the batch to the writer (one transaction: its rows, its agents, and every
        file's new offset); its counts join `total` once it has committed."""

        def count(done: TranscriptCommit) -> None:
            total.inserted += done.inserted
            total.updated += done.updated
            total.archived += done.archived

        assert self._writer is not None, "batches commit only within sync()"
        self._writer.submit(batch, count)

    def _mark_missing(self, path: str) -> None:
        if self._writer is not None:
            self._writer.settle()  # the connection is the writer's until its batch commits
        self.sink.mark_transcript_missing(path)
        log.info("transcript_missing", path=path)
