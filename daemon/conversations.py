"""Reading the archive back: full-text search over `messages`, and one session as a conversation.

`search` uses the generated `search_vector` (GIN index) with websearch_to_tsquery syntax
(words, "a phrase", -excluded, or); snippets come from ts_headline with hits marked
HIT_START … HIT_END, which the renderers turn into ANSI bold, **markdown** or keep for JSON.

`show` prints a session's rows in transcript order (`messages.id` follows the lines as they
were read). Tool calls and results are folded to one line each unless full; attachments are
left out unless full; a subagent's rows are nested under the Agent call that started it (the
tool_result's `spawned_agent_id`); after each turn, its duration, tool calls, tokens and cost
from the `conversation_turns` view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg

from daemon import db
from daemon.errors import ConfigError

HIT_START, HIT_END = "\x01", "\x02"  # ts_headline's StartSel/StopSel (db.SEARCH_MESSAGES)
SEARCH_LIMIT_ROWS = 50  # matches printed by default
FOLD_CHARS = 160  # a folded line's longest text
FORMATS = ("text", "md", "json")
BOLD, RESET = "\x1b[1m", "\x1b[0m"
QUIET_SYSTEM_TYPES = frozenset({"stop_hook_summary", "turn_duration"})  # shown with full only


@dataclass(frozen=True, slots=True)
class Match:
    """One search hit."""

    claude_session_id: str | None
    claude_agent_id: str | None
    occurred_at: datetime | None
    role: str
    entry_type: str
    project: str | None
    uuid: str
    snippet: str


def search(
    conn: psycopg.Connection[Any],
    words: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    project: str | None = None,
    role: str | None = None,
    session: str | None = None,
    limit: int = SEARCH_LIMIT_ROWS,
) -> list[Match]:
    """Messages matching `words` (websearch syntax), newest first."""
    with db.transaction(conn) as cur:
        cur.execute(
            db.SEARCH_MESSAGES,
            {"query": words, "since": since, "until": until, "project": project, "role": role,
             "session": session, "limit": limit},
        )  # fmt: skip
        return [Match(*r) for r in cur.fetchall()]  # type: ignore[arg-type]  # columns as SEARCH_MESSAGES lists them


def mark(snippet: str, style: str) -> str:
    """Hits as ANSI bold (tty), **bold** (md/plain) or «…» (json keeps the text readable)."""
    start, end = {"tty": (BOLD, RESET), "plain": ("**", "**"), "json": ("«", "»")}[style]
    return " ".join(snippet.split()).replace(HIT_START, start).replace(HIT_END, end)


def render_matches(matches: Sequence[Match], *, tty: bool) -> str:
    """One header line (time, session, agent, project, role) and the snippet per match."""
    out = []
    for m in matches:
        when = f"{m.occurred_at:%Y-%m-%d %H:%M:%S}" if m.occurred_at else "-"
        agent = f" agent {m.claude_agent_id}" if m.claude_agent_id else ""
        out.append(
            f"{when}  {m.claude_session_id}{agent}  {m.project or '-'}  {m.role}/{m.entry_type}\n"
            f"    {mark(m.snippet, 'tty' if tty else 'plain')}\n"
        )
    out.append(f"{len(matches)} matches\n")
    return "".join(out)


def matches_json(matches: Sequence[Match]) -> bytes:
    return orjson.dumps(
        [
            {
                "claude_session_id": m.claude_session_id,
                "claude_agent_id": m.claude_agent_id,
                "occurred_at": m.occurred_at,
                "role": m.role,
                "entry_type": m.entry_type,
                "project": m.project,
                "uuid": m.uuid,
                "snippet": mark(m.snippet, "json"),
            }
            for m in matches
        ],
        option=orjson.OPT_INDENT_2,
    )


# --- show ---------------------------------------------------------------------------------


@dataclass
class Entry:
    """One archived row, with the subagent it started (when it is an Agent call)."""

    uuid: str
    parent_uuid: str | None
    claude_agent_id: str | None
    occurred_at: datetime | None
    role: str
    entry_type: str
    model: str | None
    cwd: str | None
    prompt_id: str | None
    tool_use_id: str | None
    tool_name: str | None
    spawned_agent_id: str | None
    content: Any
    text: str | None
    content_bytes: int
    transforms: list[str] | None
    subagent: list[Entry] = field(default_factory=list)


@dataclass
class Conversation:
    """A session's main thread (subagents nested) and its turns by prompt id."""

    claude_session_id: str
    entries: list[Entry]
    turns: dict[str, dict[str, Any]]
    unlinked: dict[str, list[Entry]]  # subagents whose Agent call is not archived


