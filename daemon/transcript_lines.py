"""Transcript lines → one `Usage` per API response, merged by (message.id, requestId).

One API response is written as one line per content block, each repeating the full usage;
resumed sessions and sidechains copy lines again. Duplicates merge keeping the largest value of
each field, a non-sidechain copy's attribution wins (docs: docs/design/claude-code.md §10).
`<synthetic>` lines (API errors) have no cost and are not stored.

Only lines that contain the bytes `"usage"` (a response) or `"promptId"` (a user line, which
starts a turn) are parsed; most bytes are attachments and request shapes that carry neither.
This skips nothing we use: Claude Code writes JSON.stringify output, which escapes no letter
of a key, and a quote inside a JSON string is escaped, so a line without those bytes has
neither key. A line that starts with `{"type":"<name>"` (its first key, as Claude Code writes
its bookkeeping lines) is skipped unread when <name>, written without escapes, is none of
PARSED_TYPES: such a line yields nothing here (the request shapes, a third of the bytes). A
line we never parse is never counted as unreadable. The same pass collects cost-state lines
(daemon/cost_states.py) and, with an archive, conversation rows: then every line that passes
the type test is parsed (nearly all of them are conversation entries, and looking for keys in
the long attachment lines would cost more than the few lines it spares).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from daemon.cost_states import CostState, cost_state_from_line
from daemon.line_fields import entry_time, nonempty_str, positive_int
from daemon.messages import REDACTION_GROUP_ROWS, ROLES, Entry, MessageArchive, MessageRow
from daemon.schema import USAGE_COUNTERS

USAGE_KEY = b'"usage"'  # lines without one of these two keys are not parsed (module docstring)
PROMPT_KEY = b'"promptId"'
COST_STATE_KEY = b'"cost-state"'
COMPACT_KEY = b'"compact_boundary"'
CANDIDATE_KEYS = (USAGE_KEY, PROMPT_KEY, COST_STATE_KEY, COMPACT_KEY)
SYNTHETIC_MODEL = "<synthetic>"
TYPE_PREFIX = b'{"type":"'  # how Claude Code starts a line whose first key is its type
TYPE_NAME_MAX_BYTES = 64  # a longer type name is not looked at (the line is then parsed)
# The line types that can yield something: an archive row (daemon/messages.py ROLES: user and
# assistant lines also carry prompt ids and usage), a cost state or a compaction (a system line).
COST_STATE_TYPES = frozenset({"system", "cost-state"})  # what cost_state_from_line can read
PARSED_TYPES = frozenset(t.encode() for t in (*ROLES, *COST_STATE_TYPES))


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
        for name in (
            "model",
            "prompt_id",
            "speed",
            "service_tier",
            "inference_geo",
            "cwd",
            "git_branch",
        ):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        if other.occurred_at and (self.occurred_at is None or other.occurred_at < self.occurred_at):
            self.occurred_at = other.occurred_at




def usage_from_line(entry: dict[str, Any], prompt_id: str | None, path: str) -> Usage | None:
    """The usage of an assistant line, or None (other line types, synthetic error lines)."""
    if entry.get("type") != "assistant":
        return None
    message = entry.get("message")
    if not isinstance(message, dict):
        return None
    usage = message.get("usage")
    model = nonempty_str(message.get("model"))
    if not isinstance(usage, dict) or model == SYNTHETIC_MODEL:
        return None
    message_id = nonempty_str(message.get("id"))
    request_id = nonempty_str(entry.get("requestId")) or ""
    if message_id is None:
        # A line without message.id counts alone: key it by the line's own uuid.
        message_id = "line:" + (
            nonempty_str(entry.get("uuid")) or hashlib.sha256(orjson.dumps(entry)).hexdigest()
        )
    cache_total = positive_int(usage.get("cache_creation_input_tokens"))
    split = usage.get("cache_creation")
    if isinstance(split, dict):
        w5, w1 = (
            positive_int(split.get("ephemeral_5m_input_tokens")),
            positive_int(split.get("ephemeral_1h_input_tokens")),
        )
        w5 += max(0, cache_total - w5 - w1)  # an unsplit remainder is priced as 5-minute writes
    else:
        w5, w1 = cache_total, 0  # logs before the TTL split: all 5-minute writes
    server_raw = usage.get("server_tool_use")
    server: dict[str, Any] = server_raw if isinstance(server_raw, dict) else {}
    return Usage(
        message_id=message_id,
        request_id=request_id,
        claude_session_id=nonempty_str(entry.get("sessionId")),
        claude_agent_id=nonempty_str(entry.get("agentId")),
        prompt_id=nonempty_str(entry.get("promptId")) or prompt_id,
        model=model,
        input_tokens=positive_int(usage.get("input_tokens")),
        output_tokens=positive_int(usage.get("output_tokens")),
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1,
        cache_read_tokens=positive_int(usage.get("cache_read_input_tokens")),
        web_search_requests=positive_int(server.get("web_search_requests")),
        web_fetch_requests=positive_int(server.get("web_fetch_requests")),
        speed=nonempty_str(usage.get("speed")),
        service_tier=nonempty_str(usage.get("service_tier")),
        inference_geo=nonempty_str(usage.get("inference_geo")),
        occurred_at=entry_time(entry.get("timestamp")),
        is_sidechain=bool(entry.get("isSidechain")),
        transcript_path=path,
        cwd=nonempty_str(entry.get("cwd")),
        git_branch=nonempty_str(entry.get("gitBranch")),
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

    `data[end - 1]` must be a newline. Lines whose first key names a type outside PARSED_TYPES
    are skipped; without an archive, so are lines holding none of the candidate keys: USAGE_KEY
    and PROMPT_KEY, and CANDIDATE_KEYS' cost-state keys when collecting states.
    """
    merged: dict[tuple[str, str], Usage] = {}
    bad = pos = 0
    if archive is None or not archive.enabled:
        messages = None
    keys = CANDIDATE_KEYS if states is not None else (USAGE_KEY, PROMPT_KEY)
    entries: list[Entry] = []  # conversation entries whose rows are made a group at a time
    view = memoryview(data)  # lines are parsed from it without a copy
    name_at = len(TYPE_PREFIX)
    while pos < end:
        start = pos
        stop = data.find(b"\n", start, end)
        pos = stop + 1
        if data.startswith(TYPE_PREFIX, start, stop):
            close = data.find(
                b'"', start + name_at, min(stop, start + name_at + TYPE_NAME_MAX_BYTES)
            )
            if close > 0:
                name = data[start + name_at : close]
                if name not in PARSED_TYPES and b"\\" not in name:
                    continue
        if messages is None:  # with an archive, nearly every such line is a conversation entry
            for k in keys:
                if data.find(k, start, stop) >= 0:
                    break
            else:
                continue
        try:
            entry = orjson.loads(view[start:stop])
        except orjson.JSONDecodeError:
            bad += 1  # transcripts are internal to Claude Code: skip what we cannot read
            continue
        if not isinstance(entry, dict):
            continue
        kind = entry.get("type")
        if kind == "user" and isinstance(entry.get("promptId"), str):
            prompt_id = entry["promptId"]
        if messages is not None and archive is not None and kind in ROLES:
            entries.append((entry, prompt_id, stop - start))
            if len(entries) >= REDACTION_GROUP_ROWS:
                messages += archive.rows(entries, path)
                entries.clear()
        # Only assistant lines carry usage; only system (compactions) and cost-state lines
        # carry cost states (usage_from_line and cost_state_from_line check it again).
        usage = usage_from_line(entry, prompt_id, path) if kind == "assistant" else None
        if usage is None:
            if states is not None and kind in COST_STATE_TYPES:
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
    if entries and messages is not None and archive is not None:
        messages += archive.rows(entries, path)
    return merged, prompt_id, bad
