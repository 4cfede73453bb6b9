"""messages partitioned by month (declarative RANGE partitioning on occurred_at), like agent_logs.

Revision ID: 0008b
Revises: 0009
Create Date: 2026-12-02

Why: retention follows agent_logs (0005). `session-db prune --older-than 180d` drops whole
monthly partitions of the conversation archive instead of deleting rows one by one.

What changes:
- messages becomes a partitioned table, PARTITION BY RANGE (occurred_at): messages_YYYY_MM per
  UTC calendar month, and messages_default (DEFAULT) for a row whose month has no partition
  and for a row without a timestamp (occurred_at NULL; PostgreSQL routes NULL keys of a range
  partitioning to DEFAULT). Every column and every row is kept; occurred_at stays nullable.
- A unique key on a partitioned table must include the partition column: the archive key
  becomes messages_uuid_occurred_at_key UNIQUE NULLS NOT DISTINCT (uuid, occurred_at). It stays
  one row per transcript uuid because Claude Code copies an entry on resume and in sidechains
  with its uuid and its timestamp unchanged; NULLS NOT DISTINCT keeps an entry without a
  timestamp one row as well. The primary key (id) cannot include a nullable column, so it
  becomes messages_id_occurred_at_key UNIQUE NULLS NOT DISTINCT (id, occurred_at); `id` stays an
  identity column (one sequence for all partitions), unique in practice.
- Partitions are created for every month present in the old rows plus the current month and
  AHEAD_MONTHS after it (UTC, by the server's clock); `session-db migrate`, `maintain` and the
  daemon keep creating them ahead afterwards (daemon/partitions.py, for both tables).

Upgrade: as 0005 for agent_logs. The old table is renamed and emptied into the new one with
INSERT … SELECT, ids kept and the identity sequence continued; keys, foreign key and indexes are
built after the copy; the views over messages (conversation_turns, and any view over those) are
dropped and created again from their stored definitions with their comments and grants.
Downgrade does the reverse into the 0008 layout; if two rows share a uuid (only possible after
this revision, with two timestamps), the earliest is kept, since UNIQUE (uuid) cannot hold both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from alembic import op

revision = "0008b"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "messages"
OLD = "messages_unpartitioned"
DEFAULT_PARTITION = "messages_default"
AHEAD_MONTHS = 3  # partitions created after the current month (same as daemon/partitions.py)
MIN_YEAR, MAX_YEAR = 1, 9999  # rows of other years stay in the DEFAULT partition

# Every column but the generated search_vector (computed again on insert).
COLUMNS = (
    "id, uuid, parent_uuid, claude_session_id, claude_agent_id, agent_id, host, occurred_at, role,"
    " entry_type, model, cwd, git_branch, prompt_id, message_id, tool_use_id, tool_name,"
    " spawned_agent_id, is_sidechain, content, text, content_bytes, content_sha256, transforms,"
    " transcript_path, ingested_at"
)

# Column definitions as 0008 made them, without keys; shared by upgrade and downgrade.
COLUMN_DEFS = """
    id bigint GENERATED ALWAYS AS IDENTITY,
    uuid text NOT NULL,
    parent_uuid text,
    claude_session_id text,
    claude_agent_id text,
    agent_id uuid,
    host text,
    occurred_at timestamptz,
    role text NOT NULL,
    entry_type text NOT NULL,
    model text,
    cwd text,
    git_branch text,
    prompt_id text,
    message_id text,
    tool_use_id text,
    tool_name text,
    spawned_agent_id text,
    is_sidechain boolean NOT NULL DEFAULT false,
    content jsonb,
    text text,
    content_bytes bigint NOT NULL DEFAULT 0,
    content_sha256 text,
    transforms text[],
    transcript_path text,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    search_vector tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, coalesce(text, ''))) STORED
