"""Transcript entries → `messages` rows: the conversation archive (docs/archive.md).

An entry carries conversation when it has a `uuid` and its `type` is one of ROLES: user
prompts and tool results, assistant blocks (Claude Code writes one line per content block:
text, thinking, tool_use), system entries, compaction summaries, and attachments (kept as
metadata only: their type and size). Every other line type is bookkeeping and is skipped
(BOOKKEEPING_TYPES lists those we know; an unknown type without a uuid is skipped too).

The row's key is the entry's `uuid`: copies of an entry made on resume or in a sidechain
replay are one row (the first one read). Content passes the same redaction and field caps
as event payloads (daemon/events.py): the Redactor's public `redact` on the content's JSON
text, then `cap_strings`; the searchable `text` comes from what is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from daemon.config import ARCHIVE_DEFAULT, ARCHIVE_MODES
from daemon.errors import RedactionBudgetError
from daemon.events import NUL_MARKER, TRUNCATED, cap_strings, escape_nul
from daemon.line_fields import entry_time, nonempty_str
from daemon.redaction import Redactor
from daemon.schema import MESSAGE_ROLES

ROLES = MESSAGE_ROLES  # the line types that carry conversation (messages.role)
Entry = tuple[dict[str, Any], str | None, int]  # a decoded entry, its prompt id, its line's bytes
# Line types that are bookkeeping, never stored (docs/archive.md lists them).
BOOKKEEPING_TYPES = (
    "api-request",
    "api-request-blob",
    "api-request-shape",
    "cost-state",
    "queue-operation",
    "file-history-snapshot",
    "file-history-delta",
    "atis-latch",
    "last-prompt",
    "tools-used",
    "mode",
    "permission-mode",
    "denial-counts",
    "summary",
    "ai-title",
    "progress",
)
TOO_DEEP = "too_deep"  # transforms entry of a row whose content nests too deep to store
TOO_DEEP_CONTENT = b'{"type":"too_deep"}'
REDACTION_GROUP_ROWS = 64  # rows whose contents redaction reads in one call (MessageArchive.rows)
TEXT_CAP_BYTES = 256 * 1024  # most UTF-8 bytes of `text` per row (a tsvector holds at most 1 MB)
ATTACHMENT_META_KEYS = ("type", "filename", "displayPath", "hookName", "hookEvent")
SYSTEM_SKIP_KEYS = frozenset(
    {"type", "subtype", "uuid", "parentUuid", "isSidechain", "sessionId",
     "agentId", "timestamp", "cwd", "gitBranch", "version", "userType", "entrypoint", "slug"}
)  # fmt: skip


@dataclass(slots=True)
class MessageRow:
    """One `messages` row, ready to COPY."""

    uuid: str
    parent_uuid: str | None
    claude_session_id: str | None
    claude_agent_id: str | None
    occurred_at: datetime | None
    role: str
    entry_type: str
    model: str | None
    cwd: str | None
    git_branch: str | None
    prompt_id: str | None
    message_id: str | None
    tool_use_id: str | None
    tool_name: str | None
    spawned_agent_id: str | None
    is_sidechain: bool
    content: str | None  # JSON text
    text: str | None
    content_bytes: int
    content_sha256: str | None
    transforms: list[str] | None
    transcript_path: str

    def copy_row(self, host: str) -> tuple[Any, ...]:
        return (
            self.uuid, self.parent_uuid, self.claude_session_id, self.claude_agent_id, host,
            self.occurred_at, self.role, self.entry_type, self.model, self.cwd, self.git_branch,
            self.prompt_id, self.message_id, self.tool_use_id, self.tool_name, self.spawned_agent_id,
            self.is_sidechain, self.content, self.text, self.content_bytes, self.content_sha256,
            self.transforms, self.transcript_path,
        )  # fmt: skip




def plain_text(content: Any) -> str:  # noqa: PLR0911 - one return per block type reads best
    """The words of a content value: strings, `text`/`thinking` of blocks, tool input values."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (plain_text(c) for c in content) if t)
    if isinstance(content, dict):
        kind = content.get("type")
        if kind == "text":
            return plain_text(content.get("text"))
        if kind == "thinking":
            return plain_text(content.get("thinking"))
        if kind == "tool_use":
            name = content.get("name") or ""
            return f"{name} {plain_text(content.get('input'))}".strip()
        if kind == "tool_result":
            return plain_text(content.get("content"))
        if kind in ("image", "document", "redacted_thinking"):
            return ""
        return "\n".join(t for t in (plain_text(v) for v in content.values()) if t)
    return ""


