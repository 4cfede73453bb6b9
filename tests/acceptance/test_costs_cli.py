"""Costs through the real commands: events point the daemon at transcripts; backfill imports history."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tests.acceptance.conftest import Env, cli, wait_for
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["scenarios"]
RECORDED_PROJECTS = "/tmp/ccrun/home/.claude/projects/-tmp-ccrun-work-"


def costs(env: Env) -> dict[str, Decimal]:
    with psycopg.connect(env.db_url) as conn:
        rows = conn.execute(
            "SELECT claude_session_id, cost_usd FROM claude_session_costs"
        ).fetchall()
    return {sid: Decimal(cost) for sid, cost in rows if cost is not None}


def ingest_scenarios(env: Env, scenarios: tuple[str, ...]) -> None:
    """The scenarios' hook events (their transcript paths pointed at copies below env's Claude
    config folder) and transcripts, ingested with `ingest --once`."""
    env.extra["CLAUDE_CONFIG_DIR"] = str(env.root)  # transcripts are read below its projects/
    projects = env.root / "projects"
    for scenario in scenarios:
        shutil.copytree(FIXTURES / "transcripts" / scenario, projects / scenario)
        for f in sorted((FIXTURES / "hooks" / "all" / scenario).iterdir()):
            payload = f.read_bytes().replace(
                f"{RECORDED_PROJECTS}{scenario}/".encode(), f"{projects / scenario}/".encode()
            )
            write_event(env.spool, payload, event=f.stem.split("_", 1)[1], fsync=False)
    done = cli(env, "ingest", "--once")
    assert 0 == done.returncode, done.stderr[-3000:]


def test_ingest_once_reads_transcripts_named_by_events(env: Env) -> None:
    """Hook events carry transcript_path; `ingest --once` reads those files (and subagents/) into costs."""
    ingest_scenarios(env, ("main", "perm", "extras"))
    expected = {
        EXPECTED[s]["session_id"]: Decimal(str(EXPECTED[s]["result"]["total_cost_usd"]))
        for s in ("main", "perm", "extras")
    }
    actual = costs(env)
    assert expected.keys() == actual.keys()
    for sid, cost in expected.items():
        assert abs(cost - actual[sid]) < Decimal("0.000001"), (sid, cost, actual[sid])


def test_backfill_twice_changes_nothing(env: Env, tmp_path: Path) -> None:
    """`session-db backfill DIR` imports every transcript; running it again adds and changes nothing."""
    folder = tmp_path / "history"
    shutil.copytree(FIXTURES / "transcripts", folder)
    first = cli(env, "backfill", str(folder))
    assert 0 == first.returncode, first.stderr[-3000:]
    with psycopg.connect(env.db_url) as conn:
        before = conn.execute("SELECT * FROM token_usage ORDER BY id").fetchall()
        offsets = conn.execute(
            "SELECT path, byte_offset FROM transcript_files ORDER BY path"
        ).fetchall()
    second = cli(env, "backfill", str(folder))
    assert 0 == second.returncode, second.stderr[-3000:]
    with psycopg.connect(env.db_url) as conn:
        assert before == conn.execute("SELECT * FROM token_usage ORDER BY id").fetchall()
        assert (
            offsets
            == conn.execute(
                "SELECT path, byte_offset FROM transcript_files ORDER BY path"
            ).fetchall()
        )
    assert "responses: 0 seen, 0 new, 0 merged" in second.stdout
    # main and compact are one session: its cost is the main run's (the compaction call is in no transcript).
    main_sid = EXPECTED["main"]["session_id"]
    assert abs(Decimal("0.0893169") - costs(env)[main_sid]) < Decimal("0.000001")
    assert "files" in first.stdout


def test_prices_cli_lists_and_adds_effective_dated_rows(env: Env) -> None:
    """`prices` lists the seeded table; `prices set` adds a row and copies unset fields from the latest one."""
    listed = cli(env, "prices")
    assert 0 == listed.returncode, listed.stderr[-2000:]
    assert "claude-sonnet-4-5 " in listed.stdout
    added = cli(
        env, "prices", "set", "claude-sonnet-4-5", "--input", "4", "--effective-from", "2027-01-01"
    )
    assert 0 == added.returncode, added.stderr[-2000:]
    with psycopg.connect(env.db_url) as conn:
        rows = conn.execute(
            "SELECT effective_from::text, input_usd_per_mtok, output_usd_per_mtok, long_context_threshold_tokens"
            " FROM prices WHERE model_prefix = 'claude-sonnet-4-5' ORDER BY effective_from"
        ).fetchall()
    assert ["-infinity", "2027-01-01 00:00:00+00"] == [r[0] for r in rows]
    assert [(Decimal(3), Decimal(15), 200000), (Decimal(4), Decimal(15), 200000)] == [
        r[1:] for r in rows
    ]
    refused = cli(env, "prices", "set", "claude-new-model", "--input", "1")
    assert 78 == refused.returncode


def test_daemon_reads_transcript_when_a_stop_arrives(env: Env, start_daemon: Any) -> None:
    """A Stop/SubagentStop/SessionEnd event makes the running daemon read that session's transcripts at
    once, without waiting for the periodic scan (set to a minute here)."""
    env.extra["CLAUDE_CONFIG_DIR"] = str(env.root)  # transcripts are read below its projects/
    daemon = start_daemon(SESSION_DB_SCAN_INTERVAL_S="60")
    daemon.wait_logged("database_up")
    projects = env.root / "projects"
    shutil.copytree(FIXTURES / "transcripts" / "main", projects / "main")
    for f in sorted((FIXTURES / "hooks" / "all" / "main").iterdir()):
        payload = f.read_bytes().replace(
            f"{RECORDED_PROJECTS}main/".encode(), f"{projects / 'main'}/".encode()
        )
        write_event(env.spool, payload, event=f.stem.split("_", 1)[1], fsync=False)
    sid = EXPECTED["main"]["session_id"]
    wait_for(
        lambda: sid in costs(env) and costs(env)[sid] > 0,
        timeout=20,
        what="transcript read after Stop",
    )
    assert abs(Decimal("0.0893169") - costs(env)[sid]) < Decimal("0.000001")
    assert 0 == daemon.stop()
