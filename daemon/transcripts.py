"""Claude Code transcripts → `token_usage`, read incrementally and exactly once.

Each file's byte offset lives in `transcript_files` and is updated in the same transaction
as the usage rows read before it, so a crash can only make us read a chunk again (which
the unique key absorbs), never skip one. Only complete lines are consumed. A file that was
truncated or replaced (other inode, or another first line) is read again from the start;
a deleted file keeps its rows. Several files share a transaction (at most TXN_MAX_FILES
files and TXN_MAX_BYTES read), each with its new offset in it.

One API response is written as one line per content block, each repeating the full usage;
resumed sessions and sidechains copy lines again. Rows are keyed by (message.id, requestId):
duplicates merge keeping the largest value of each field, a non-sidechain copy's
attribution wins (reference/claude-code.md §10). `<synthetic>` lines (API errors) have no cost
and are not stored.

Only lines that contain the bytes `"usage"` (a response) or `"promptId"` (a user line, which
starts a turn) are parsed; most bytes are attachments and request shapes that carry neither.
This skips nothing we use: Claude Code writes JSON.stringify output, which escapes no letter
of a key, and a quote inside a JSON string is escaped, so a line without those bytes has
neither key. A line we never parse is never counted as unreadable.

The same pass keeps Claude Code's own figures: `cost-state` lines (running session totals,
per model `costUSD`) and `compact_boundary` system lines (a compaction call, whose usage only
cost-state counts). The latest state of a session is the one with the largest
(totalDuration, totalCostUSD): both only grow within a session, across resumes too, so the
choice does not depend on the order files or chunks are read in, and a re-read changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog

from daemon import db
from daemon.messages import UUID_KEY, MessageArchive, MessageRow
from daemon.redaction import Redactor
from daemon.schema import USAGE_COUNTERS
from daemon.sink import PostgresSink

log = structlog.get_logger("session_db.transcripts")

READ_CHUNK_BYTES = 8 * 2**20  # bytes read from a file at once (a longer line is read whole)
TXN_MAX_FILES = 256  # files whose rows and offsets commit in one transaction
TXN_MAX_BYTES = 64 * 2**20  # bytes of transcript per transaction (what a lost commit re-reads)
HEAD_BYTES = 64 * 1024  # the first line is fingerprinted to notice a replaced file
USAGE_KEY = b'"usage"'  # lines without one of these two keys are not parsed (module docstring)
PROMPT_KEY = b'"promptId"'
COST_STATE_KEY = b'"cost-state"'
COMPACT_KEY = b'"compact_boundary"'
CANDIDATE_KEYS = (USAGE_KEY, PROMPT_KEY, COST_STATE_KEY, COMPACT_KEY)
SYNTHETIC_MODEL = "<synthetic>"
TRIGGER_EVENTS = frozenset({"Stop", "SubagentStop", "PreCompact", "SessionEnd"})
# Transcript paths come from hook payloads, which anyone who can write the spool controls: only
# regular files below these roots are read (the Claude config dirs' projects/, plus these).
TRANSCRIPT_ROOTS_ENV = "SESSION_DB_TRANSCRIPT_ROOTS"  # os.pathsep-separated extra roots
# Non-blocking: a FIFO planted under projects/ does not hang the open (fstat then refuses it).
TRANSCRIPT_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


def transcript_roots(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where transcripts may be read: each `$CLAUDE_CONFIG_DIR` (comma list), else `~/.claude`
    and `~/.config/claude`, with `projects/` appended; then `$SESSION_DB_TRANSCRIPT_ROOTS`.
    Resolved (a symlinked ~/.claude counts as its target); they need not exist yet."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    bases = [Path(p.strip()).expanduser() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",")]
    bases = [b for b in bases if str(b) not in ("", ".")] or [
        home / ".claude",
        home / ".config" / "claude",
    ]
    roots = [b / "projects" for b in bases]
    roots += [
        Path(p).expanduser() for p in env.get(TRANSCRIPT_ROOTS_ENV, "").split(os.pathsep) if p
    ]
    return [Path(os.path.realpath(r)) for r in roots]


def within(path: Path, roots: Iterable[Path]) -> bool:
    """Whether `path`, with every symlink resolved, lies below one of the (resolved) roots."""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(r) and real != r for r in roots)


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
    cwd: str | None = None  # where the response was made (reports: project, branch)
    git_branch: str | None = None

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
        for name in ("model", "prompt_id", "speed", "service_tier", "inference_geo", "cwd", "git_branch"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        if other.occurred_at and (self.occurred_at is None or other.occurred_at < self.occurred_at):
            self.occurred_at = other.occurred_at


@dataclass(slots=True)
class ModelCost:
    """One model's entry in a cost-state line's modelUsage."""

    input_tokens: int
    output_tokens: int
    thinking_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    web_search_requests: int
    cost_usd: Decimal | None


@dataclass(slots=True)
class CostState:
    """Claude Code's running totals for a session (a `cost-state` line), or only the news that
    the session was compacted (`compact_boundary`: total_cost_usd None)."""

    claude_session_id: str
    transcript_path: str
    total_cost_usd: Decimal | None = None
    total_api_duration_ms: Decimal | None = None
    total_api_duration_without_retries_ms: Decimal | None = None
    total_tool_duration_ms: Decimal | None = None
    total_duration_ms: Decimal | None = None
    lines_added: int | None = None
    lines_removed: int | None = None
    started_at: datetime | None = None
    has_unknown_model_cost: bool | None = None
    models: dict[str, ModelCost] = field(default_factory=dict)
    compacted: bool = False

    @property
    def rank(self) -> tuple[Decimal, Decimal]:
        """What "latest" means (module docstring): larger is later."""
        return (self.total_duration_ms or Decimal(-1), self.total_cost_usd or Decimal(-1))

    def merge(self, other: CostState) -> None:
        """Keep the later state of the two; a compaction seen in either stays seen."""
        compacted = self.compacted or other.compacted
        if other.total_cost_usd is not None and other.rank >= self.rank:
            for f in fields(CostState):
                setattr(self, f.name, getattr(other, f.name))
        self.compacted = compacted


def _decimal(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal (a float by its shortest repr: 0.0893169 stays that)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def cost_state_from_line(entry: dict[str, Any], path: str) -> CostState | None:
    """A `cost-state` line's totals, a `compact_boundary` line as a compaction, else None."""
    sid = _str(entry.get("sessionId"))
    if sid is None:
        return None
    kind = entry.get("type")
    if kind == "system" and entry.get("subtype") == "compact_boundary":
        return CostState(sid, path, compacted=True)
    if kind != "cost-state":
        return None
    models: dict[str, ModelCost] = {}
    raw = entry.get("modelUsage")
    for model, u in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(u, dict) or not isinstance(model, str):
            continue
        models[model] = ModelCost(
            input_tokens=_int(u.get("inputTokens")),
            output_tokens=_int(u.get("outputTokens")),
            thinking_tokens=_int(u.get("thinkingTokens")),
            cache_read_tokens=_int(u.get("cacheReadInputTokens")),
            cache_write_tokens=_int(u.get("cacheCreationInputTokens")),
            cache_write_5m_tokens=_int(u.get("cacheCreationEphemeral5mInputTokens")),
            cache_write_1h_tokens=_int(u.get("cacheCreationEphemeral1hInputTokens")),
            web_search_requests=_int(u.get("webSearchRequests")),
            cost_usd=_decimal(u.get("costUSD")),
        )
    start = _decimal(entry.get("startTime"))
    lines_added, lines_removed = entry.get("totalLinesAdded"), entry.get("totalLinesRemoved")
    return CostState(
        claude_session_id=sid,
        transcript_path=path,
        total_cost_usd=_decimal(entry.get("totalCostUSD")) or Decimal(0),
        total_api_duration_ms=_decimal(entry.get("totalAPIDuration")),
        total_api_duration_without_retries_ms=_decimal(entry.get("totalAPIDurationWithoutRetries")),
        total_tool_duration_ms=_decimal(entry.get("totalToolDuration")),
        total_duration_ms=_decimal(entry.get("totalDuration")),
        lines_added=lines_added if isinstance(lines_added, int) else None,
        lines_removed=lines_removed if isinstance(lines_removed, int) else None,
        started_at=datetime.fromtimestamp(float(start) / 1000, UTC) if start is not None else None,
        has_unknown_model_cost=bool(entry.get("hasUnknownModelCost")),
        models=models,
    )


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
        cwd=_str(entry.get("cwd")),
        git_branch=_str(entry.get("gitBranch")),
    )


