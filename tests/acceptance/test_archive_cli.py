"""The conversation archive through the real commands: backfill an old machine's projects
folder, then `search` and `show` read it back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import psycopg

from daemon.errors import EX_SOFTWARE
from tests.acceptance.conftest import Env, cli
from tests.conftest import FIXTURES

MAIN_SID = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
SUBAGENT = "a4559b86e76dea3ec"
ROLES = ("user", "assistant", "system", "attachment")


def backfilled(env: Env) -> Path:
    """The main scenario in ~/old-laptop/.claude/projects, backfilled."""
    projects = env.root / "old-laptop" / ".claude" / "projects"
    shutil.copytree(FIXTURES / "transcripts" / "main", projects / "-tmp-ccrun-work-main")
    done = cli(env, "backfill", str(projects))
    assert 0 == done.returncode, done.stderr[-3000:]
    assert "messages (archive = full)" in done.stdout
    return projects / "-tmp-ccrun-work-main"


def uuids(path: Path) -> list[str]:
    """The conversation entries' uuids in line order (the test's own reading)."""
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    return [e["uuid"] for e in lines if "uuid" in e and e["type"] in ROLES]


def test_archive_search_finds_a_word_of_a_subagent_reply(env: Env) -> None:
    """`search` finds words of a subagent's reply (and of its task) with session, agent, time,
    project, and the words highlighted in the snippet; --role, --session, --until narrow it."""
    backfilled(env)
    done = cli(env, "search", "greeting", "--json")
    assert 0 == done.returncode, done.stderr[-3000:]
    hits = json.loads(done.stdout)
    # "greeting" is in the subagent's task: the main thread's Agent call and the subagent's
    # own first prompt.
    assert [(None, "assistant", "tool_use"), (SUBAGENT, "user", "prompt")] == sorted(
        ((h["claude_agent_id"], h["role"], h["entry_type"]) for h in hits),
        key=lambda k: k[0] or "",
    )
    assert all(h["claude_session_id"] == MAIN_SID for h in hits)
    assert all("«greeting»" in h["snippet"] for h in hits)
    assert all(h["project"] == "/tmp/ccrun/work/main" and h["occurred_at"] for h in hits)

    done = cli(env, "search", "from the subagent", "--role", "assistant", "--json")
    hits = {(h["claude_agent_id"], h["entry_type"]): h for h in json.loads(done.stdout)}
    assert "Hi from the «subagent»!" == hits[SUBAGENT, "text"]["snippet"]

    plain = cli(env, "search", "hi subagent", "--role", "assistant", "--session", MAIN_SID[:8])
    assert 0 == plain.returncode, plain.stderr[-3000:]
    assert f"{MAIN_SID} agent {SUBAGENT}  /tmp/ccrun/work/main  assistant/text" in plain.stdout
    assert "**Hi** from the **subagent**" in plain.stdout
    none = cli(
        env, "search", "hi subagent", "--role", "assistant", "--until", "2026-01-01", "--json"
    )
    assert [] == json.loads(none.stdout)


def test_archive_show_prints_the_main_session_in_order(env: Env) -> None:
    """`show` prints the main thread in transcript order with the subagent nested under the
    Agent call that started it, tool calls folded to one line, and the turn's cost line."""
    folder = backfilled(env)
    done = cli(env, "show", MAIN_SID[:8], "--format", "json", "--full")
    assert 0 == done.returncode, done.stderr[-3000:]
    conv = json.loads(done.stdout)
    assert MAIN_SID == conv["claude_session_id"]
    assert uuids(folder / f"{MAIN_SID}.jsonl") == [m["uuid"] for m in conv["messages"]]
    agent_call = [m for m in conv["messages"] if m.get("subagent")]
    assert ["Agent"] == [m["tool_name"] for m in agent_call]
    sub = folder / MAIN_SID / "subagents" / f"agent-{SUBAGENT}.jsonl"
    assert uuids(sub) == [m["uuid"] for m in agent_call[0]["subagent"]["messages"]]
    assert {} == conv["unlinked_subagents"]

    text = cli(env, "show", MAIN_SID).stdout.splitlines()
    expected_order = [
        "user: do the thing",
        "assistant (thinking): The script says: run echo hello first.",
        "assistant: I'll start by running a shell command.",
        "→ Bash: ",
        "← result: hello",
        "→ Write: ",
        "→ Agent: ",
        "┆ subagent " + SUBAGENT,
        "assistant: Hi from the subagent!",
        "← result: ",
        "assistant: All done:",
        "── turn 3e855eb2: ",
    ]
    at = 0
    for want in expected_order:
        while at < len(text) and want not in text[at]:
            at += 1
        assert at < len(text), f"{want!r} missing or out of order in:\n" + "\n".join(text)
    nested = [line for line in text if "Hi from the subagent!" in line]
    assert all(line.startswith("  ┆ ") for line in nested)
    assert not [line for line in text if "attachment" in line]  # folded view leaves them out
    assert 1 == sum("$" in line for line in text if line.startswith("── turn"))


