"""state.json → sessions/agents rows: convergence, phases, invalid files, linking."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import psycopg

from daemon.ingest import Ingestor
from daemon.spool import Spool
from daemon.workflows import SessionTracker
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event

MAIN_SID = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def write_state(root: Path, slug: str, state: dict[str, Any] | bytes) -> Path:
    d = root / "agents" / "sessions" / slug
    d.mkdir(parents=True, exist_ok=True)
    path = d / "state.json"
    path.write_bytes(state if isinstance(state, bytes) else json.dumps(state).encode())
    return path


STATE = {
    "slug": "add-login",
    "title": "Add a login page",
    "status": "plan",
    "session_type": "full",
    "working_dir": "/src/app",
    "total_cost": 1.25,
    "owner": "kept in state",
    "agents": [
        {"agent_type": "planner", "sdk_session_id": MAIN_SID, "model": "claude-sonnet-4-5-20250929",
         "model_alias": "sonnet", "status": "executing", "checkpoint_id": "cp-1",
         "started_at": "2026-11-23T10:00:00Z"},
        {"id": "reviewer-1", "agent_type": "reviewer", "status": "pending"},
    ],
}  # fmt: skip


def test_sessions_state_file_becomes_rows(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """A state.json gives one sessions row (unmapped keys kept in state) and one agents row per entry."""
    path = write_state(tmp_path, "folder-name", STATE)
    tracker.sync([tmp_path])
    ((slug, title, status, stype, total, state, sha, state_path),) = query(
        db_url,
        "SELECT slug, title, status, session_type, total_cost, state, state_sha256, state_path FROM sessions",
    )
    assert ("add-login", "Add a login page", "plan", "full") == (slug, title, status, stype)
    assert "1.25" == str(total)
    assert "kept in state" == state["owner"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert str(path) == state_path
    agents = query(
        db_url,
        "SELECT agent_type, sdk_session_id, model_alias, status, checkpoint_id FROM agents ORDER BY agent_type",
    )
    assert [
        ("planner", MAIN_SID, "sonnet", "executing", "cp-1"),
        ("reviewer", None, None, "pending", None),
    ] == agents


def test_sessions_phase_rows_once_per_observed_transition(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """Each observed status change is one phase row; re-reading the same content adds nothing."""
    for status in ("spec", "plan", "plan", "build"):
        write_state(tmp_path, "wf", {**STATE, "status": status, "n": status})
        tracker.sync([tmp_path])
        tracker.sync([tmp_path])
    rows = query(
        db_url,
        "SELECT payload->>'from', payload->>'to', event_type FROM agent_logs"
        " WHERE event_category = 'phase' ORDER BY id",
    )
    assert [(None, "spec", "spec"), ("spec", "plan", "plan"), ("plan", "build", "build")] == rows


def test_sessions_invalid_file_keeps_last_good_then_converges(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """A partial state.json (written in place) keeps the last good row and converges when complete."""
    write_state(tmp_path, "wf", STATE)
    tracker.sync([tmp_path])
    final = {**STATE, "status": "build"}
    text = json.dumps(final).encode()
    path = write_state(tmp_path, "wf", text[: len(text) // 2])
    tracker.sync([tmp_path])
    assert [("plan",)] == query(db_url, "SELECT status FROM sessions")
    path.write_bytes(text)
    tracker.sync([tmp_path])
    assert [("build", hashlib.sha256(text).hexdigest())] == query(
        db_url, "SELECT status, state_sha256 FROM sessions"
    )


def test_sessions_unknown_status_kept_in_state(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """A status outside the CHECK list does not fail the sync: the column keeps its value, state has it."""
    write_state(tmp_path, "wf", {**STATE, "status": "dreaming"})
    tracker.sync([tmp_path])
    assert [("created", "dreaming")] == query(
        db_url, "SELECT status, state->>'status' FROM sessions"
    )


def test_sessions_phase_alias_and_folder_slug(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """`phase` is accepted for status, and the folder name is the slug when the file has none."""
    write_state(tmp_path, "from-folder", {"phase": "docs"})
    tracker.sync([tmp_path / "agents" / "sessions"])
    assert [("from-folder", "docs")] == query(db_url, "SELECT slug, status FROM sessions")


def test_sessions_deleted_folder_keeps_rows(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """Removing a session folder never deletes its rows."""
    path = write_state(tmp_path, "wf", STATE)
    tracker.sync([tmp_path])
    path.unlink()
    path.parent.rmdir()
    tracker.sync([tmp_path])
    assert [(1,)] == query(db_url, "SELECT count(*) FROM sessions")
    assert [(2,)] == query(db_url, "SELECT count(*) FROM agents")


def test_sessions_state_links_earlier_events(
    tracker: SessionTracker, ingestor: Ingestor, spool: Spool, db_url: str, tmp_path: Path
) -> None:
    """Events of a Claude session ingested before state.json named it are back-filled with the session."""
    for f in sorted((FIXTURES / "hooks" / "all" / "main").iterdir()):
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
    ingestor.drain()
    write_state(tmp_path, "wf", STATE)
    tracker.sync([tmp_path])
    rows = query(
        db_url,
        "SELECT count(*) FILTER (WHERE l.session_id = s.id), count(*) FROM agent_logs l, sessions s"
        " WHERE l.event_category = 'hook'",
    )
    assert [(28, 28)] == rows  # the subagent's events too: it belongs to its parent's workflow
    # state.json wins for the workflow fields of the agent that events created first.
    assert [("planner", "executing", "state")] == query(
        db_url,
        "SELECT agent_type, status, status_source FROM agents WHERE sdk_session_id = %s AND claude_agent_id IS NULL",
        MAIN_SID,
    )


def test_sessions_nul_and_huge_numbers_still_converge(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """A NUL in a mapped text field and an out-of-range total_cost do not block the row: text is
    NUL-escaped, the number stays in `state` only, and the stored sha256 is the file's."""
    raw = b'{"status": "plan", "title": "a\\u0000b", "total_cost": "1e999999", "agents": [{"model": "m\\u0000"}]}'
    path = write_state(tmp_path, "wf", raw)
    tracker.sync([tmp_path])
    rows = query(db_url, "SELECT title, total_cost, state_sha256 FROM sessions")
    assert [("a\u24000b", None, hashlib.sha256(path.read_bytes()).hexdigest())] == rows
    assert [("m\u24000",)] == query(db_url, "SELECT model FROM agents")


