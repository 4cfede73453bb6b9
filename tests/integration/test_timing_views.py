"""Timing views (migration 0002) against real fixture payloads and crafted events, via the ingest path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from daemon.ingest import Ingestor
from daemon.spool import Spool
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event

ALL = FIXTURES / "hooks" / "all"
BASE_NS = 1_795_436_016_000_000_000  # 2026-11-23T12:13:36Z, a whole second
STEP_MS = 1  # fixture events are delivered 1 ms apart, in firing order

MAIN = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
PERM = "d35abfa5-5a48-43db-adde-fb67d1ceab70"
ERROR = "120513a0-395a-41b8-be5c-14234bf83781"
TUI = "754e99ea-7fc4-4338-9331-feeacf5871ea"
MAIN_PROMPT = "3e855eb2-fa71-4af7-9a8d-8b1166c1a4e8"
MAIN_SUBAGENT = "a4559b86e76dea3ec"
PERM_SUBAGENT = "a8c99e49250e54aa5"


def at(ms: float) -> datetime:
    """The timestamp an event delivered `ms` after BASE_NS is stored with."""
    return datetime.fromtimestamp(BASE_NS // 10**9, UTC) + timedelta(milliseconds=ms)


def replay(spool: Spool, scenario: str, start_ms: int = 0) -> dict[str, datetime]:
    """Deliver a fixture scenario in firing order, 1 ms apart; returns file stem → receive time."""
    times = {}
    for i, f in enumerate(sorted((ALL / scenario).iterdir())):
        ms = start_ms + i * STEP_MS
        write_event(
            spool.root,
            f.read_bytes(),
            event=f.stem.split("_", 1)[1],
            received_ns=BASE_NS + ms * 1_000_000,
            fsync=False,
        )
        times[f.stem] = at(ms)
    return times


def send(spool: Spool, event: str, ms: float, payload: dict[str, Any] | None, **env: str) -> None:
    """Deliver one crafted event received `ms` after BASE_NS (payload None = empty stdin)."""
    raw = b"" if payload is None else json.dumps({"hook_event_name": event, **payload}).encode()
    write_event(
        spool.root,
        raw,
        event=event,
        env=env,
        received_ns=BASE_NS + round(ms * 1_000_000),
        fsync=False,
    )


def tool_event(
    session: str, event: str, tool_use_id: str | None, tool: str = "Bash", **extra: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "session_id": session,
        "prompt_id": "p-1",
        "tool_name": tool,
        "tool_input": {"command": f"run {tool_use_id}"},
        **extra,
    }
    if tool_use_id is not None:
        payload["tool_use_id"] = tool_use_id
    return payload


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def main_loaded(spool: Spool, ingestor: Ingestor) -> dict[str, datetime]:
    times = replay(spool, "main")
    ingestor.drain()
    return times


def test_tool_calls_main_outcomes_and_hook_durations(
    main_loaded: dict[str, datetime], db_url: str
) -> None:
    """Every main-scenario call pairs Pre with its Post; duration_ms is the hook's own duration_ms."""
    rows = query(
        db_url,
        "SELECT tool_use_id, tool_name, claude_agent_id, prompt_id, outcome, duration_ms,"
        " duration_source FROM tool_calls WHERE claude_session_id = %s ORDER BY tool_use_id",
        MAIN,
    )
    assert [
        ("toolu_e2e_01_bash", "Bash", None, MAIN_PROMPT, "ok", 30, "hook"),
        ("toolu_e2e_02_write", "Write", None, MAIN_PROMPT, "ok", 7, "hook"),
        ("toolu_e2e_03_bashfail", "Bash", None, MAIN_PROMPT, "failed", 36, "hook"),
        ("toolu_e2e_03_read", "Read", None, MAIN_PROMPT, "ok", 6, "hook"),
        ("toolu_e2e_04_agent", "Agent", None, MAIN_PROMPT, "ok", 294, "hook"),
        ("toolu_e2e_sub_01_bash", "Bash", MAIN_SUBAGENT, MAIN_PROMPT, "ok", 19, "hook"),
    ] == rows