def test_archive_prune_removes_messages_by_month(env: Env) -> None:
    """The backfilled archive (the fixture's entries are from 2026-11-23, before the first monthly
    partition of messages) waits in messages_default, which `prune --older-than` reports and
    keeps; `maintain --split-default` gives it its month, and prune then drops that month's
    partition with every row (--dry-run only counts them); token usage stays."""
    backfilled(env)
    with psycopg.connect(env.db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM messages").fetchone()
    assert rows is not None
    assert rows[0] > 0
    kept = cli(env, "prune", "--older-than", "1d")
    assert 0 == kept.returncode, kept.stderr[-3000:]
    assert "prune: dropped 0 partitions, 0 rows of messages older than" in kept.stdout
    assert f"note: {rows[0]} rows older than the cutoff are in messages_default" in kept.stdout
    split = cli(env, "maintain", "--split-default")
    assert 0 == split.returncode, split.stderr[-3000:]
    assert (
        f"created messages_2026_11 ({rows[0]} rows moved in from messages_default)" in split.stdout
    )
    dry = cli(env, "prune", "--older-than", "1d", "--dry-run")
    assert 0 == dry.returncode, dry.stderr[-3000:]
    assert f"would drop messages_2026_11  2026-11-01 .. 2026-12-01  {rows[0]} rows" in dry.stdout
    done = cli(env, "prune", "--older-than", "1d")
    assert 0 == done.returncode, done.stderr[-3000:]
    assert f"dropped messages_2026_11  2026-11-01 .. 2026-12-01  {rows[0]} rows" in done.stdout
    assert f"prune: dropped 1 partitions, {rows[0]} rows of messages older than" in done.stdout
    with psycopg.connect(env.db_url) as conn:
        assert (0, 7) == conn.execute(
            "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM token_usage)"
        ).fetchone()


def test_archive_backfill_writer_failure_exits_nonzero_and_a_rerun_inserts_once(env: Env) -> None:
    """The transaction the writer thread commits is refused (a CHECK on one entry's uuid): the
    backfill exits non-zero with one `fatal` line naming the constraint, and no row nor offset
    is stored. Once the constraint is gone, a second backfill stores every entry once."""
    projects = env.root / "old-laptop" / ".claude" / "projects"
    folder = projects / "-tmp-ccrun-work-main"
    shutil.copytree(FIXTURES / "transcripts" / "main", folder)
    main = next(folder.glob("*.jsonl"))
    refused = uuids(main)[-1]
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(
            f"ALTER TABLE messages ADD CONSTRAINT test_refused CHECK (uuid <> '{refused}')"
        )
    failed = cli(env, "backfill", str(projects))
    assert EX_SOFTWARE == failed.returncode, failed.stderr[-3000:]
    fatal = [json.loads(x) for x in failed.stderr.splitlines() if '"fatal"' in x]
    assert 1 == len(fatal), failed.stderr[-3000:]
    assert "test_refused" in fatal[0]["error"]
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM token_usage),"
            " (SELECT coalesce(sum(byte_offset), 0) FROM transcript_files)"
        ).fetchone()
        assert (0, 0, 0) == stored
        conn.execute("ALTER TABLE messages DROP CONSTRAINT test_refused")
    done = cli(env, "backfill", str(projects))
    assert 0 == done.returncode, done.stderr[-3000:]
    entries = [u for p in sorted(folder.rglob("*.jsonl")) for u in uuids(p)]
    with psycopg.connect(env.db_url) as conn:
        rows = [r[0] for r in conn.execute("SELECT uuid FROM messages")]
    assert sorted(set(entries)) == sorted(rows)