"""

COLUMN_COMMENTS = """
COMMENT ON COLUMN messages.entry_type IS 'prompt, meta, compact_summary, tool_result, text, thinking, redacted_thinking, tool_use, the system subtype, or the attachment type.';
COMMENT ON COLUMN messages.content IS 'The entry''s content (a block, the prompt, the system fields; metadata only for attachments and with archive = metadata), redacted and capped like event payloads.';
COMMENT ON COLUMN messages.text IS 'The searchable plain text of content; NULL with archive = metadata.';
COMMENT ON COLUMN messages.content_bytes IS 'UTF-8 bytes of the content JSON as read, before redaction and caps.';
COMMENT ON COLUMN messages.content_sha256 IS 'sha256 of the content JSON as read, kept when a cap changed it and nothing was redacted.';
COMMENT ON COLUMN messages.spawned_agent_id IS 'For the tool_result of an Agent call: the subagent (claude_agent_id) it ran.';
"""

COMMENTS = (
    "COMMENT ON TABLE messages IS 'The conversation archive: one row per transcript entry that"
    " carries conversation (prompts, replies, thinking, tool calls and results, system entries,"
    " compaction summaries; attachments as metadata), keyed by the transcript uuid.';"
    + COLUMN_COMMENTS
)

PARTITIONED_COMMENTS = (
    "COMMENT ON TABLE messages IS 'The conversation archive: one row per transcript entry that"
    " carries conversation (prompts, replies, thinking, tool calls and results, system entries,"
    " compaction summaries; attachments as metadata), keyed by the transcript uuid (unique with"
    " occurred_at). Partitioned by UTC month of occurred_at (messages_YYYY_MM, messages_default for"
    " months without a partition and rows without a timestamp).';"
    + COLUMN_COMMENTS
    + "COMMENT ON COLUMN messages.occurred_at IS 'The entry''s timestamp; NULL if it has none (the"
    " row is then in messages_default and never pruned).';"
)

FOREIGN_KEYS = """
ALTER TABLE messages ADD CONSTRAINT messages_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents (id);
"""

# Secondary indexes of 0008, identical on both layouts.
INDEXES = """
CREATE INDEX messages_claude_session_time_idx ON messages (claude_session_id, occurred_at);
CREATE INDEX messages_agent_idx ON messages (agent_id);
CREATE INDEX messages_occurred_idx ON messages (occurred_at);
CREATE INDEX messages_prompt_idx ON messages (claude_session_id, prompt_id) WHERE prompt_id IS NOT NULL;
CREATE INDEX messages_tool_use_id_idx ON messages (tool_use_id) WHERE tool_use_id IS NOT NULL;
CREATE INDEX messages_search_idx ON messages USING gin (search_vector);
"""

INDEX_NAMES = (
    "messages_claude_session_time_idx",
    "messages_agent_idx",
    "messages_occurred_idx",
    "messages_prompt_idx",
    "messages_tool_use_id_idx",
    "messages_search_idx",
)

# lz4 TOAST compression where the server has it (as 0008); partitions inherit it from the parent.
LZ4 = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE messages ALTER COLUMN content SET COMPRESSION lz4;
        ALTER TABLE messages ALTER COLUMN text SET COMPRESSION lz4;
    END IF;
END
$$;
"""

# Every view that reads messages, directly or through other views, with what re-creating it
# needs: definition, comments, grants, and its dependencies among these views (for the order).
DEPENDENT_VIEWS = """
WITH RECURSIVE dep(view_oid, ref_oid) AS (
    SELECT DISTINCT r.ev_class, d.refobjid
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = %(table)s::text::regclass AND r.ev_class <> d.refobjid
    UNION
    SELECT DISTINCT r.ev_class, d.refobjid
    FROM dep JOIN pg_depend d ON d.refobjid = dep.view_oid
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND r.ev_class <> d.refobjid
)
SELECT c.oid, c.relname, pg_get_viewdef(c.oid),
    obj_description(c.oid, 'pg_class'),
    coalesce((SELECT array_agg(format('COMMENT ON COLUMN %%I.%%I IS %%L', c.relname, a.attname,
                                      col_description(c.oid, a.attnum)) ORDER BY a.attnum)
              FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL),
             '{}'),
    coalesce((SELECT array_agg(DISTINCT x.ref_oid) FROM dep x WHERE x.view_oid = c.oid), '{}')
FROM pg_class c
WHERE c.oid IN (SELECT view_oid FROM dep) AND c.relkind = 'v'
"""

