"""Spool file bytes → one `agent_logs` row (or a reason to quarantine).

File format written by hooks/session-db-hook (version 1)::

    session-db-spool: 1
    received-ns: 1795436016586690803
    host: build-01
    event: PreToolUse
    env.CLAUDE_CODE_SESSION_ID: 05e00ce7-…
                                        ← empty line
    <payload bytes exactly as Claude Code sent them>

A file without the header is accepted when it is a JSON object (a foreign writer).

NUL escaping (PostgreSQL's jsonb cannot hold U+0000): when a payload contains NUL,
every string (keys too) is rewritten with the escape character U+2400 "␀":
U+2400 → "␀␀" and U+0000 → "␀0". Reverse: scan left to right, "␀␀" → "␀",
"␀0" → NUL. Such rows carry `transforms = {nul_escaped}` plus the sha256 and size of
the original payload bytes; rows without it are stored exactly as received
(jsonb normalises whitespace and key order, and keeps the last of duplicate keys).

Secrets and privacy (daemon.redaction, after NUL escaping, before the field cap): secrets are
replaced in the JSON text by `[REDACTED:<kind>]` and fields named by the privacy switches by
null. Such rows carry `redacted`, `redacted:<kind>`… and `dropped:<JSON pointer>`… in
`transforms`, the number of replaced secrets in `Event.redactions`, and no payload_sha256: a
hash of the original would let anyone who can read the row test guesses of a short password.
The columns read from the payload (cwd, ids, paths) come from the redacted text. The header's
values (host, project_dir, workflow_slug, agent type) are not redacted: they are the hook's
four allow-listed names and paths, never free text, and rewriting them would break the links
to agents, sessions and watched roots.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from daemon.errors import RedactionBudgetError

if TYPE_CHECKING:
    from daemon.redaction import Redactor

HEADER_MAGIC = b"session-db-spool: "
SPOOL_VERSION = 1
NUL_ESCAPE = "\u2400"
NUL_MARKER = b"\\u0000"
UTF8_BOM = b"\xef\xbb\xbf"
ENV_KEYS = (
    "CLAUDE_PROJECT_DIR",
    "CLAUDE_CODE_SESSION_ID",
    "SESSION_DB_SESSION",
    "SESSION_DB_AGENT_TYPE",
)
UNKNOWN_EVENT = "unknown"
# Payload members that become columns (or feed agents and transcripts) when they are non-empty strings.
COLUMN_KEYS = (
    "session_id", "agent_id", "agent_type", "tool_name", "tool_use_id", "prompt_id", "cwd",
    "model", "transcript_path", "agent_transcript_path",
)  # fmt: skip
MAX_RECEIVED_NS = (
    253_402_300_799 * 10**9
)  # 9999-12-31T23:59:59Z, the last instant PostgreSQL and Python share
END_EVENTS = frozenset({"SessionEnd"})
SUBAGENT_END_EVENTS = frozenset({"SubagentStop"})


class BadEvent(Exception):
    """The file cannot become a row; `reason` is a machine-readable code."""

    def __init__(self, reason: str, detail: str, *, retryable: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable  # a header-less file may still be mid-write


@dataclass(slots=True)
class Event:
    """One parsed hook event, ready for COPY."""

    spool_name: str  # the spool file name (the row key event_uid derives from it)
    host: str
    received_ns: int
    event_type: str
    claude_session_id: str | None
    claude_agent_id: str | None
    agent_type: str | None
    tool_name: str | None
    tool_use_id: str | None
    prompt_id: str | None
    cwd: str | None
    project_dir: str | None
    workflow_slug: str | None
    model: str | None
    transcript_path: str | None
    agent_transcript_path: str | None
    payload: str | None  # JSON text for the jsonb column, None for an empty payload
    payload_bytes: int
    payload_sha256: str | None
    transforms: list[str] | None
    redactions: int = 0  # secrets replaced by markers (daemon.redaction)

    @property
    def truncated(self) -> bool:
        return self.transforms is not None and TRUNCATED in self.transforms


# orjson decodes numbers as 64-bit integers or doubles and refuses valid JSON numbers beyond
# them (1e400, a 1000-digit integer); its message for that case starts with this.
ORJSON_NUMBER_ERROR = "number "


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(body: bytes) -> Any:
    """Decode JSON text: orjson, else (only for a number orjson cannot hold) the standard
    library with every number as an exact Decimal. The JSON text itself is what gets stored,
    so such numbers reach jsonb (numeric) exactly as written. Raises orjson.JSONDecodeError."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not str(exc).startswith(ORJSON_NUMBER_ERROR):
            raise
        try:
            return json.loads(
                body, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant
            )
        except (ValueError, RecursionError):
            raise exc from None


