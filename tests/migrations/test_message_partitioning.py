"""Revision 0008b (messages partitioned by month, like agent_logs) keeps every row both ways."""

from __future__ import annotations

from typing import Any

import psycopg

from daemon import migrations, partitions
from tests.migrations.test_migrations import schema_dump

BEFORE = "0009"  # the revision just before 0008b (it follows the reports revision)
ROW_QUERY = "SELECT to_jsonb(m) FROM messages m ORDER BY id"
VIEW_QUERY = (
    "SELECT c.relname, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class') FROM pg_class c"
    " WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace ORDER BY 1"
)
PLACEMENT = "SELECT tableoid::regclass::text, count(*) FROM messages GROUP BY 1"


def fetch(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchall()


def seed_archive(url: str) -> None:
    """30 entries over 13 months of 2025-2026 (prompts with text, tool_use blocks, redacted
    content), linked to an agent; one without a timestamp, one from the year 0500 and one BC
    (outside every monthly partition: DEFAULT); a gap in the ids."""
    with psycopg.connect(url) as conn:
        (agent_id,) = conn.execute(
            "INSERT INTO agents (sdk_session_id) VALUES ('s1') RETURNING id"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            """INSERT INTO messages (uuid, parent_uuid, claude_session_id, agent_id, host,
                   occurred_at, role, entry_type, prompt_id, tool_use_id, tool_name, content, text,
                   content_bytes, content_sha256, transforms, transcript_path)
               SELECT 'u' || g, CASE WHEN g > 1 THEN 'u' || (g - 1) END, 's1', %s, 'h',
                   timestamptz '2025-01-03 10:00+00' + g * interval '13 days',
                   CASE WHEN g %% 3 = 0 THEN 'assistant' ELSE 'user' END,
                   CASE WHEN g %% 3 = 0 THEN 'tool_use' ELSE 'prompt' END,
                   'p' || (g / 3), CASE WHEN g %% 3 = 0 THEN 'toolu_' || g END,
                   CASE WHEN g %% 3 = 0 THEN 'Bash' END,
                   jsonb_build_object('n', g, 's', 'words number ' || g), 'words number ' || g,
                   40 + g, CASE WHEN g %% 5 = 0 THEN md5(g::text) END,
                   CASE WHEN g %% 5 = 0 THEN '{truncated}'::text[] END, '/t/s1.jsonl'
               FROM generate_series(1, 30) g""",
            (agent_id,),
        )
        conn.execute(
            """INSERT INTO messages (uuid, claude_session_id, occurred_at, role, entry_type, text)
               VALUES ('undated', 's1', NULL, 'system', 'init', 'no timestamp'),
                      ('ancient', 's1', '0500-06-01 00:00:00+00', 'user', 'prompt', 'old words'),
                      ('bc', 's1', '0044-03-15 00:00:00+00 BC', 'user', 'prompt', 'older words')"""
        )
        conn.execute("DELETE FROM messages WHERE uuid = 'u7'")  # a gap in the ids


def test_message_partitioning_upgrade_and_downgrade_keep_every_row(empty_db_url: str) -> None:
    """BEFORE → 0008b moves every messages row (ids, uuids, content, generated search_vector) into
    monthly partitions, the undated row and the BC one into DEFAULT; conversation_turns reads the
    new table with an unchanged definition; the id sequence continues; the (uuid, occurred_at)
    key holds for an undated copy too; 0008b → BEFORE brings back the same rows and schema."""
    url = empty_db_url
    migrations.upgrade(url, BEFORE)
    seed_archive(url)
    rows = fetch(url, ROW_QUERY)
    views = fetch(url, VIEW_QUERY)
    dump = schema_dump(url)
    turns = fetch(url, "SELECT prompt_uuid FROM conversation_turns ORDER BY 1")
    assert 32 == len(rows)
    assert turns

    migrations.upgrade(url, "0008b")

    assert rows == fetch(url, ROW_QUERY)
    assert views == fetch(url, VIEW_QUERY)
    assert turns == fetch(url, "SELECT prompt_uuid FROM conversation_turns ORDER BY 1")
    placed = dict(fetch(url, PLACEMENT))
    assert 2 == placed["messages_default"]  # no timestamp, 44 BC
    assert 1 == placed["messages_0500_06"]
    assert {"messages_2025_01", "messages_2025_02", "messages_2026_01"} <= set(placed)
    assert 32 == sum(placed.values())
    with psycopg.connect(url) as conn:
        start = partitions.current_month(conn)
        have = {p.name for p in partitions.list_partitions(conn, partitions.MESSAGES)}
        ahead = {partitions.MESSAGES.partition_name(partitions.add_months(start, n)) for n in range(4)}
        assert ahead <= have
        copies = conn.execute(
            """INSERT INTO messages (uuid, occurred_at, role, entry_type)
               SELECT uuid, occurred_at, role, entry_type FROM messages WHERE uuid IN ('undated', 'u1')
               ON CONFLICT (uuid, occurred_at) DO NOTHING"""
        )
        assert 0 == copies.rowcount  # a copy (same uuid, same or no timestamp) is no new row
        (new_id,) = conn.execute(
            "INSERT INTO messages (uuid, occurred_at, role, entry_type)"
            " VALUES ('after', now(), 'user', 'prompt') RETURNING id"
        ).fetchone()  # type: ignore[misc]
        assert 36 == new_id  # 33 seeded (one deleted), 2 refused copies used ids: no reuse
        conn.execute("DELETE FROM messages WHERE uuid = 'after'")
        conn.execute(  # only possible after 0008b: the same uuid at a later time
            "INSERT INTO messages (uuid, occurred_at, role, entry_type)"
            " VALUES ('u1', '2027-01-01 00:00:00+00', 'user', 'prompt')"
        )

    migrations.downgrade(url, BEFORE)

    assert rows == fetch(url, ROW_QUERY)  # the earliest copy of u1 is the one kept
    assert views == fetch(url, VIEW_QUERY)
    assert dump == schema_dump(url)
    assert [(38,)] == fetch(  # 37 was the later copy of u1: the sequence continued
        url,
        "INSERT INTO messages (uuid, occurred_at, role, entry_type)"
        " VALUES ('down', now(), 'user', 'prompt') RETURNING id",
    )
