"""Claude Code 2.1.332's hook additions through the ingest path (docs/design/claude-code.md §17):
PreSkillShellCommand never becomes a tool call, and the newer payload fields are stored whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon import config, wiring
from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.integration.conftest import HOST
from tests.integration.test_timing_views import query, send, tool_event

SESSION = "s-2-1-332"


def skill_shell(tool_use_id: str, command: str = "git status") -> dict[str, Any]:
    """A PreSkillShellCommand payload as 2.1.332 sends it (its tool_use_id names no tool call)."""
    return {
        "session_id": SESSION,
        "prompt_id": "p-1",
        "tool_name": "Bash",
        "tool_input": {"command": command},
        "tool_use_id": tool_use_id,
        "command_name": "commit",
        "command_source": "projectSettings",
        "invoked_by": "user",
    }


def test_pre_skill_shell_command_never_pairs_into_tool_calls(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """PreSkillShellCommand events are stored, but tool_calls holds only the real call, even when
    a skill command's tool_use_id equals that call's; turns count one tool call."""
    send(spool, "UserPromptSubmit", 0, {"session_id": SESSION, "prompt_id": "p-1", "prompt": "x"})
    send(spool, "PreSkillShellCommand", 5, skill_shell("toolu_skill_only"))
    send(spool, "PreToolUse", 10, tool_event(SESSION, "PreToolUse", "toolu_real"))
    send(spool, "PreSkillShellCommand", 12, skill_shell("toolu_real", "echo collide"))
    send(
        spool,
        "PostToolUse",
        20,
        tool_event(SESSION, "PostToolUse", "toolu_real", duration_ms=7, tool_response={}),
    )
    send(spool, "Stop", 30, {"session_id": SESSION, "prompt_id": "p-1"})
    ingestor.drain()

    stored = query(
        db_url,
        "SELECT tool_use_id FROM agent_logs WHERE event_type = 'PreSkillShellCommand' ORDER BY 1",
    )
    assert [("toolu_real",), ("toolu_skill_only",)] == stored
    calls = query(
        db_url,
        "SELECT c.tool_use_id, c.outcome, c.duration_ms, l.event_type FROM tool_calls c"
        " JOIN agent_logs l ON l.id = c.pre_log_id",
    )
    assert [("toolu_real", "ok", 7, "PreToolUse")] == calls
    assert [(1,)] == query(db_url, "SELECT tool_calls FROM turns WHERE prompt_id = 'p-1'")
    assert [(1,)] == query(db_url, "SELECT count(*) FROM tool_stats")


def test_newer_payload_fields_survive_default_redaction_and_field_cap(
    tmp_path: Path, sink: PostgresSink, db_url: str
) -> None:
    """With the daemon's default settings (redaction on, default field cap), UserPromptSubmit
    `source`/`session_title`, `mcp_server` on tool events and PreSkillShellCommand's fields are
    stored exactly as sent."""
    defaults = config.Settings(
        url=db_url,
        state_dir=tmp_path / "state",
        spool=tmp_path / "spool2",
        data_dir=tmp_path / "data",
        watch=(),
        host=HOST,
    )
    spool = Spool(defaults.spool)
    spool.ensure()
    ingestor = Ingestor(
        spool,
        sink,
        host=HOST,
        batch_max_files=defaults.batch_max_files,
        batch_max_bytes=defaults.batch_max_bytes,
        foreign_grace_s=0.0,
        field_cap_bytes=defaults.field_cap_bytes,
        redactor=wiring.redactor(defaults),
    )
    mcp = {"name": "github", "source": "user"}
    sent: dict[str, dict[str, Any]] = {
        "UserPromptSubmit": {
            "session_id": SESSION,
            "prompt_id": "p-2",
            "prompt": "summarise the repo",
            "source": "loop_wakeup",
            "session_title": "Summarise the session-db repo",
        },
        "PreToolUse": tool_event(
            SESSION, "PreToolUse", "toolu_mcp", tool="mcp__github__search", mcp_server=mcp
        ),
        "PostToolUse": tool_event(
            SESSION,
            "PostToolUse",
            "toolu_mcp",
            tool="mcp__github__search",
            mcp_server=mcp,
            tool_response={"items": []},
            duration_ms=3,
        ),
        "PreSkillShellCommand": skill_shell("toolu_skill_2"),
    }
    for ms, (event, payload) in enumerate(sent.items()):
        send(spool, event, ms, payload)
    ingestor.drain()
    stored = dict(
        query(
            db_url,
            "SELECT event_type, payload FROM agent_logs WHERE claude_session_id = %s",
            SESSION,
        )
    )
    assert {e: {"hook_event_name": e, **p} for e, p in sent.items()} == stored
    assert [("mcp__github__search", "ok")] == query(
        db_url, "SELECT tool_name, outcome FROM tool_calls"
    )