def _fragment(value: Any) -> orjson.Fragment:
    """orjson `default`: a Decimal from the fallback parser, written as a JSON number."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: Any) -> bytes:
    """orjson.dumps that also writes the exact Decimals of `loads`."""
    return orjson.dumps(value, default=_fragment)


def escape_nul(value: Any) -> Any:
    """Apply the reversible NUL escaping to every string in a decoded JSON value."""
    if isinstance(value, str):
        if "\x00" in value or NUL_ESCAPE in value:
            return value.replace(NUL_ESCAPE, NUL_ESCAPE * 2).replace("\x00", NUL_ESCAPE + "0")
        return value
    if isinstance(value, dict):
        return {escape_nul(k): escape_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_nul(v) for v in value]
    return value


# In JSON text, NUL can only appear as the escape \u0000 inside a string; U+2400 as the escape
# \u2400 or as its UTF-8 bytes. An escaped backslash is matched first so that "\\u0000" (a
# backslash followed by the letters u0000) is left alone.
_NUL_TEXT = re.compile(rb"\\\\|\\u0000|\\u2400|\xe2\x90\x80")
_ESC = NUL_ESCAPE.encode()


def escape_nul_json(body: bytes) -> tuple[bytes, bool]:
    """escape_nul applied to JSON text without decoding it (numbers and key order stay as sent).

    Returns the new text and whether any NUL was escaped; without a NUL the text is unchanged.
    """
    found = False

    def repl(m: re.Match[bytes]) -> bytes:
        nonlocal found
        token = m.group()
        if token == b"\\\\":
            return token
        if token == b"\\u0000":
            found = True
            return _ESC + b"0"
        return _ESC + _ESC

    out = _NUL_TEXT.sub(repl, body)
    return (out, True) if found else (body, False)


def unescape_nul(value: Any) -> Any:
    """Inverse of escape_nul."""
    if isinstance(value, str):
        if NUL_ESCAPE not in value:
            return value
        out, i = [], 0
        while i < len(value):
            ch = value[i]
            if ch == NUL_ESCAPE and i + 1 < len(value):
                nxt = value[i + 1]
                out.append("\x00" if nxt == "0" else NUL_ESCAPE)
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    if isinstance(value, dict):
        return {unescape_nul(k): unescape_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape_nul(v) for v in value]
    return value


def split_header(data: bytes) -> tuple[dict[str, str] | None, bytes]:
    """(header fields, payload) of a spool file; header None for a header-less file."""
    if not data.startswith(HEADER_MAGIC):
        return None, data
    end = data.find(b"\n\n")
    if end < 0:
        raise BadEvent("truncated_header", "no empty line ends the header")
    # One decode for the whole header; NUL cannot live in a PostgreSQL text column.
    head = data[:end].decode("utf-8", "replace")
    if "\x00" in head:
        head = head.replace("\x00", "\ufffd")
    fields: dict[str, str] = {}
    for line in head.split("\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            raise BadEvent("bad_header", f"header line without ': ': {line[:80]!r}")
        fields[key] = value
    return fields, data[end + 2 :]


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value.__class__ is str and value:
        return escape_nul(value) if "\x00" in value else value
    return None


def _event_type(header: dict[str, str], obj: dict[str, Any]) -> str:
    return header.get("event") or _text(obj, "hook_event_name") or UNKNOWN_EVENT


TRUNCATED = "truncated"


def cap_strings(value: Any, cap: int, path: str = "") -> tuple[Any, list[str]]:
    """Shorten every string (values, not keys) longer than `cap` UTF-8 bytes; return the JSON
    pointers of the fields it shortened. A cut never splits a character."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        if len(raw) <= cap:
            return value, []
        return raw[:cap].decode("utf-8", "ignore"), [path or "/"]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        cut: list[str] = []
        for k, v in value.items():
            out[k], c = cap_strings(v, cap, f"{path}/{k.replace('~', '~0').replace('/', '~1')}")
            cut += c
        return out, cut
    if isinstance(value, list):
        items: list[Any] = []
        cut = []
        for i, v in enumerate(value):
            item, c = cap_strings(v, cap, f"{path}/{i}")
            items.append(item)
            cut += c
        return items, cut
    return value, []