def parse_lines(
    data: bytes,
    end: int,
    prompt_id: str | None,
    path: str,
    states: dict[str, CostState] | None = None,
    *,
    archive: MessageArchive | None = None,
    messages: list[MessageRow] | None = None,
) -> tuple[dict[tuple[str, str], Usage], str | None, int]:
    """The usages on the complete lines of `data[:end]` merged by key, the prompt id after
    them, and how many of the lines parsed were unreadable. When `states` is given, the latest
    cost state per session found (and compactions) are merged into it. With an enabled
    `archive`, the conversation entries' rows are appended to `messages` in the same pass.

    `data[end - 1]` must be a newline. Only lines holding one of the candidate keys are parsed:
    USAGE_KEY and PROMPT_KEY, CANDIDATE_KEYS' cost-state keys when collecting states, UUID_KEY
    when archiving.
    """
    merged: dict[tuple[str, str], Usage] = {}
    bad = pos = 0
    if archive is None or not archive.enabled:
        messages = None
    wanted = list(CANDIDATE_KEYS if states is not None else (USAGE_KEY, PROMPT_KEY))
    if messages is not None and UUID_KEY not in wanted:
        wanted.append(UUID_KEY)
    keys = tuple(wanted)
    at = [data.find(k, 0, end) for k in keys]
    while True:
        hit = min((a for a in at if a >= 0), default=-1)
        if hit < 0:
            break
        start = max(pos, data.rfind(b"\n", pos, hit) + 1)
        pos = data.find(b"\n", hit, end) + 1
        for i, a in enumerate(at):
            if 0 <= a < pos:
                at[i] = data.find(keys[i], pos, end)
        try:
            entry = orjson.loads(data[start : pos - 1])
        except orjson.JSONDecodeError:
            bad += 1  # transcripts are internal to Claude Code: skip what we cannot read
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "user" and isinstance(entry.get("promptId"), str):
            prompt_id = entry["promptId"]
        if messages is not None and archive is not None:
            row = archive.row(entry, prompt_id, path, pos - 1 - start)
            if row is not None:
                messages.append(row)
        usage = usage_from_line(entry, prompt_id, path)
        if usage is None:
            if states is not None:
                state = cost_state_from_line(entry, path)
                if state is not None:
                    known_state = states.get(state.claude_session_id)
                    if known_state is None:
                        states[state.claude_session_id] = state
                    else:
                        known_state.merge(state)
            continue
        known = merged.get(usage.key)
        if known is None:
            merged[usage.key] = usage
        else:
            known.merge(usage)
    return merged, prompt_id, bad


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