def _cap_text(text: str) -> str:
    if len(text) <= TEXT_CAP_BYTES // 4:  # at most 4 UTF-8 bytes a character: no need to count
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= TEXT_CAP_BYTES:
        return text
    return raw[:TEXT_CAP_BYTES].decode("utf-8", "ignore")


def _metadata(content: Any) -> Any:
    """What archive = metadata keeps of a content value: block types, tool names and ids."""
    if isinstance(content, list):
        return [_metadata(c) for c in content]
    if isinstance(content, dict):
        keep = {
            k: content[k] for k in ("type", "name", "id", "tool_use_id", "is_error") if k in content
        }
        return keep or {"type": "object"}
    return {"type": "string" if isinstance(content, str) else type(content).__name__}


class MessageArchive:
    """Turns transcript entries into rows under one configuration (mode, redaction, caps)."""

    def __init__(
        self,
        mode: str = ARCHIVE_DEFAULT,
        redactor: Redactor | None = None,
        field_cap_bytes: int = 0,
    ) -> None:
        if mode not in ARCHIVE_MODES:
            raise ValueError(f"archive mode {mode!r}; choose one of {', '.join(ARCHIVE_MODES)}")
        self.mode = mode
        self.redactor = redactor
        self.field_cap_bytes = field_cap_bytes

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def row(
        self, entry: dict[str, Any], prompt_id: str | None, path: str, line_bytes: int = 0
    ) -> MessageRow | None:
        """The row of one decoded transcript entry, or None (bookkeeping, no uuid).

        `line_bytes` is the size of the line it was decoded from: an attachment's size.
        """
        return self._build(entry, prompt_id, path, line_bytes, redact=True)[0]

    def rows(self, entries: Sequence[Entry], path: str) -> list[MessageRow]:
        """The rows of `entries` (entry, prompt id, line bytes) in order, as `row` makes them.

        Redaction runs once per REDACTION_GROUP_ROWS rows, over their contents joined into one
        JSON array: when it finds nothing there, it finds nothing in any one of them (the rules
        match within one JSON text, and each content is a whole JSON value inside the array, so
        a match never needs what lies beyond it; tests/unit/test_message_rows.py checks a
        corpus of secrets), and the rows stand as made. Otherwise the group's rows are made
        again one by one, each redacted on its own as `row` does."""
        redactor = self.redactor
        if redactor is None or not redactor.active:
            return [r for r in (self.row(e, p, path, n) for e, p, n in entries) if r is not None]
        out: list[MessageRow] = []
        for at in range(0, len(entries), REDACTION_GROUP_ROWS):
            group = entries[at : at + REDACTION_GROUP_ROWS]
            built = [self._build(e, p, path, n, redact=False) for e, p, n in group]
            unchecked = [body for _, body in built if body is not None]
            clean = not unchecked
            if not clean:
                try:
                    clean = not redactor.redact(b"[" + b",".join(unchecked) + b"]").counts
                except RedactionBudgetError:
                    clean = False  # one by one, each within its own budget
            if clean:
                out += [r for r, _ in built if r is not None]
            else:
                out += [r for r in (self.row(e, p, path, n) for e, p, n in group) if r is not None]
        return out

    def _build(
        self, entry: dict[str, Any], prompt_id: str | None, path: str, line_bytes: int,
        *, redact: bool,
    ) -> tuple[MessageRow | None, bytes | None]:
        """`row`, and with `redact` False the row made without redaction plus the JSON text
        redaction would have been given (None when redaction does not apply to it)."""
        role = entry.get("type")
        uuid = nonempty_str(entry.get("uuid"))
        if uuid is None or role not in ROLES:
            return None, None
        message = entry.get("message")
        msg: dict[str, Any] = message if isinstance(message, dict) else {}
        tool_use_id = tool_name = spawned = message_id = model = None
        content: Any
        if role == "attachment":
            att = entry.get("attachment")
            att_d: dict[str, Any] = att if isinstance(att, dict) else {}
            entry_type = nonempty_str(att_d.get("type")) or "attachment"
            content = {k: att_d[k] for k in ATTACHMENT_META_KEYS if k in att_d}
            content["bytes"] = line_bytes
        elif role == "system":
            entry_type = nonempty_str(entry.get("subtype")) or "system"
            content = {k: v for k, v in entry.items() if k not in SYSTEM_SKIP_KEYS}
        elif role == "assistant":
            raw = msg.get("content")
            blocks = raw if isinstance(raw, list) else [raw]
            content = blocks[0] if len(blocks) == 1 else blocks
            first = blocks[0] if blocks and isinstance(blocks[0], dict) else {}
            entry_type = nonempty_str(first.get("type")) or "text"
            if entry_type == "tool_use":
                tool_use_id, tool_name = nonempty_str(first.get("id")), nonempty_str(first.get("name"))
            message_id, model = nonempty_str(msg.get("id")), nonempty_str(msg.get("model"))
        else:  # user
            content = msg.get("content")
            first = content[0] if isinstance(content, list) and content else {}
            if isinstance(first, dict) and first.get("type") == "tool_result":
                entry_type = "tool_result"
                tool_use_id = nonempty_str(first.get("tool_use_id"))
                result = entry.get("toolUseResult")
                if isinstance(result, dict):
                    spawned = nonempty_str(result.get("agentId"))
            elif entry.get("isCompactSummary"):
                entry_type = "compact_summary"
            elif entry.get("isMeta"):
                entry_type = "meta"
            else:
                entry_type = "prompt"
        if role == "user":
            prompt_id = nonempty_str(entry.get("promptId")) or prompt_id
        unchecked: bytes | None = None
        try:
            body, text, size, sha, transforms, unchecked = self._stored(content, role, redact)
        except (RecursionError, orjson.JSONEncodeError):
            # Nested deeper than orjson encodes (255 levels) or than Python recurses: the
            # row keeps its place in the thread, its content does not fit.
            body, text, size, sha, transforms = TOO_DEEP_CONTENT, None, line_bytes, None, [TOO_DEEP]
        return MessageRow(
            uuid=uuid,
            parent_uuid=nonempty_str(entry.get("parentUuid")),
            claude_session_id=nonempty_str(entry.get("sessionId")),
            claude_agent_id=nonempty_str(entry.get("agentId")),
            occurred_at=entry_time(entry.get("timestamp")),
            role=role,
            entry_type=entry_type,
            model=model,
            cwd=nonempty_str(entry.get("cwd")),
            git_branch=nonempty_str(entry.get("gitBranch")),
            prompt_id=prompt_id,
            message_id=message_id,
            tool_use_id=tool_use_id,
            tool_name=tool_name,
            spawned_agent_id=spawned,
            is_sidechain=bool(entry.get("isSidechain")),
            content=body.decode("utf-8"),
            text=text,
            content_bytes=size,
            content_sha256=sha,
            transforms=transforms or None,
            transcript_path=path,
        ), unchecked

    def _stored(
        self, content: Any, role: str, redact: bool = True
    ) -> tuple[bytes, str | None, int, str | None, list[str], bytes | None]:
        """(JSON to store, searchable text, original size, original sha256, transforms, and
        without `redact` the JSON text redaction would have been given)."""
        body = original = orjson.dumps(content)
        size = len(body)
        transforms: list[str] = []
        private = False
        if NUL_MARKER in body:
            content = escape_nul(content)
            body = orjson.dumps(content)
            transforms.append("nul_escaped")
        text: str | None = None
        sha: str | None = None
        unchecked: bytes | None = None
        if self.mode == "metadata" and role != "attachment":
            content = _metadata(content)
            body = orjson.dumps(content)
            private = True
        else:
            if self.redactor is not None and self.redactor.active and not redact:
                unchecked = body
            elif self.redactor is not None and self.redactor.active:
                done = self.redactor.redact(body)
                if done.counts:
                    body, private = done.body, True
                    transforms += done.transforms
                    content = orjson.loads(body)
            if self.field_cap_bytes and size > self.field_cap_bytes:
                capped, cut = cap_strings(content, self.field_cap_bytes)
                if cut:
                    content, body = capped, orjson.dumps(capped)
                    transforms += [TRUNCATED, *(f"{TRUNCATED}:{p}" for p in cut)]
            if role != "attachment":
                text = _cap_text(plain_text(content)) or None
        if transforms and not private:
            sha = hashlib.sha256(original).hexdigest()
        return body, text, size, sha, transforms, unchecked