OTHER_SID = "7d1b1c8e-0000-4000-8000-000000000001"


def agent_rows(url: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT agent_type, sdk_session_id, status, status_source, session_id IS NOT NULL"
        " FROM agents ORDER BY sdk_session_id NULLS FIRST, agent_type",
    )


def test_sessions_agent_names_its_claude_session_later(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """An entry first written without sdk_session_id, then with it (the usual orchestrator order:
    pending, then started), stays one agents row that gains the session; the file converges."""
    entry = {"id": "builder-1", "agent_type": "builder", "status": "pending"}
    write_state(tmp_path, "wf", {"status": "plan", "agents": [entry]})
    tracker.sync([tmp_path])
    started = {**entry, "status": "executing", "sdk_session_id": MAIN_SID}
    path = write_state(tmp_path, "wf", {"status": "build", "agents": [started]})
    tracker.sync([tmp_path])
    assert [("builder", MAIN_SID, "executing", "state", True)] == agent_rows(db_url)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(sha,)] == query(db_url, "SELECT state_sha256 FROM sessions")


def test_sessions_agent_placeholder_merges_into_event_row(
    tracker: SessionTracker, ingestor: Ingestor, spool: Spool, db_url: str, tmp_path: Path
) -> None:
    """When events made the Claude session's row before state.json named it, that row becomes
    the entry's and the placeholder is detached: the workflow lists one main agent, no phantom
    'pending' one (the placeholder stays, without a session: the daemon deletes nothing)."""
    entry = {"id": "builder-1", "agent_type": "builder", "status": "pending"}
    write_state(tmp_path, "wf", {"status": "plan", "agents": [entry]})
    tracker.sync([tmp_path])
    for f in sorted((FIXTURES / "hooks" / "all" / "main").iterdir()):
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
    ingestor.drain()
    started = {**entry, "status": "executing", "sdk_session_id": MAIN_SID}
    write_state(tmp_path, "wf", {"status": "build", "agents": [started]})
    tracker.sync([tmp_path])
    mains = query(db_url, "SELECT agent_type, sdk_session_id, status FROM agents"
                  " WHERE claude_agent_id IS NULL AND session_id IS NOT NULL")  # fmt: skip
    assert [("builder", MAIN_SID, "executing")] == mains
    detached = query(db_url, "SELECT status FROM agents WHERE session_id IS NULL")
    assert [("pending",)] == detached


def test_sessions_agent_moves_to_another_claude_session(
    tracker: SessionTracker, db_url: str, tmp_path: Path
) -> None:
    """An entry whose sdk_session_id changes (the agent restarted in a new Claude session), and
    a file listing one id twice with two sessions, are applied: one row per Claude session."""
    entry = {"id": "builder-1", "agent_type": "builder", "sdk_session_id": MAIN_SID}
    write_state(tmp_path, "wf", {"status": "plan", "agents": [entry]})
    tracker.sync([tmp_path])
    moved = {**entry, "sdk_session_id": OTHER_SID}
    path = write_state(tmp_path, "wf", {"status": "build", "agents": [entry, moved]})
    tracker.sync([tmp_path])
    sids = query(db_url, "SELECT sdk_session_id FROM agents ORDER BY 1")
    assert [(MAIN_SID,), (OTHER_SID,)] == sids
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(sha, "build")] == query(db_url, "SELECT state_sha256, status FROM sessions")