@dataclass(slots=True)
class _FileRead:
    """A file's state once the transaction it was read in commits."""

    state: FileState
    offset: int
    dev: int
    ino: int
    head: str | None
    prompt_id: str | None
    lines: int = 0


@dataclass
class _Batch:
    """Rows and file offsets that commit in one transaction."""

    usages: dict[tuple[str, str], Usage] = field(default_factory=dict)
    agents: set[tuple[str, str | None]] = field(default_factory=set)
    # Per agent, the model of its latest response (what FILL_AGENT_MODELS may set).
    models: dict[tuple[str, str | None], tuple[datetime | None, str]] = field(default_factory=dict)
    files: dict[str, _FileRead] = field(default_factory=dict)
    messages: list[MessageRow] = field(default_factory=list)
    states: dict[str, CostState] = field(default_factory=dict)
    bytes: int = 0

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
        sink: PostgresSink,
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
        self._temp_table_on: object = None  # the connection whose ingest_usage exists

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

    def known(self, only: Iterable[str] | None = None) -> list[FileState]:
        """The registered files (or those of `only`), in path order, in one query."""
        conn = self.sink.connection()
        with db.transaction(conn) as cur:
            if only is None:
                cur.execute(db.SELECT_TRANSCRIPTS, (self.host,))
            else:
                cur.execute(db.SELECT_TRANSCRIPTS_BY_PATH, (self.host, list(only)))
            rows = cur.fetchall()
        return [
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
        batch = _Batch()
        while queue:
            state = queue.popleft()
            discovered = self._read(state, batch, total, progress)
            new = sorted(p for p in discovered if p not in states)
            if new:
                self.register(Path(p) for p in new)
                for found in self.known(new):
                    states[found.path] = found
                    queue.append(found)
        self._commit(batch, total)
        return total

    def _read(
        self,
        state: FileState,
        batch: _Batch,
        total: ReadStats,
        progress: Callable[[ReadStats], None] | None,
    ) -> set[str]:
        """Add a file's new complete lines to `batch` (committing it when full); returns the
        subagent transcripts found beside it."""
        path = Path(state.path)
        discovered: set[str] = set()
        if not within(path, self.allowed_roots):
            self._refuse(state.path, "outside_transcript_roots")
            return discovered
        if path.suffix == ".jsonl" and "subagents" not in path.parts:
            discovered = {str(p) for p in subagent_files(path)}
        try:
            fd = os.open(os.path.realpath(path), TRANSCRIPT_OPEN_FLAGS)
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
                batch.files[state.path] = _FileRead(
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
                    read = batch.files[state.path] = _FileRead(
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
        """One warning per path that is never read (outside the roots, or not a regular file)."""
        if path not in self._refused:
            self._refused.add(path)
            log.warning(
                "transcript_refused",
                path=path,
                reason=reason,
                roots=[str(r) for r in self.allowed_roots],
            )

    def _commit(self, batch: _Batch, total: ReadStats) -> None:
        """One transaction: the batch's rows, its agents, and every file's new offset; then
        the in-memory states follow and the batch is emptied.

        `synchronous_commit` stays on (db.connect): with many files per transaction the WAL
        flushes are about 2 % of a backfill, not worth a second durability rule.
        """
        if not batch.files:
            return
        inserted = updated = archived = 0
        with self.sink.classified():
            conn = self.sink.connection()
            with db.transaction(conn) as cur:
                if self._temp_table_on is not conn:
                    cur.execute(db.CREATE_USAGE_TABLE)
                if batch.usages or batch.messages:
                    mains = sorted({sid for sid, _ in batch.agents})
                    subs = sorted((s, a) for s, a in batch.agents if a is not None)
                    for group in ([(s, None) for s in mains], subs):
                        if group:
                            cur.execute(
                                db.ENSURE_AGENTS,
                                (self.host, [k[0] for k in group], [k[1] for k in group]),
                            )
                if batch.usages:
                    with cur.copy(db.COPY_USAGE) as copy:
                        for u in batch.usages.values():
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
                    if batch.models:
                        agents = sorted(batch.models, key=lambda k: (k[0], k[1] or ""))
                        cur.execute(
                            db.FILL_AGENT_MODELS,
                            (
                                [k[0] for k in agents],
                                [k[1] for k in agents],
                                [batch.models[k][1] for k in agents],
                            ),
                        )
                if batch.messages:
                    archived = self.sink.write_messages(cur, batch.messages)
                if batch.states:
                    self._write_cost_states(cur, batch.states)
                reads = sorted(batch.files.values(), key=lambda r: r.state.path)
                cur.execute(
                    db.UPDATE_TRANSCRIPT_OFFSETS,
                    {
                        "host": self.host,
                        "path": [r.state.path for r in reads],
                        "offset": [r.offset for r in reads],
                        "dev": [r.dev for r in reads],
                        "ino": [r.ino for r in reads],
                        "head": [r.head for r in reads],
                        "prompt_id": [r.prompt_id for r in reads],
                        "lines": [r.lines for r in reads],
                    },
                )
        self._temp_table_on = conn  # only now: a rolled-back CREATE leaves no table behind
        for r in reads:
            s = r.state
            s.byte_offset, s.file_dev, s.file_ino = r.offset, r.dev, r.ino
            s.head_sha256, s.last_prompt_id, s.missing = r.head, r.prompt_id, False
        total.inserted += inserted
        total.updated += updated
        total.archived += archived
        batch.messages.clear()
        batch.usages.clear()
        batch.agents.clear()
        batch.models.clear()
        batch.files.clear()
        batch.states.clear()
        batch.bytes = 0

    def _write_cost_states(self, cur: Any, states: dict[str, CostState]) -> None:
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

    def _mark_missing(self, path: str) -> None:
        conn = self.sink.connection()
        with db.transaction(conn) as cur:
            cur.execute(db.MARK_TRANSCRIPT_MISSING, (self.host, path))
        log.info("transcript_missing", path=path)
