"""Spool → PostgreSQL against a real server: rows, agents, idempotency, bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from daemon.events import unescape_nul
from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event, write_raw

ALL = FIXTURES / "hooks" / "all"


def replay(spool: Spool, scenario: str, env: dict[str, str] | None = None) -> list[str]:
    names = []
    for f in sorted((ALL / scenario).iterdir()):
        names.append(
            write_event(
                spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], env=env, fsync=False
            )
        )
    return names


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def quarantined(spool: Spool) -> dict[str, str]:
    return {
        n: json.loads((spool.quarantine / (n + ".reason.json")).read_text())["reason"]
        for n in spool.quarantined()
    }


def test_ingest_fixture_scenarios_one_row_per_event(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Every payload of every recorded scenario becomes exactly one row, with its event type."""
    expected: Counter[str] = Counter()
    uids = []
    for scenario in sorted(p.name for p in ALL.iterdir()):
        uids += replay(spool, scenario)
        expected.update(f.stem.split("_", 1)[1] for f in (ALL / scenario).iterdir())
    stats = ingestor.drain()
    assert len(uids) == stats.inserted
    assert [] == list(spool.new.iterdir())
    rows = query(db_url, "SELECT event_type, count(*) FROM agent_logs GROUP BY 1")
    assert expected == Counter(dict(rows))
    assert sorted(uids) == sorted(r[0] for r in query(db_url, "SELECT event_uid FROM agent_logs"))


