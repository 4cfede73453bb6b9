"""Claude Code transcripts → `token_usage`, read incrementally and exactly once.

Each file's byte offset lives in `transcript_files` and is updated in the same transaction
as the usage rows read before it, so a crash can only make us read a chunk again (which
the unique key absorbs), never skip one. Only complete lines are consumed. A file that was
truncated or replaced (other inode, or another first line) is read again from the start;
a deleted file keeps its rows.

One API response is written as one line per content block, each repeating the full usage;
resumed sessions and sidechains copy lines again. Rows are keyed by (message.id, requestId):
duplicates merge keeping the largest value of each field, a non-sidechain copy's
attribution wins (reference/claude-code.md §10). `<synthetic>` lines (API errors) have no cost
and are not stored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import structlog

from daemon import db
from daemon.schema import USAGE_COUNTERS
from daemon.sink import PostgresSink

log = structlog.get_logger("session_db.transcripts")

READ_CHUNK_BYTES = 8 * 2**20  # bytes read (and committed with their offset) per transaction
HEAD_BYTES = 64 * 1024  # the first line is fingerprinted to notice a replaced file
SYNTHETIC_MODEL = "<synthetic>"
TRIGGER_EVENTS = frozenset({"Stop", "SubagentStop", "PreCompact", "SessionEnd"})


@dataclass(slots=True)
class Usage:
    """One API response's usage, as found on a transcript line."""

    message_id: str
    request_id: str
    claude_session_id: str | None
    claude_agent_id: str | None
    prompt_id: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    web_search_requests: int
    web_fetch_requests: int
    speed: str | None
    service_tier: str | None
    inference_geo: str | None
    occurred_at: datetime | None
    is_sidechain: bool
    transcript_path: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.message_id, self.request_id)

    def merge(self, other: Usage) -> None:
        """Fold a duplicate of the same response into this one (largest value per field)."""
        for name in USAGE_COUNTERS:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        if self.is_sidechain and not other.is_sidechain:
            self.is_sidechain = False
            self.claude_session_id = other.claude_session_id
            self.claude_agent_id = other.claude_agent_id
            self.transcript_path = other.transcript_path
        for name in ("model", "prompt_id", "speed", "service_tier", "inference_geo"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        if other.occurred_at and (self.occurred_at is None or other.occurred_at < self.occurred_at):
            self.occurred_at = other.occurred_at


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def usage_from_line(entry: dict[str, Any], prompt_id: str | None, path: str) -> Usage | None:
    """The usage of an assistant line, or None (other line types, synthetic error lines)."""
    if entry.get("type") != "assistant":
        return None
    message = entry.get("message")
    if not isinstance(message, dict):
        return None
    usage = message.get("usage")
    model = _str(message.get("model"))
    if not isinstance(usage, dict) or model == SYNTHETIC_MODEL:
        return None
    message_id = _str(message.get("id"))
    request_id = _str(entry.get("requestId")) or ""
    if message_id is None:
        # A line without message.id counts alone: key it by the line's own uuid.
        message_id = "line:" + (
            _str(entry.get("uuid")) or hashlib.sha256(orjson.dumps(entry)).hexdigest()
        )
    cache_total = _int(usage.get("cache_creation_input_tokens"))
    split = usage.get("cache_creation")
    if isinstance(split, dict):
        w5, w1 = (
            _int(split.get("ephemeral_5m_input_tokens")),
            _int(split.get("ephemeral_1h_input_tokens")),
        )
        w5 += max(0, cache_total - w5 - w1)  # an unsplit remainder is priced as 5-minute writes
    else:
        w5, w1 = cache_total, 0  # logs before the TTL split: all 5-minute writes
    server_raw = usage.get("server_tool_use")
    server: dict[str, Any] = server_raw if isinstance(server_raw, dict) else {}
    return Usage(
        message_id=message_id,
        request_id=request_id,
        claude_session_id=_str(entry.get("sessionId")),
        claude_agent_id=_str(entry.get("agentId")),
        prompt_id=_str(entry.get("promptId")) or prompt_id,
        model=model,
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1,
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        web_search_requests=_int(server.get("web_search_requests")),
        web_fetch_requests=_int(server.get("web_fetch_requests")),
        speed=_str(usage.get("speed")),
        service_tier=_str(usage.get("service_tier")),
        inference_geo=_str(usage.get("inference_geo")),
        occurred_at=_time(entry.get("timestamp")),
        is_sidechain=bool(entry.get("isSidechain")),
        transcript_path=path,
    )


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


@dataclass
class ReadStats:
    """What reading transcripts did."""

    files: int = 0
    bytes: int = 0
    lines: int = 0
    bad_lines: int = 0
    responses: int = 0
    inserted: int = 0
    updated: int = 0
    resets: int = 0
    missing: int = 0
    discovered: set[str] = field(default_factory=set)

    def add(self, other: ReadStats) -> None:
        for name in (
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
        self.discovered |= other.discovered


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

    def __init__(self, sink: PostgresSink, host: str, chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self.sink = sink
        self.host = host
        self.chunk_bytes = chunk_bytes
        self._temp_ready: int | None = None

    # --- registry ----------------------------------------------------------------------

    def register(self, paths: Iterable[Path]) -> int:
        """Make files known (idempotent). Returns how many were new."""
        rows = []
        for p in paths:
            sid, aid = ids_from_path(p)
            rows.append((str(p), sid, aid))
        if not rows:
            return 0
        conn = self.sink.connection()
        with db.transaction(conn) as cur:
            cur.execute(
                db.REGISTER_TRANSCRIPTS,
                (self.host, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
            )
            return cur.rowcount

    def known(self, only: set[str] | None = None) -> list[FileState]:
        conn = self.sink.connection()
        with db.transaction(conn) as cur:
            cur.execute(db.SELECT_TRANSCRIPTS, (self.host,))
            rows = cur.fetchall()
        states = [
            FileState(
                path=str(r[0]),
                claude_session_id=r[1],  # type: ignore[arg-type]
                claude_agent_id=r[2],  # type: ignore[arg-type]
                byte_offset=int(r[3]),  # type: ignore[call-overload]
                file_dev=r[4],  # type: ignore[arg-type]
                file_ino=r[5],  # type: ignore[arg-type]
                head_sha256=r[6],  # type: ignore[arg-type]
                last_prompt_id=r[7],  # type: ignore[arg-type]
                missing=r[8] is not None,
            )
            for r in rows
        ]
        return [s for s in states if only is None or s.path in only]

    # --- reading -----------------------------------------------------------------------

    def sync(
        self, only: set[str] | None = None, progress: Callable[[ReadStats], None] | None = None
    ) -> ReadStats:
        """Read new complete lines of every known file (or of `only`); register subagent files found."""
        total = ReadStats()
        pending = self.known(only)
        seen: set[str] = set()
        while pending:
            state = pending.pop(0)
            if state.path in seen:
                continue
            seen.add(state.path)
            stats = self.read_file(state, progress=progress, running=total)
            total.add(stats)
            if stats.discovered:
                self.register(Path(p) for p in stats.discovered)
                pending.extend(self.known(stats.discovered - seen))
        return total

    def read_file(
        self,
        state: FileState,
        progress: Callable[[ReadStats], None] | None = None,
        running: ReadStats | None = None,
    ) -> ReadStats:
        stats = ReadStats()
        path = Path(state.path)
        if path.suffix == ".jsonl" and "subagents" not in path.parts:
            stats.discovered = {str(p) for p in subagent_files(path)}
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not state.missing:
                self._mark_missing(state.path)
                stats.missing += 1
            return stats
        except OSError as exc:
            log.warning("transcript_unreadable", path=state.path, error=str(exc))
            return stats
        try:
            st = os.fstat(fd)
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
            if replaced:
                log.info(
                    "transcript_reset",
                    path=state.path,
                    old_offset=state.byte_offset,
                    size=st.st_size,
                )
                state.byte_offset, state.last_prompt_id = 0, None
                stats.resets += 1
            if st.st_size == state.byte_offset and not replaced and state.file_ino is not None:
                return stats
            stats.files += 1
            offset = state.byte_offset
            prompt_id = state.last_prompt_id
            while True:
                data = os.pread(fd, self.chunk_bytes, offset)
                while data and b"\n" not in data and len(data) % self.chunk_bytes == 0:
                    more = os.pread(
                        fd, self.chunk_bytes, offset + len(data)
                    )  # one line longer than a chunk
                    if not more:
                        break
                    data += more
                end = data.rfind(b"\n")
                if end < 0:
                    break  # nothing, or only a partial last line: wait for the writer
                chunk = data[: end + 1]
                usages, prompt_id, lines, bad = self._parse(chunk, prompt_id, state.path)
                new_offset = offset + len(chunk)
                inserted, updated = self._commit(
                    state=state,
                    usages=usages,
                    new_offset=new_offset,
                    st=st,
                    head=head,
                    prompt_id=prompt_id,
                    lines=lines,
                )
                stats.bytes += len(chunk)
                stats.lines += lines
                stats.bad_lines += bad
                stats.responses += len(usages)
                stats.inserted += inserted
                stats.updated += updated
                offset = new_offset
                if progress is not None and running is not None:
                    snapshot = ReadStats()
                    snapshot.add(running)
                    snapshot.add(stats)
                    progress(snapshot)
            return stats
        finally:
            os.close(fd)

    def _parse(
        self, chunk: bytes, prompt_id: str | None, path: str
    ) -> tuple[list[Usage], str | None, int, int]:
        merged: dict[tuple[str, str], Usage] = {}
        lines = bad = 0
        for raw in chunk.split(b"\n"):
            if not raw.strip():
                continue
            lines += 1
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad += 1  # transcripts are internal to Claude Code: skip what we cannot read
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("type") == "user" and isinstance(entry.get("promptId"), str):
                prompt_id = entry["promptId"]
            usage = usage_from_line(entry, prompt_id, path)
            if usage is None:
                continue
            known = merged.get(usage.key)
            if known is None:
                merged[usage.key] = usage
            else:
                known.merge(usage)
        return list(merged.values()), prompt_id, lines, bad

    def _commit(
        self,
        *,
        state: FileState,
        usages: list[Usage],
        new_offset: int,
        st: os.stat_result,
        head: str | None,
        prompt_id: str | None,
        lines: int,
    ) -> tuple[int, int]:
        conn = self.sink.connection()
        inserted = updated = 0
        try:
            with db.transaction(conn) as cur:
                if self._temp_ready != id(conn):
                    cur.execute(db.CREATE_USAGE_TABLE)
                    self._temp_ready = id(conn)
                if usages:
                    keys = sorted(
                        {
                            (u.claude_session_id, u.claude_agent_id)
                            for u in usages
                            if u.claude_session_id
                        }
                    )
                    for group in ([k for k in keys if k[1] is None] + [(k[0], None) for k in keys if k[1]],
                                  [k for k in keys if k[1] is not None]):  # fmt: skip
                        if group:
                            cur.execute(
                                db.ENSURE_AGENTS,
                                (self.host, [k[0] for k in group], [k[1] for k in group]),
                            )
                    with cur.copy(db.COPY_USAGE) as copy:
                        for u in usages:
                            copy.write_row(
                                (u.message_id, u.request_id, u.claude_session_id, u.claude_agent_id, u.prompt_id,
                                 u.model, u.input_tokens, u.output_tokens, u.cache_write_5m_tokens,
                                 u.cache_write_1h_tokens, u.cache_read_tokens, u.web_search_requests,
                                 u.web_fetch_requests, u.speed, u.service_tier, u.inference_geo, u.occurred_at,
                                 u.is_sidechain, self.host, u.transcript_path)
                            )  # fmt: skip
                    cur.execute(db.UPSERT_USAGE)
                    for (was_inserted,) in cur.fetchall():
                        if was_inserted:
                            inserted += 1
                        else:
                            updated += 1
                    cur.execute(db.FILL_AGENT_MODELS)
                cur.execute(
                    db.UPDATE_TRANSCRIPT_OFFSET,
                    {
                        "host": self.host,
                        "path": state.path,
                        "offset": new_offset,
                        "dev": st.st_dev,
                        "ino": st.st_ino,
                        "head": head,
                        "prompt_id": prompt_id,
                        "lines": lines,
                    },
                )
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                self.sink.close()
            raise db.classify(exc) from exc
        state.byte_offset, state.file_dev, state.file_ino = new_offset, st.st_dev, st.st_ino
        state.head_sha256, state.last_prompt_id, state.missing = head, prompt_id, False
        return inserted, updated

    def _mark_missing(self, path: str) -> None:
        conn = self.sink.connection()
        with db.transaction(conn) as cur:
            cur.execute(db.MARK_TRANSCRIPT_MISSING, (self.host, path))
        log.info("transcript_missing", path=path)