def test_tool_calls_main_times_and_links(main_loaded: dict[str, datetime], db_url: str) -> None:
    """started_at/ended_at are the Pre and Post receive times; agent_id is the agents row of the caller."""
    rows = query(
        db_url,
        "SELECT c.tool_use_id, c.started_at, c.ended_at, a.claude_agent_id IS NOT DISTINCT FROM c.claude_agent_id"
        " FROM tool_calls c JOIN agents a ON a.id = c.agent_id"
        " WHERE c.claude_session_id = %s AND c.tool_use_id IN ('toolu_e2e_03_bashfail', 'toolu_e2e_sub_01_bash')"
        " ORDER BY 1",
        MAIN,
    )
    t = main_loaded
    assert [
        ("toolu_e2e_03_bashfail", t["12_PreToolUse"], t["15_PostToolUseFailure"], True),
        ("toolu_e2e_sub_01_bash", t["20_PreToolUse"], t["21_PostToolUse"], True),
    ] == rows


def test_tool_calls_perm_denied_closed_by_post_tool_batch(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Denied calls (no Post event) are 'denied' and end at their PostToolBatch; Read fails."""
    t = replay(spool, "perm")
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, outcome, ended_at, duration_ms, duration_source, claude_agent_id"
        " FROM tool_calls WHERE claude_session_id = %s ORDER BY tool_use_id",
        PERM,
    )
    assert [
        ("toolu_e2e_01_bash", "ok", t["06_PostToolUse"], 24, "hook", None),
        ("toolu_e2e_02_write", "denied", t["11_PostToolBatch"], 2 * STEP_MS, "receive_time", None),
        (
            "toolu_e2e_03_bashfail",
            "denied",
            t["16_PostToolBatch"],
            4 * STEP_MS,
            "receive_time",
            None,
        ),
        ("toolu_e2e_03_read", "failed", t["15_PostToolUseFailure"], 7, "hook", None),
        ("toolu_e2e_04_agent", "ok", t["24_PostToolUse"], 269, "hook", None),
        ("toolu_e2e_sub_01_bash", "ok", t["21_PostToolUse"], 12, "hook", PERM_SUBAGENT),
    ] == rows


def test_tool_calls_tui_approved_permission_is_not_denied(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A PermissionRequest followed by a Post event (dialog accepted) takes the Post's outcome."""
    replay(spool, "tui")
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, outcome, duration_ms FROM tool_calls WHERE claude_session_id = %s ORDER BY 1",
        TUI,
    )
    assert [
        ("toolu_e2e_01_bash", "ok", 173),
        ("toolu_e2e_02_write", "ok", 76),
        ("toolu_e2e_03_bashfail", "failed", 64),
        ("toolu_e2e_03_read", "ok", 36),
        ("toolu_e2e_04_agent", "ok", 14),
        ("toolu_e2e_sub_01_bash", "ok", 74),
    ] == rows


def test_tool_calls_same_tool_use_id_in_two_sessions_two_rows(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A tool_use_id reused by another session is a separate call, paired within its own session."""
    replay(spool, "main")
    replay(spool, "perm", start_ms=1000)
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT claude_session_id, outcome, duration_ms FROM tool_calls"
        " WHERE tool_use_id = 'toolu_e2e_02_write' ORDER BY 1",
    )
    assert [(MAIN, "ok", 7), (PERM, "denied", 2 * STEP_MS)] == rows
    (count,) = query(db_url, "SELECT count(*) FROM tool_calls")
    assert (12,) == count


def test_tool_calls_pre_only_is_open(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """A call with only its PreToolUse is 'open': no end, no duration."""
    send(spool, "PreToolUse", 0, tool_event("s-open", "PreToolUse", "t-open"))
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, started_at, ended_at, duration_ms, duration_source, outcome FROM tool_calls",
    )
    assert [("t-open", at(0), None, None, None, "open")] == rows


def test_tool_calls_post_only_still_a_row(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """A Post event whose PreToolUse was lost still yields a row, timed by the hook's duration_ms."""
    send(spool, "PostToolUse", 5, tool_event("s-lost", "PostToolUse", "t-lost", duration_ms=12))
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, tool_name, started_at, ended_at, duration_ms, duration_source, outcome,"
        " input_bytes FROM tool_calls",
    )
    size = len(b'{"command": "run t-lost"}')
    assert [("t-lost", "Bash", None, at(5), 12, "hook", "ok", size)] == rows