def load(conn: psycopg.Connection[Any], session: str) -> Conversation:
    """The conversation of the session whose id is (or starts with) `session`."""
    with db.transaction(conn) as cur:
        cur.execute(db.SELECT_MESSAGE_SESSIONS, (session,))
        found = [r[0] for r in cur.fetchall()]
        if len(found) != 1:
            why = "no archived session" if not found else "more than one session"
            raise ConfigError(f"show {session}: {why} has an id starting with it")
        sid = str(found[0])
        cur.execute(db.SELECT_SESSION_MESSAGES, (sid,))
        rows = [Entry(*r) for r in cur.fetchall()]  # type: ignore[arg-type]  # columns as SELECT_SESSION_MESSAGES lists them
        cur.execute(db.SELECT_SESSION_TURNS, (sid,))
        turns = {
            str(r[0]): dict(zip(("duration_ms", "tool_uses", "input_tokens", "output_tokens",
                                 "cost_usd"), r[1:], strict=True))
            for r in cur.fetchall()
        }  # fmt: skip
    main = [e for e in rows if e.claude_agent_id is None]
    subs: dict[str, list[Entry]] = {}
    for e in rows:
        if e.claude_agent_id is not None:
            subs.setdefault(e.claude_agent_id, []).append(e)
    spawned = {e.tool_use_id: e.spawned_agent_id for e in main if e.spawned_agent_id}
    for e in main:
        aid = spawned.get(e.tool_use_id) if e.entry_type == "tool_use" else None
        if aid is not None and aid in subs:
            e.subagent = subs.pop(aid)
    return Conversation(sid, main, turns, subs)


def _fold(text: str | None) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= FOLD_CHARS else line[: FOLD_CHARS - 1] + "…"


def _visible(e: Entry, full: bool) -> bool:
    if full:
        return True
    return e.role != "attachment" and e.entry_type not in QUIET_SYSTEM_TYPES


def _line(e: Entry, full: bool, md: bool) -> str:  # noqa: PLR0911 - one return per kind of entry
    """One entry as text (md: markdown)."""
    when = f"{e.occurred_at:%H:%M:%S}" if e.occurred_at else "--:--:--"
    body = e.text or ""
    if e.entry_type == "tool_use":
        head = f"→ {e.tool_name}"
        args = _fold(body.removeprefix(e.tool_name or "").strip())
        if full:
            pretty = orjson.dumps(e.content, option=orjson.OPT_INDENT_2).decode()
            return (
                f"[{when}] {head}\n```json\n{pretty}\n```" if md else f"[{when}] {head}\n{pretty}"
            )
        return f"- [{when}] `{head}` {args}" if md else f"[{when}] {head}: {args}"
    if e.entry_type == "tool_result":
        head = "← result"
        error = isinstance(e.content, dict) and e.content.get("is_error")
        head += " (error)" if error else ""
        if full:
            return f"[{when}] {head}\n```\n{body}\n```" if md else f"[{when}] {head}\n{body}"
        return f"{'- ' if md else ''}[{when}] {head}: {_fold(body)}"
    if e.role == "attachment":
        return f"[{when}] [attachment {e.entry_type}, {e.content_bytes} bytes]"
    if e.role == "system":
        return f"[{when}] [system {e.entry_type}]" + (f" {_fold(body)}" if body else "")
    label = e.role if e.entry_type in ("prompt", "text") else f"{e.role} ({e.entry_type})"
    if md:
        return f"\n**{label}** [{when}]\n\n{body}\n"
    return f"[{when}] {label}: {body}"