# Grants on a relation, as GRANT statements (PUBLIC is grantee 0); the owner's own are implicit.
GRANTS = """
SELECT format('GRANT %%s ON %%I TO %%s%%s', g.privilege_type, %(name)s::text,
    CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
    CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
FROM pg_class c, aclexplode(c.relacl) g
WHERE c.oid = %(name)s::text::regclass AND g.grantee <> c.relowner
ORDER BY 1
"""

SEQUENCE_STATE = "SELECT last_value, is_called FROM {seq}"
CURRENT_MONTH = "SELECT extract(year FROM now() AT TIME ZONE 'UTC')::int, extract(month FROM now() AT TIME ZONE 'UTC')::int"
MONTHS_PRESENT = f"""
SELECT DISTINCT extract(year FROM occurred_at AT TIME ZONE 'UTC')::int,
    extract(month FROM occurred_at AT TIME ZONE 'UTC')::int
FROM {OLD}
WHERE occurred_at >= '{MIN_YEAR:04d}-01-01 00:00:00+00' AND occurred_at < '{MAX_YEAR + 1}-01-01 00:00:00+00'
"""  # noqa: S608 - module constants only


class View(NamedTuple):
    """A view to drop and create again around the table swap."""

    oid: int
    name: str
    definition: str
    comment: str | None
    column_comments: list[str]
    depends_on: list[int]
    grants: list[str]