def test_tool_calls_permission_denied_event_denies_the_call(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A PermissionDenied event (auto mode, carries tool_use_id) makes the call denied, ending there."""
    send(spool, "PreToolUse", 0, tool_event("s-pd", "PreToolUse", "t-pd"))
    send(spool, "PermissionDenied", 30, tool_event("s-pd", "PermissionDenied", "t-pd", reason="no"))
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, outcome, ended_at, duration_ms, duration_source FROM tool_calls",
    )
    assert [("t-pd", "denied", at(30), 30, "receive_time")] == rows


def test_tool_calls_receive_time_fallback_without_hook_duration(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Without duration_ms in the Post payload, duration_ms = Post receive time - Pre receive time."""
    send(spool, "PreToolUse", 0, tool_event("s-rt", "PreToolUse", "t-rt"))
    send(spool, "PostToolUse", 250.125, tool_event("s-rt", "PostToolUse", "t-rt"))
    send(spool, "PreToolUse", 300, tool_event("s-rt", "PreToolUse", "t-rt-bad"))
    send(
        spool,
        "PostToolUseFailure",
        340,
        tool_event("s-rt", "PostToolUseFailure", "t-rt-bad", duration_ms="n/a"),
    )
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, duration_ms, duration_source, outcome FROM tool_calls ORDER BY 1",
    )
    assert [
        ("t-rt", Decimal("250.125"), "receive_time", "ok"),
        ("t-rt-bad", Decimal("40"), "receive_time", "failed"),
    ] == rows