def parse(
    name: str,
    data: bytes,
    *,
    default_host: str,
    mtime_ns: int,
    field_cap_bytes: int = 0,
    redactor: Redactor | None = None,
) -> Event:
    """Turn one spool file into an Event, or raise BadEvent. Without a redactor nothing is
    redacted or dropped (the daemon always passes the one its settings describe)."""
    header, payload = split_header(data)
    if header is not None:
        version = header.get("session-db-spool", "")
        if version != str(SPOOL_VERSION):
            raise BadEvent(
                "unsupported_spool_version",
                f"version {version!r}, this daemon reads {SPOOL_VERSION}",
            )
        try:
            received_ns = int(header.get("received-ns", ""))
        except ValueError:
            raise BadEvent(
                "bad_header", f"received-ns is not an integer: {header.get('received-ns')!r}"
            ) from None
        if not 0 <= received_ns <= MAX_RECEIVED_NS:
            raise BadEvent("bad_header", f"received-ns out of range: {received_ns}")
        host = header.get("host") or default_host
    else:
        received_ns = mtime_ns
        host = default_host
        header = {}

    payload_bytes = len(payload)
    obj: dict[str, Any] = {}
    text: str | None = None
    sha: str | None = None
    transforms: list[str] = []
    redactions = 0
    private = False  # secrets or dropped fields were removed: no hash of the original
    body = payload
    if body.startswith(UTF8_BOM):
        body = body[len(UTF8_BOM) :]
        transforms.append("bom_stripped")
    if body.strip():
        try:
            decoded = loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadEvent("json_decode", str(exc), retryable=not header) from None
        if not isinstance(decoded, dict):
            raise BadEvent(
                "not_an_object", f"top-level JSON is {type(decoded).__name__}, expected an object"
            )
        obj = decoded
        event_type = _event_type(header, obj)
        obj_is_body = True  # obj is the decoded body (not so after NUL escaping of the text)
        if NUL_MARKER in body:
            body, escaped = escape_nul_json(body)
            if escaped:
                transforms.append("nul_escaped")
                obj_is_body = False
        if redactor is not None and redactor.active:
            try:
                done = redactor.apply(body, event_type)
            except RedactionBudgetError as exc:
                raise BadEvent("redaction_budget", str(exc)) from None
            if done.counts or done.dropped:
                body, private, redactions = done.body, True, done.count
                transforms += done.transforms
                obj = loads(body)  # the columns come from what is stored
                obj_is_body = True
                event_type = _event_type(header, obj)
        if field_cap_bytes and len(body) > field_cap_bytes:
            try:
                capped, cut = cap_strings(obj if obj_is_body else loads(body), field_cap_bytes)
                if cut:
                    # Re-encoded: integers beyond 64 bits become floats here (unless orjson
                    # refused them: those stay exact); the original is kept on disk.
                    body = dumps(capped)
                    transforms += [TRUNCATED, *(f"{TRUNCATED}:{p}" for p in cut)]
            except (RecursionError, orjson.JSONEncodeError) as exc:
                # orjson encodes at most 255 levels and cap_strings recurses: a deeply nested
                # payload with an oversize string cannot be capped, and is not stored uncapped.
                raise BadEvent(
                    "too_deep_to_cap",
                    f"a string over field_cap_bytes={field_cap_bytes} sits in a payload nested "
                    f"too deep to re-encode ({type(exc).__name__}: {exc})",
                ) from None
        text = body.decode("utf-8")  # orjson has validated it
    elif not header:
        # A foreign writer may have created the file and not written it yet.
        raise BadEvent("empty", "empty file without a session-db header", retryable=True)
    else:
        event_type = _event_type(header, obj)
    if transforms and not private:
        sha = hashlib.sha256(payload).hexdigest()

    env = header.get
    # The columns read from the payload, in one pass (what _text gives for each key). A decoded
    # string can hold NUL only when the payload spelled it as \u0000.
    found = {k: v for k in COLUMN_KEYS if (v := obj.get(k)).__class__ is str and v}
    if NUL_MARKER in payload:
        found = {k: escape_nul(v) if "\x00" in v else v for k, v in found.items()}
    col = found.get
    return Event(
        spool_name=name,
        host=host,
        received_ns=received_ns,
        event_type=event_type,
        claude_session_id=col("session_id") or env("env.CLAUDE_CODE_SESSION_ID") or None,
        claude_agent_id=col("agent_id"),
        agent_type=col("agent_type")
        if "agent_id" in obj
        else (col("agent_type") or env("env.SESSION_DB_AGENT_TYPE") or None),
        tool_name=col("tool_name"),
        tool_use_id=col("tool_use_id"),
        prompt_id=col("prompt_id"),
        cwd=col("cwd"),
        project_dir=env("env.CLAUDE_PROJECT_DIR") or None,
        workflow_slug=env("env.SESSION_DB_SESSION") or None,
        model=col("model"),
        transcript_path=col("transcript_path"),
        agent_transcript_path=col("agent_transcript_path"),
        payload=text,
        payload_bytes=payload_bytes,
        payload_sha256=sha,
        transforms=transforms or None,
        redactions=redactions,
    )
