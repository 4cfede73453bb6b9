"""The direct COPY into agent_logs and its fallback (temporary table + ON CONFLICT DO NOTHING):
the same rows, the same links to agents and sessions, nothing inserted twice."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import psycopg

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.conftest import FIXTURES
from tests.integration.conftest import HOST
from tests.support.spoolwriter import write_event, write_raw

ALL = FIXTURES / "hooks" / "all"
# Each row's agent_id and session_id against what INSERT_EVENTS's join gives: the agents row of
# its (claude session, subagent) and that row's session.
MISLINKED_ROWS = """
SELECT l.event_uid FROM agent_logs l
LEFT JOIN agents a ON a.sdk_session_id = l.claude_session_id
                  AND coalesce(a.claude_agent_id, '') = coalesce(l.claude_agent_id, '')
WHERE l.agent_id IS DISTINCT FROM a.id OR l.session_id IS DISTINCT FROM a.session_id
"""
ALL_COLUMNS = """
SELECT event_uid, host, claude_session_id, claude_agent_id, agent_id, session_id, event_category,
    event_type, tool_name, tool_use_id, prompt_id, occurred_at, cwd, project_dir, workflow_slug,
    agent_type, payload, payload_bytes, payload_sha256, transforms
FROM agent_logs ORDER BY event_uid
"""


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def replay(spool: Spool, scenario: str, env: dict[str, str] | None = None) -> list[str]:
    return [
        write_event(spool.root, f.read_bytes(), event=f.stem.split("_", 1)[1], env=env, fsync=False)
        for f in sorted((ALL / scenario).iterdir())
    ]


def test_ingest_copy_partial_redelivery_inserts_nothing_twice(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A batch holding files whose rows are already stored (a kill among the unlinks) next to new
    ones: the direct COPY meets the unique key, the batch is written again through ON CONFLICT,
    each new file gets one row, each repeat none, and the counts say which is which."""
    first = replay(spool, "main")
    copies = {n: (spool.new / n).read_bytes() for n in first[::2]}
    assert len(first) == ingestor.drain().inserted
    for name, data in copies.items():
        write_raw(spool.root, data, name=name)
    fresh = replay(spool, "expand")
    stats = ingestor.drain()
    assert (len(fresh), len(copies)) == (stats.inserted, stats.duplicates)
    total = len(first) + len(fresh)
    assert [(total, total)] == query(
        db_url, "SELECT count(*), count(DISTINCT event_uid) FROM agent_logs"
    )
    assert sorted(first + fresh) == sorted(
        r[0] for r in query(db_url, "SELECT event_uid FROM agent_logs")
    )
    assert [] == list(spool.new.iterdir())
    assert [] == query(db_url, MISLINKED_ROWS)


def test_ingest_copy_links_equal_the_join(spool: Spool, ingestor: Ingestor, db_url: str) -> None:
    """Rows written by the direct COPY carry the agent_id and session_id the join of the
    fallback would give, also for a subagent created earlier without a session whose parent
    joins a workflow in a later batch that holds more of the subagent's events."""
    replay(spool, "main")  # session and subagent, no workflow yet
    ingestor.drain()
    sub = [
        f for f in sorted((ALL / "main").iterdir()) if "agent_id" in orjson.loads(f.read_bytes())
    ]
    env = {"SESSION_DB_SESSION": "wf-copy"}
    main_stop = next(f for f in sorted((ALL / "main").iterdir()) if f.stem.endswith("_Stop"))
    write_event(spool.root, main_stop.read_bytes(), event="Stop", env=env, fsync=False)
    payload = orjson.loads(sub[-1].read_bytes())
    payload["tool_use_id"] = "copy-test-late-subagent-event"
    write_event(spool.root, orjson.dumps(payload), event="PostToolUse", fsync=False)
    ingestor.drain()
    assert [] == query(db_url, MISLINKED_ROWS)
    assert [(0,)] == query(db_url, "SELECT count(*) FROM agent_logs WHERE session_id IS NULL")


def test_ingest_copy_special_characters_stored_exactly(
    spool: Spool, sink: PostgresSink, db_url: str
) -> None:
    """Tabs, newlines, carriage returns and backslashes in text columns, the payload and the
    transforms array (JSON pointers with `,"{}\\` and blanks) reach the row unchanged."""
    odd = 'a\tb\nc\rd\\e,"{} f'
    payload = {
        "session_id": "s\\1\t",
        "cwd": odd,
        "tool_name": "T\\n",
        odd: "x" * 64,  # over the field cap below: transforms names this key's pointer
        "text": "line\n\twith \\ escapes",
    }
    body = orjson.dumps(payload, option=orjson.OPT_INDENT_2)  # literal newlines in the JSON
    name = write_event(spool.root, body, event="PreToolUse", fsync=False)
    ingestor = Ingestor(
        spool, sink, host=HOST, batch_max_files=10, batch_max_bytes=1 << 20,
        foreign_grace_s=0.0, field_cap_bytes=32,
    )  # fmt: skip
    assert 1 == ingestor.drain().inserted
    rows = query(
        db_url,
        "SELECT event_uid, claude_session_id, cwd, tool_name, transforms, payload->>'text',"
        " payload->>%s FROM agent_logs",
        odd,
    )
    pointer = "/" + odd.replace("~", "~0").replace("/", "~1")
    assert [
        (name, "s\\1\t", odd, "T\\n", ["truncated", f"truncated:{pointer}"],
         "line\n\twith \\ escapes", "x" * 32)
    ] == rows  # fmt: skip


def test_ingest_copy_fallback_rows_equal_direct_rows(
    spool: Spool, ingestor: Ingestor, db_url: str, tmp_path: Path
) -> None:
    """The same files written once by the direct COPY and once (after their rows were deleted
    and one marker row kept) through the fallback give identical rows."""
    names = replay(spool, "main", env={"SESSION_DB_SESSION": "wf-eq"})
    copies = {n: (spool.new / n).read_bytes() for n in names}
    ingestor.drain()
    direct = query(db_url, ALL_COLUMNS)
    with psycopg.connect(db_url) as conn:  # keep one row: the redelivery takes the fallback
        conn.execute("DELETE FROM agent_logs WHERE event_uid <> %s", (names[0],))
    for n, data in copies.items():
        write_raw(spool.root, data, name=n)
    stats = ingestor.drain()
    assert (len(names) - 1, 1) == (stats.inserted, stats.duplicates)
    assert direct == query(db_url, ALL_COLUMNS)


def test_ingest_copy_mtime_before_1970_stored_exactly(
    spool: Spool, ingestor: Ingestor, db_url: str
) -> None:
    """A file without a spool header takes its time from its mtime, which may lie before 1970
    (negative nanoseconds; the filesystem may clamp what was set, e.g. to 1901): the direct
    COPY stores the instant the file carries, microseconds included."""
    from daemon.event_rows import ns_to_datetime

    expected = []
    for ns in (-62_135_596_800 * 10**9 + 5_000, -30_000_000_000 * 10**9 + 1_234_000, -1_500):
        name = write_raw(spool.root, orjson.dumps({"hook_event_name": "Stop", "n": str(ns)}))
        os.utime(spool.new / name, ns=(ns, ns))
        expected.append(ns_to_datetime((spool.new / name).stat().st_mtime_ns))
    assert len(expected) == ingestor.drain().inserted
    stored = [r[0] for r in query(db_url, "SELECT occurred_at FROM agent_logs")]
    assert sorted(expected) == sorted(stored)
    assert min(expected).year < 1970
