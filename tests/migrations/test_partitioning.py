"""Revision 0005 (agent_logs partitioned by month) keeps every row both ways, and `migrate` is
safe to run from two hosts at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from daemon import migrations, partitions
from tests.conftest import REPO
from tests.migrations.test_migrations import schema_dump

BEFORE = "0004"
PARTITIONED = (
    "0005"  # the revision under test; later revisions change other objects (daemon_status)
)
ROW_QUERY = "SELECT to_jsonb(l) FROM agent_logs l ORDER BY id"
VIEW_QUERY = (
    "SELECT c.relname, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class') FROM pg_class c"
    " WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace ORDER BY 1"
)


def fetch(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def seed_unpartitioned(url: str) -> None:
    """Rows over 13 months of 2025-2026, a phase row linked to a session and an agent, a row from
    the year 0500 and one BC (outside every monthly partition: DEFAULT), NUL-escaped payloads."""
    with psycopg.connect(url) as conn:
        (session_id,) = conn.execute(
            "INSERT INTO sessions (host, slug) VALUES ('h', 'wf') RETURNING id"
        ).fetchone()  # type: ignore[misc]
        (agent_id,) = conn.execute(
            "INSERT INTO agents (sdk_session_id, session_id) VALUES ('s1', %s) RETURNING id",
            (session_id,),
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            """INSERT INTO agent_logs (event_uid, host, claude_session_id, agent_id, session_id,
                   event_category, event_type, tool_use_id, occurred_at, payload, payload_bytes, transforms)
               SELECT g || '.P1R0.h', 'h', 's1', %s, %s, 'hook',
                   CASE WHEN g %% 3 = 0 THEN 'PreToolUse' ELSE 'PostToolUse' END, 'toolu_' || (g / 3),
                   timestamptz '2025-01-03 10:00+00' + g * interval '13 days',
                   jsonb_build_object('n', g, 's', 'x␀0y'), 20 + g, '{nul_escaped}'
               FROM generate_series(1, 30) g""",
            (agent_id, session_id),
        )
        conn.execute(
            """INSERT INTO agent_logs (event_uid, host, session_id, event_category, event_type, occurred_at,
                   workflow_slug)
               VALUES ('phase:h:wf:None:build:abc', 'h', %s, 'phase', 'build', '2025-02-01 00:00:00+00', 'wf'),
                      ('ancient.h', 'h', NULL, 'hook', 'Stop', '0500-06-01 00:00:00+00', NULL),
                      ('bc.h', 'h', NULL, 'hook', 'Stop', '0044-03-15 00:00:00+00 BC', NULL)""",
            (session_id,),
        )
        conn.execute("DELETE FROM agent_logs WHERE event_uid = '7.P1R0.h'")  # a gap in the ids


def test_partitioning_upgrade_and_downgrade_keep_every_row(empty_db_url: str) -> None:
    """0004 → head moves every row (ids, keys, payloads) into monthly partitions, the odd years into
    DEFAULT; the views read the new table with unchanged definitions; the id sequence continues;
    head → 0004 brings back the same rows and the same schema."""
    url = empty_db_url
    migrations.upgrade(url, BEFORE)
    seed_unpartitioned(url)
    rows = fetch(url, ROW_QUERY)
    views = fetch(url, VIEW_QUERY)
    dump = schema_dump(url)
    assert 32 == len(rows)

    migrations.upgrade(url, PARTITIONED)

    assert rows == fetch(url, ROW_QUERY)
    assert views == [v for v in fetch(url, VIEW_QUERY) if v[0] in {w[0] for w in views}]
    placed = dict(
        fetch(url, "SELECT tableoid::regclass::text, count(*) FROM agent_logs GROUP BY 1")
    )
    assert 1 == placed["agent_logs_default"]  # 44 BC
    assert 1 == placed["agent_logs_0500_06"]
    assert {"agent_logs_2025_01", "agent_logs_2025_02", "agent_logs_2026_01"} <= set(placed)
    assert 32 == sum(placed.values())
    with psycopg.connect(url) as conn:
        start = partitions.current_month(conn)
        have = {p.name for p in partitions.list_partitions(conn)}
        ahead = {partitions.partition_name(partitions.add_months(start, n)) for n in range(4)}
        assert ahead <= have
        (new_id,) = conn.execute(
            "INSERT INTO agent_logs (event_uid, host, event_category, event_type, occurred_at)"
            " VALUES ('after.h', 'h', 'hook', 'Stop', now()) RETURNING id"
        ).fetchone()  # type: ignore[misc]
        assert 34 == new_id  # 32 seeded + the deleted one: the sequence continued, no reuse
        conn.execute("DELETE FROM agent_logs WHERE event_uid = 'after.h'")
        calls = conn.execute("SELECT count(*) FROM tool_calls").fetchone()
        assert (11,) == calls  # toolu_0 … toolu_10: the views work on the partitioned table

    migrations.downgrade(url, BEFORE)

    assert rows == fetch(url, ROW_QUERY)
    assert views == fetch(url, VIEW_QUERY)
    assert dump == schema_dump(url)
    assert [(35,)] == fetch(
        url,
        "INSERT INTO agent_logs (event_uid, host, event_category, event_type, occurred_at)"
        " VALUES ('down.h', 'h', 'hook', 'Stop', now()) RETURNING id",
    )


def test_partitioning_keeps_grants_on_table_and_views(empty_db_url: str) -> None:
    """Privileges granted on agent_logs and its views (e.g. by `session-db roles`) survive the
    table swap in both directions."""
    url = empty_db_url
    role = f"analyst_{url.rsplit('/', 1)[1]}"
    migrations.upgrade(url, BEFORE)
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON agent_logs, tool_calls, turns TO {}").format(
                sql.Identifier(role)
            )
        )
        conn.execute(sql.SQL("GRANT INSERT ON agent_logs TO {}").format(sql.Identifier(role)))
    privileges = (
        "SELECT has_table_privilege(%s, 'agent_logs', 'SELECT'),"
        " has_table_privilege(%s, 'agent_logs', 'INSERT'),"
        " has_table_privilege(%s, 'tool_calls', 'SELECT'), has_table_privilege(%s, 'turns', 'SELECT'),"
        " has_table_privilege(%s, 'tool_stats', 'SELECT')"
    )
    try:
        migrations.upgrade(url)
        assert [(True, True, True, True, False)] == fetch(url, privileges, *[role] * 5)
        migrations.downgrade(url, BEFORE)
        assert [(True, True, True, True, False)] == fetch(url, privileges, *[role] * 5)
    finally:
        with psycopg.connect(url) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_migrate_two_hosts_at_once_apply_each_revision_once(
    empty_db_url: str, tmp_path: Path
) -> None:
    """Two `session-db migrate` processes started together on an empty database both exit 0: the
    advisory lock makes one wait for the other, which then finds the schema at head (no
    duplicate-object errors). The test holds the lock until both wait, so they really overlap."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_DB_", "CLAUDE_"))}
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    with psycopg.connect(empty_db_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (migrations.MIGRATION_LOCK_KEY,))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "daemon", "migrate"],
                cwd=REPO,
                env={
                    **env,
                    "SESSION_DB_URL": empty_db_url,
                    "SESSION_DB_HOST": host,
                    "SESSION_DB_STATE_DIR": str(tmp_path / host),
                    "SESSION_DB_LOG_FORMAT": "json",
                    "XDG_CONFIG_HOME": str(tmp_path / host / "config"),
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for host in ("host-a", "host-b")
        ]
        deadline = time.monotonic() + 60
        while gate.execute(waiting).fetchone() != (2,):
            assert time.monotonic() < deadline, "both migrate processes should wait for the lock"
            assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
            time.sleep(0.05)
        gate.execute("SELECT pg_advisory_unlock(%s)", (migrations.MIGRATION_LOCK_KEY,))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [0, 0] == [p.returncode for p in procs], outputs
    assert all("migrate_waiting" in o for o in outputs), outputs
    assert [(migrations.head_revision(),)] == fetch(
        empty_db_url, "SELECT version_num FROM alembic_version"
    )


def test_partitioning_partitions_compress_payload_like_the_parent(db_url: str) -> None:
    """Every partition, those created later by maintenance included, compresses payload as the
    parent does (lz4 where the server has it)."""
    with psycopg.connect(db_url) as conn:
        start = partitions.current_month(conn)
        conn.execute(
            sql.SQL("DROP TABLE {}").format(
                sql.Identifier(partitions.partition_name(partitions.add_months(start, 3)))
            )
        )
        conn.commit()
        assert 1 == len(partitions.ensure(conn).created)
        rows = conn.execute(
            "SELECT attrelid::regclass::text, attcompression FROM pg_attribute"
            " WHERE attname = 'payload' AND attrelid IN (SELECT 'agent_logs'::regclass"
            " UNION ALL SELECT inhrelid FROM pg_inherits WHERE inhparent = 'agent_logs'::regclass)"
        ).fetchall()
    assert len(rows) >= 6
    compression: dict[str, str] = dict(rows)
    assert {compression["agent_logs"]} == {c for _, c in rows}
