"""A small realistic workload for a spool: one recorded session's events, its transcripts, a state.json.

Enough to make the daemon write every table it writes (agent_logs, agents, sessions,
watch_roots, transcript_files, token_usage, daemon_heartbeats), so a test that runs it under a
restricted role or over TLS exercises every statement the daemon has.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event

SCENARIO = "main"
RECORDED_PROJECTS = "/tmp/ccrun/home/.claude/projects/-tmp-ccrun-work-"
SESSION_ID = json.loads((FIXTURES / "expected.json").read_text())["scenarios"][SCENARIO][
    "session_id"
]
SLUG = "add-login"

# Tables the daemon writes, each of which the workload gives at least one row.
WRITTEN_TABLES = (
    "agent_logs",
    "agents",
    "sessions",
    "watch_roots",
    "transcript_files",
    "token_usage",
    "daemon_heartbeats",
)


@dataclass(frozen=True)
class Workload:
    """What was spooled: the event names (their event_uid) and the project folder."""

    uids: frozenset[str]
    project: Path


def spool_workload(root: Path, spool: Path, *, limit: int | None = None) -> Workload:
    """Copy the transcripts under root, spool the scenario's events (at most `limit`), write a state.json."""
    projects = root / "projects"
    shutil.copytree(FIXTURES / "transcripts" / SCENARIO, projects / SCENARIO, dirs_exist_ok=True)
    project = root / "project"
    uids = set()
    for f in sorted((FIXTURES / "hooks" / "all" / SCENARIO).iterdir())[:limit]:
        payload = f.read_bytes().replace(
            f"{RECORDED_PROJECTS}{SCENARIO}/".encode(), f"{projects / SCENARIO}/".encode()
        )
        uids.add(
            write_event(
                spool,
                payload,
                event=f.stem.split("_", 1)[1],
                env={"CLAUDE_PROJECT_DIR": str(project)},
                fsync=False,
            )
        )
    state = project / "agents" / "sessions" / SLUG / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(
        json.dumps(
            {
                "slug": SLUG,
                "title": "Add a login page",
                "status": "build",
                "session_type": "full",
                "total_cost": 0.09,
                "agents": [
                    {"agent_type": "builder", "sdk_session_id": SESSION_ID, "status": "executing"}
                ],
            }
        )
    )
    return Workload(frozenset(uids), project)