def _turn_line(prompt_id: str, turn: dict[str, Any] | None) -> str:
    if turn is None:
        return ""
    parts = []
    if turn["duration_ms"] is not None:
        parts.append(f"{float(turn['duration_ms']) / 1000:.2f} s")
    parts.append(f"{turn['tool_uses'] or 0} tool calls")
    parts.append(f"{turn['input_tokens'] or 0} in / {turn['output_tokens'] or 0} out tokens")
    cost = turn["cost_usd"]
    parts.append("cost unknown" if cost is None else f"${Decimal(cost):.4f}")
    return f"── turn {prompt_id[:8]}: " + " · ".join(parts)


def render(conv: Conversation, fmt: str, *, full: bool = False) -> str:
    """The conversation as text, markdown or JSON."""
    if fmt == "json":
        return orjson.dumps(_as_json(conv), option=orjson.OPT_INDENT_2).decode() + "\n"
    md = fmt == "md"
    out = [f"# session {conv.claude_session_id}\n" if md else f"session {conv.claude_session_id}"]
    current: str | None = None

    def close_turn() -> None:
        if current is not None:
            line = _turn_line(current, conv.turns.get(current))
            if line:
                out.append(f"\n*{line}*\n" if md else line)

    def emit(entries: list[Entry], indent: str) -> None:
        nonlocal current
        for e in entries:
            if not indent and e.entry_type == "prompt" and e.prompt_id != current:
                close_turn()
                current = e.prompt_id
            if not _visible(e, full):
                continue
            text = _line(e, full, md)
            out.append("\n".join(indent + t for t in text.splitlines()) if indent else text)
            if e.subagent:
                out.append(f"{indent}  ┆ subagent {e.subagent[0].claude_agent_id}")
                emit(e.subagent, indent + "  ┆ ")

    emit(conv.entries, "")
    close_turn()
    for aid, entries in conv.unlinked.items():
        out.append(f"subagent {aid} (its Agent call is not archived)")
        emit(entries, "  ┆ ")
    return "\n".join(out) + "\n"


def _entry_json(e: Entry) -> dict[str, Any]:
    d: dict[str, Any] = {
        "uuid": e.uuid, "parent_uuid": e.parent_uuid, "claude_agent_id": e.claude_agent_id,
        "occurred_at": e.occurred_at, "role": e.role, "entry_type": e.entry_type, "model": e.model,
        "prompt_id": e.prompt_id, "tool_use_id": e.tool_use_id, "tool_name": e.tool_name,
        "content": e.content, "text": e.text, "content_bytes": e.content_bytes,
        "transforms": e.transforms,
    }  # fmt: skip
    if e.subagent:
        d["subagent"] = {
            "claude_agent_id": e.subagent[0].claude_agent_id,
            "messages": [_entry_json(s) for s in e.subagent],
        }
    return d


def _as_json(conv: Conversation) -> dict[str, Any]:
    return {
        "claude_session_id": conv.claude_session_id,
        "messages": [_entry_json(e) for e in conv.entries],
        "turns": [
            {
                "prompt_id": k,
                **{n: (float(v) if isinstance(v, Decimal) else v) for n, v in t.items()},
            }
            for k, t in conv.turns.items()
        ],
        "unlinked_subagents": {
            aid: [_entry_json(e) for e in entries] for aid, entries in conv.unlinked.items()
        },
    }


def parse_when(value: str, now: datetime) -> datetime:
    """`--since`/`--until`: an ISO date or time (UTC unless it says otherwise), or a duration
    before now (7d, 12h, 2w)."""
    from daemon.quarantine import parse_duration

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError:
            raise ConfigError(
                f"{value!r} is neither an ISO date/time (2026-11-23, 2026-11-23T10:00) nor a duration (7d)"
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