def _sql(sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on Alembic's connection; rows if it returns any."""
    result = (
        op.get_bind().exec_driver_sql(sql, params) if params else op.get_bind().exec_driver_sql(sql)
    )
    rows = [tuple(r) for r in result] if result.returns_rows else []
    result.close()
    return rows


def _grants(name: str) -> list[str]:
    return [str(r[0]) for r in _sql(GRANTS, {"name": name})]


def _dependent_views() -> list[View]:
    """The views over messages, each after the views it reads."""
    found = {
        int(oid): View(
            int(oid), name, definition, comment, list(cols), [int(d) for d in deps], _grants(name)
        )
        for oid, name, definition, comment, cols, deps in _sql(DEPENDENT_VIEWS, {"table": TABLE})
    }
    ordered: list[View] = []
    done: set[int] = set()
    while len(ordered) < len(found):
        ready = [
            v for oid, v in sorted(found.items())
            if oid not in done and all(d in done or d not in found for d in v.depends_on)
        ]  # fmt: skip
        if not ready:
            raise RuntimeError("cyclic view dependencies over messages")
        ordered += ready
        done.update(v.oid for v in ready)
    return ordered


def _drop_views(views: list[View]) -> None:
    if views:
        _sql("DROP VIEW " + ", ".join(f'"{v.name}"' for v in reversed(views)))


def _create_views(views: list[View]) -> None:
    for v in views:
        _sql(f'CREATE VIEW "{v.name}" AS\n{v.definition}')
        if v.comment is not None:
            _sql(f'COMMENT ON VIEW "{v.name}" IS {_literal(v.comment)}')
        for statement in [*v.column_comments, *v.grants]:
            _sql(statement)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"



def _sequence_state(table: str) -> tuple[int, bool]:
    ((seq,),) = _sql("SELECT pg_get_serial_sequence(%(t)s, 'id')", {"t": table})
    ((last, called),) = _sql(SEQUENCE_STATE.format(seq=seq))
    return int(last), bool(called)


def _continue_sequence(state: tuple[int, bool]) -> None:
    _sql(
        "SELECT setval(pg_get_serial_sequence('messages', 'id'), %(v)s, %(c)s)",
        {"v": state[0], "c": state[1]},
    )


def _month_bound(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}-01 00:00:00+00"


def _create_month(year: int, month: int) -> None:
    nyear, nmonth = (year + 1, 1) if month == 12 else (year, month + 1)
    _sql(
        f"CREATE TABLE {TABLE}_{year:04d}_{month:02d} PARTITION OF {TABLE}"
        f" FOR VALUES FROM ('{_month_bound(year, month)}') TO ('{_month_bound(nyear, nmonth)}')"
    )


def _months(present: Sequence[tuple[Any, ...]]) -> list[tuple[int, int]]:
    months = {(int(y), int(m)) for y, m in present}
    ((y, m),) = _sql(CURRENT_MONTH)
    for _ in range(AHEAD_MONTHS + 1):
        if MIN_YEAR <= y <= MAX_YEAR:
            months.add((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return sorted(months)


def _detach_old_table(new_name: str) -> tuple[tuple[int, bool], list[str]]:
    """Rename messages out of the way and free every name the new table will use."""
    sequence = _sequence_state(TABLE)
    grants = _grants(TABLE)
    _sql(f"ALTER TABLE {TABLE} RENAME TO {new_name}")
    _sql(f"ALTER TABLE {new_name} ALTER COLUMN id DROP IDENTITY")
    _sql("DROP INDEX " + ", ".join(INDEX_NAMES))
    _sql(f"ALTER TABLE {new_name} DROP CONSTRAINT messages_agent_id_fkey")
    return sequence, grants


def _finish(grants: list[str], views: list[View], comments: str) -> None:
    _sql(FOREIGN_KEYS)
    _sql(INDEXES)
    _sql(comments)
    for statement in grants:
        _sql(statement)
    _create_views(views)
    _sql(f"ANALYZE {TABLE}")  # autovacuum never analyzes a partitioned parent


def upgrade() -> None:
    views = _dependent_views()
    _drop_views(views)
    sequence, grants = _detach_old_table(OLD)
    _sql(f"ALTER TABLE {OLD} DROP CONSTRAINT messages_pkey, DROP CONSTRAINT messages_uuid_key")
    _sql(f"CREATE TABLE {TABLE} ({COLUMN_DEFS}) PARTITION BY RANGE (occurred_at)")
    _sql(LZ4)
    _sql(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {TABLE} DEFAULT")
    for year, month in _months(_sql(MONTHS_PRESENT)):
        _create_month(year, month)
    copy = f"INSERT INTO {TABLE} ({COLUMNS}) OVERRIDING SYSTEM VALUE SELECT {COLUMNS} FROM {OLD}"  # noqa: S608 - module constants
    _sql(copy + " ORDER BY id")
    _continue_sequence(sequence)
    _sql(f"DROP TABLE {OLD}")
    _sql(
        f"ALTER TABLE {TABLE}"
        " ADD CONSTRAINT messages_id_occurred_at_key UNIQUE NULLS NOT DISTINCT (id, occurred_at),"
        " ADD CONSTRAINT messages_uuid_occurred_at_key UNIQUE NULLS NOT DISTINCT (uuid, occurred_at)"
    )
    _finish(grants, views, PARTITIONED_COMMENTS)


def downgrade() -> None:
    old = "messages_partitioned"
    views = _dependent_views()
    _drop_views(views)
    sequence, grants = _detach_old_table(old)
    _sql(
        f"ALTER TABLE {old} DROP CONSTRAINT messages_id_occurred_at_key,"
        " DROP CONSTRAINT messages_uuid_occurred_at_key"
    )
    _sql(f"CREATE TABLE {TABLE} ({COLUMN_DEFS})")
    _sql(LZ4)
    keep_first = (
        f"SELECT DISTINCT ON (uuid) {COLUMNS} FROM {old} ORDER BY uuid, occurred_at, id"  # noqa: S608
    )
    insert = f"INSERT INTO {TABLE} ({COLUMNS}) OVERRIDING SYSTEM VALUE SELECT * FROM ({keep_first}) k"  # noqa: S608 - module constants
    _sql(insert + " ORDER BY id")
    _continue_sequence(sequence)
    _sql(f"DROP TABLE {old}")
    _sql(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT messages_pkey PRIMARY KEY (id),"
        " ADD CONSTRAINT messages_uuid_key UNIQUE (uuid)"
    )
    _finish(grants, views, COMMENTS)