def test_ingest_second_pass_adds_nothing(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """Delivering the same spool files twice (a crash after COMMIT) adds no row."""
    names = replay(spool, "main")
    copies = {n: (spool.new / n).read_bytes() for n in names}
    first = ingestor.drain()
    for n, data in copies.items():
        write_raw(spool.root, data, name=n)
    second = ingestor.drain()
    assert (len(names), 0) == (first.inserted, first.duplicates)
    assert (0, len(names)) == (second.inserted, second.duplicates)
    assert [(len(names), len(names))] == query(
        db_url, "SELECT count(*), count(DISTINCT event_uid) FROM agent_logs"
    )


def test_ingest_agents_for_session_and_subagent(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A Claude Code session gets one agents row, its subagent a child row, and events link to them."""
    replay(spool, "main")
    ingestor.drain()
    sid = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
    agents = query(
        db_url,
        "SELECT a.claude_agent_id, a.agent_type, a.status,"
        " p.claude_agent_id IS NULL AND p.sdk_session_id = a.sdk_session_id"
        " FROM agents a LEFT JOIN agents p ON p.id = a.parent_agent_id"
        " WHERE a.sdk_session_id = %s ORDER BY 1 NULLS FIRST",
        sid,
    )
    assert [
        (None, None, "complete", None),
        ("a4559b86e76dea3ec", "general-purpose", "complete", True),
    ] == agents
    unlinked = query(db_url, "SELECT count(*) FROM agent_logs WHERE agent_id IS NULL")
    assert [(0,)] == unlinked
    sub_events = query(
        db_url,
        "SELECT l.event_type FROM agent_logs l JOIN agents a ON a.id = l.agent_id"
        " WHERE a.claude_agent_id = 'a4559b86e76dea3ec' ORDER BY l.occurred_at",
    )
    assert ["SubagentStart", "PreToolUse", "PostToolUse", "PostToolBatch", "SubagentStop"] == [
        r[0] for r in sub_events
    ]


def test_ingest_tool_use_ids_pair_pre_and_post(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Each tool_use_id in the main scenario has its PreToolUse and exactly one outcome event."""
    replay(spool, "main")
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT tool_use_id, array_agg(event_type ORDER BY occurred_at) FROM agent_logs"
        " WHERE tool_use_id IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    pairs = {r[0]: r[1] for r in rows}
    assert {
        "toolu_e2e_01_bash": ["PreToolUse", "PostToolUse"],
        "toolu_e2e_02_write": ["PreToolUse", "PostToolUse"],
        "toolu_e2e_03_bashfail": ["PreToolUse", "PostToolUseFailure"],
        "toolu_e2e_03_read": ["PreToolUse", "PostToolUse"],
        "toolu_e2e_04_agent": ["PreToolUse", "PostToolUse"],
        "toolu_e2e_sub_01_bash": ["PreToolUse", "PostToolUse"],
    } == pairs


def test_ingest_empty_payload_is_a_row(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """An empty stdin (seen on StopFailure) becomes a row from the argument and the environment."""
    uid = write_event(
        spool.root, b"", event="StopFailure", env={"CLAUDE_CODE_SESSION_ID": "sess-empty"}
    )
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT event_type, claude_session_id, payload, agent_id IS NOT NULL FROM agent_logs WHERE event_uid = %s",
        uid,
    )
    assert [("StopFailure", "sess-empty", None, True)] == rows


def test_ingest_nul_is_stored_escaped_not_quarantined(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A payload with \\u0000 lands as a row; unescaping the stored value gives the original back."""
    original = {"session_id": "s-nul", "tool_response": {"stdout": "a\x00b\u2400c"}}
    raw = orjson.dumps(original)
    uid = write_event(spool.root, raw, event="PostToolUse")
    ingestor.drain()
    ((payload, transforms, size),) = query(
        db_url,
        "SELECT payload, transforms, payload_bytes FROM agent_logs WHERE event_uid = %s",
        uid,
    )
    assert original == unescape_nul(payload)
    assert (["nul_escaped"], len(raw)) == (transforms, size)
    assert {} == quarantined(spool)


def test_ingest_bad_files_quarantined_with_reason_rest_lands(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Unparseable files go to quarantine with a reason and never block the good ones."""
    good = replay(spool, "expand")
    bad = {
        write_event(spool.root, b"{not json", event="PostToolUse"): "json_decode",
        write_event(spool.root, b"[1, 2]", event="PostToolUse"): "not_an_object",
        write_event(spool.root, b'{"a": "\\ud800"}', event="PostToolUse"): "json_decode",
        write_event(spool.root, b'{"a": "\xff"}', event="PostToolUse"): "json_decode",
        write_raw(spool.root, b"session-db-spool: 1\nreceived-ns: 12"): "truncated_header",
        write_raw(spool.root, b"garbage from elsewhere"): "json_decode",
    }
    stats = ingestor.drain()
    assert len(good) == stats.inserted
    assert bad == quarantined(spool)
    assert [] == list(spool.new.iterdir())


def test_ingest_poison_row_bisected_rest_commits(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A row the database rejects (CHECK violation) is quarantined alone; its batch neighbours commit."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "ALTER TABLE agent_logs ADD CONSTRAINT test_no_poison CHECK (tool_name IS DISTINCT FROM 'poison')"
        )
    good = replay(spool, "main")
    poison = write_event(
        spool.root, b'{"session_id": "p", "tool_name": "poison"}', event="PreToolUse"
    )
    stats = ingestor.drain()
    assert (len(good), 1) == (stats.inserted, stats.quarantined)
    assert {poison: "db_rejected"} == quarantined(spool)
    sidecar = json.loads((spool.quarantine / (poison + ".reason.json")).read_text())
    assert "23514" == sidecar["sqlstate"]


def test_ingest_unknown_error_retried_then_isolated(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """An unclassified error is retried a bounded number of times, then bisected to the one bad row."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.tool_name = 'boom' THEN RAISE EXCEPTION 'boom' USING ERRCODE = 'XX123'; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER test_boom BEFORE INSERT ON agent_logs FOR EACH ROW EXECUTE FUNCTION test_boom()"
        )
    good = replay(spool, "expand")
    boom = write_event(spool.root, b'{"session_id": "b", "tool_name": "boom"}', event="PreToolUse")
    stats = ingestor.drain()
    assert (len(good), 1) == (stats.inserted, stats.quarantined)
    assert {boom: "db_rejected"} == quarantined(spool)


def test_ingest_workflow_env_links_agent_and_backfills(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """Events that arrived before SESSION_DB_SESSION named the workflow get linked when it does."""
    replay(spool, "expand")
    ingestor.drain()
    assert [(0,)] == query(db_url, "SELECT count(*) FROM agent_logs WHERE session_id IS NOT NULL")
    payload = (ALL / "expand" / "06_Stop.json").read_bytes()
    write_event(
        spool.root,
        payload,
        event="Stop",
        env={"SESSION_DB_SESSION": "wf-1", "SESSION_DB_AGENT_TYPE": "builder"},
    )
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT count(*), count(l.session_id), min(s.slug), min(a.agent_type) FROM agent_logs l"
        " JOIN agents a ON a.id = l.agent_id LEFT JOIN sessions s ON s.id = l.session_id",
    )
    assert [(8, 8, "wf-1", "builder")] == rows


def test_ingest_subagent_inherits_parent_workflow(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A subagent whose parent belongs to a workflow session belongs to it too, with its events."""
    env = {"SESSION_DB_SESSION": "wf-2"}
    for f in sorted((ALL / "main").iterdir()):
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], env=env, fsync=False)
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT a.claude_agent_id IS NULL, count(*), count(l.session_id) FROM agent_logs l"
        " JOIN agents a ON a.id = l.agent_id GROUP BY 1 ORDER BY 1",
    )
    assert [(False, 5, 5), (True, 23, 23)] == rows


def test_ingest_project_dir_becomes_watch_root(
    spool: Spool, ingestor: Ingestor, db_url: str, tmp_path: Path
) -> None:
    """CLAUDE_PROJECT_DIR seen in an event is persisted as a session root for this host."""
    replay(spool, "expand", env={"CLAUDE_PROJECT_DIR": str(tmp_path / "proj")})
    ingestor.drain()
    rows = query(db_url, "SELECT host, path, source FROM watch_roots")
    assert [("test-host", str(tmp_path / "proj" / "agents" / "sessions"), "event")] == rows


@pytest.mark.parametrize("batch_max_files", [1, 7, 1000])
def test_ingest_batches_bound_rows_per_transaction(
    spool: Spool, sink: PostgresSink, db_url: str, batch_max_files: int
) -> None:
    """Whatever the batch size, every file becomes one row and the spool drains."""
    ing = Ingestor(
        spool,
        sink,
        host="h",
        batch_max_files=batch_max_files,
        batch_max_bytes=1 << 30,
        foreign_grace_s=0,
    )
    names = replay(spool, "main") + replay(spool, "perm")
    stats = ing.drain()
    assert -(-len(names) // batch_max_files) == stats.batches
    assert [(len(names),)] == query(db_url, "SELECT count(*) FROM agent_logs")


def test_ingest_late_subagent_events_leave_ended_session_complete(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A batch holding only a subagent's events (a background agent finishing after SessionEnd) does not
    reopen its parent session."""
    files = sorted((ALL / "main").iterdir())
    sub = [f for f in files if b'"agent_id"' in f.read_bytes()]
    for f in [f for f in files if f not in sub]:
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
    ingestor.drain()
    for f in sub:
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], fsync=False)
    ingestor.drain()
    rows = query(
        db_url,
        "SELECT claude_agent_id IS NULL, status, completed_at IS NOT NULL FROM agents ORDER BY 1",
    )
    assert [(False, "complete", True), (True, "complete", True)] == rows


def test_ingest_session_ending_after_api_error_is_failed(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A session whose last turn ended in StopFailure and then ended is `failed`; a normal one `complete`."""
    replay(spool, "error")
    replay(spool, "expand")
    ingestor.drain()
    rows = query(db_url, "SELECT sdk_session_id, status FROM agents ORDER BY 1")
    assert [
        ("120513a0-395a-41b8-be5c-14234bf83781", "failed"),
        ("7c5fa6d1-d3a0-4b97-b883-a6ced3c36ed0", "complete"),
    ] == rows