def test_tool_calls_interrupt_flag_decides_failed_or_interrupted(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """PostToolUseFailure is 'interrupted' when is_interrupt is true, else 'failed' (false or absent)."""
    flags: dict[str, dict[str, Any]] = {
        "t-int": {"is_interrupt": True},
        "t-false": {"is_interrupt": False},
        "t-absent": {},
    }
    for i, (tid, flag) in enumerate(flags.items()):
        send(spool, "PreToolUse", i * 10, tool_event("s-int", "PreToolUse", tid))
        send(
            spool,
            "PostToolUseFailure",
            i * 10 + 5,
            tool_event("s-int", "PostToolUseFailure", tid, duration_ms=4, **flag),
        )
    ingestor.drain()
    rows = query(db_url, "SELECT tool_use_id, outcome FROM tool_calls ORDER BY 1")
    assert [("t-absent", "failed"), ("t-false", "failed"), ("t-int", "interrupted")] == rows


def test_tool_calls_permission_request_matches_by_tool_and_input(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """With no Post or batch, a later PermissionRequest with equal tool_name and tool_input means denied."""
    send(spool, "PreToolUse", 0, tool_event("s-pr", "PreToolUse", "t-asked"))
    send(spool, "PreToolUse", 1, tool_event("s-pr", "PreToolUse", "t-other-input"))
    send(spool, "PreToolUse", 2, tool_event("s-pr", "PreToolUse", "t-other-tool", tool="Edit"))
    request = tool_event("s-pr", "PermissionRequest", None, permission_suggestions=[])
    request["tool_input"] = {"command": "run t-asked"}
    send(spool, "PermissionRequest", 3, request)
    send(spool, "PermissionRequest", 4, {**request, "session_id": "s-elsewhere"})
    send(spool, "PreToolUse", 5, tool_event("s-elsewhere", "PreToolUse", "t-asked-late"))
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT claude_session_id, tool_use_id, outcome, ended_at FROM tool_calls ORDER BY 2",
    )
    assert [
        ("s-pr", "t-asked", "denied", None),
        ("s-elsewhere", "t-asked-late", "open", None),
        ("s-pr", "t-other-input", "open", None),
        ("s-pr", "t-other-tool", "open", None),
    ] == rows


def test_tool_calls_duplicate_events_one_row_first_of_each(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Duplicated Pre/Post rows (different uids) still give one row: the first Pre, the first outcome."""
    for ms in (0, 1):
        send(spool, "PreToolUse", ms, tool_event("s-dup", "PreToolUse", "t-dup"))
    send(spool, "PostToolUse", 10, tool_event("s-dup", "PostToolUse", "t-dup", duration_ms=8))
    send(spool, "PostToolUse", 11, tool_event("s-dup", "PostToolUse", "t-dup", duration_ms=9))
    ingestor.drain()
    rows = query(
        db_url, "SELECT tool_use_id, started_at, ended_at, duration_ms, outcome FROM tool_calls"
    )
    assert [("t-dup", at(0), at(10), 8, "ok")] == rows


def test_tool_calls_input_bytes_is_tool_input_json_octets(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """input_bytes counts the UTF-8 bytes of the tool_input JSON text."""
    payload = tool_event("s-bytes", "PreToolUse", "t-bytes")
    payload["tool_input"] = {"command": "echo héllo ✓"}
    send(spool, "PreToolUse", 0, payload)
    ingestor.drain()
    expected = len(json.dumps(payload["tool_input"], ensure_ascii=False).encode())
    assert [(expected,)] == query(db_url, "SELECT input_bytes FROM tool_calls")


def test_tool_stats_counts_percentiles_and_failure_rate(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """tool_stats counts outcomes per tool; p50/p95 and failure_rate cover finished calls only."""
    calls: list[tuple[str, str, str, int | None]] = [
        *[("Grep", f"g-ok-{d}", "PostToolUse", d) for d in (10, 20, 30, 40, 50, 60)],
        ("Grep", "g-fail", "PostToolUseFailure", 100),
        ("Grep", "g-int", "PostToolUseFailure", 100),
        ("Grep", "g-open", "", None),
        ("Glob", "l-ok", "PostToolUse", 5),
        ("Task", "k-open", "", None),
    ]
    ms = 0
    for tool, tid, post, duration in calls:
        send(spool, "PreToolUse", ms, tool_event("s-stats", "PreToolUse", tid, tool=tool))
        if post:
            extra: dict[str, Any] = {"duration_ms": duration}
            if tid == "g-int":
                extra["is_interrupt"] = True
            send(spool, post, ms + 1, tool_event("s-stats", post, tid, tool=tool, **extra))
        ms += 10
    send(spool, "PreToolUse", ms, tool_event("s-stats", "PreToolUse", "g-denied", tool="Grep"))
    batch = {
        "session_id": "s-stats",
        "tool_calls": [{"tool_name": "Grep", "tool_use_id": "g-denied", "tool_response": "denied"}],
    }
    send(spool, "PostToolBatch", ms + 500, batch)
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_name, calls, ok, failed, interrupted, denied, open, p50_ms, p95_ms, failure_rate"
        " FROM tool_stats ORDER BY tool_name",
    )
    assert [
        ("Glob", 1, 1, 0, 0, 0, 0, 5.0, 5.0, 0.0),
        ("Grep", 10, 6, 1, 1, 1, 1, 45.0, 100.0, 0.25),
        ("Task", 1, 0, 0, 0, 0, 1, None, None, None),
    ] == rows


def test_turns_main_one_turn_stopped_with_all_tool_calls(
    main_loaded: dict[str, datetime], db_url: str
) -> None:
    """main has one turn: UserPromptSubmit → Stop, counting all six tool calls (subagent's too)."""
    t = main_loaded
    rows = query(
        db_url,
        "SELECT prompt_id, started_at, ended_at, duration_ms, outcome, tool_calls, prompt_chars"
        " FROM turns WHERE claude_session_id = %s",
        MAIN,
    )
    duration = (t["27_Stop"] - t["03_UserPromptSubmit"]) / timedelta(milliseconds=1)
    assert [
        (
            MAIN_PROMPT,
            t["03_UserPromptSubmit"],
            t["27_Stop"],
            duration,
            "stop",
            6,
            len("do the thing"),
        )
    ] == rows


def test_turns_error_ends_in_stop_failure(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """A turn that ends in StopFailure has outcome stop_failure and no tool calls."""
    t = replay(spool, "error")
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT ended_at, outcome, tool_calls FROM turns WHERE claude_session_id = %s",
        ERROR,
    )
    assert [(t["05_StopFailure"], "stop_failure", 0)] == rows


def test_turns_tui_background_agent_calls_count_in_launching_turn(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Each prompt is its own turn ending at its own Stop; background subagent calls stay with their prompt."""
    t = replay(spool, "tui")
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT left(prompt_id, 8), ended_at, outcome, tool_calls FROM turns"
        " WHERE claude_session_id = %s ORDER BY started_at",
        TUI,
    )
    assert [
        ("f18126d9", t["26_Stop"], "stop", 6),
        ("a3d9320b", t["33_Stop"], "stop", 0),
    ] == rows


def test_turns_empty_stop_failure_closes_turn_and_open_turn_stays_open(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A StopFailure with empty stdin (no prompt_id) closes the turn it falls in; a turn with no end is open."""
    send(spool, "UserPromptSubmit", 0, {"session_id": "s-t", "prompt_id": "p-a", "prompt": "hi"})
    send(spool, "StopFailure", 40, None, CLAUDE_CODE_SESSION_ID="s-t")
    send(
        spool, "UserPromptSubmit", 100, {"session_id": "s-t", "prompt_id": "p-b", "prompt": "again"}
    )
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT prompt_id, ended_at, duration_ms, outcome, prompt_chars FROM turns ORDER BY started_at",
    )
    assert [("p-a", at(40), 40, "stop_failure", 2), ("p-b", None, None, "open", 5)] == rows


def test_slash_commands_expand_one_use(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """The expand scenario's /e2e-cmd is one use in one session, first = last = its expansion time."""
    t = replay(spool, "expand")
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT command_name, command_source, uses, sessions, first_used_at, last_used_at"
        " FROM slash_commands",
    )
    when = t["04_UserPromptExpansion"]
    assert [("e2e-cmd", "projectSettings", 1, 1, when, when)] == rows


def test_agent_timings_subagent_ends_at_subagent_stop(
    main_loaded: dict[str, datetime], db_url: str
) -> None:
    """The subagent runs SubagentStart → SubagentStop; the session runs to SessionEnd; events are counted per row."""
    t = main_loaded
    rows = query(
        db_url,
        "SELECT claude_agent_id, agent_type, status, started_at, ended_at, duration_ms, events,"
        " first_event_at, last_event_at FROM agent_timings WHERE sdk_session_id = %s"
        " ORDER BY claude_agent_id NULLS FIRST",
        MAIN,
    )
    sub_ms = (t["23_SubagentStop"] - t["19_SubagentStart"]) / timedelta(milliseconds=1)
    main_ms = (t["28_SessionEnd"] - t["01_SessionStart"]) / timedelta(milliseconds=1)
    assert [
        (None, None, "complete", t["01_SessionStart"], t["28_SessionEnd"], main_ms, 23,
         t["01_SessionStart"], t["28_SessionEnd"]),
        (MAIN_SUBAGENT, "general-purpose", "complete", t["19_SubagentStart"], t["23_SubagentStop"],
         sub_ms, 5, t["19_SubagentStart"], t["23_SubagentStop"]),
    ] == rows  # fmt: skip


def test_agent_timings_falls_back_to_subagent_stop_without_completed_at(
    main_loaded: dict[str, datetime], spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """When agents.completed_at is empty (a later event reopened the agent), ended_at is the SubagentStop time."""
    late = {"session_id": MAIN, "agent_id": MAIN_SUBAGENT, "agent_type": "general-purpose"}
    send(spool, "Notification", 500, late)
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT a.completed_at, t.ended_at, t.events, t.last_event_at FROM agent_timings t"
        " JOIN agents a ON a.id = t.agent_id WHERE t.claude_agent_id = %s",
        MAIN_SUBAGENT,
    )
    assert [(None, main_loaded["23_SubagentStop"], 6, at(500))] == rows
