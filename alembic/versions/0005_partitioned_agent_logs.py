"""agent_logs partitioned by month (declarative RANGE partitioning on occurred_at).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Why: retention. `session-db prune --older-than 180d` drops whole monthly partitions (a
metadata operation) instead of deleting rows one by one.

What changes:
- agent_logs becomes a partitioned table, PARTITION BY RANGE (occurred_at), one partition per
  UTC calendar month named agent_logs_YYYY_MM, plus agent_logs_default (DEFAULT) so a row whose
  month has no partition (a late or clock-skewed event) is still stored, never refused.
- A unique key on a partitioned table must include the partition column: the idempotency key
  becomes (event_uid, occurred_at) and the primary key (id, occurred_at). This stays exact for
  hook events because the hook fixes occurred_at (received-ns) once, in the spool file, so a
  re-delivered file carries the same pair. `id` stays an identity column (one sequence for all
  partitions), so it is still unique in practice.
- Partitions are created for every month present in the old rows plus the current month and
  AHEAD_MONTHS after it (UTC, by the server's clock). `session-db migrate` and `session-db
  maintain` keep creating them ahead afterwards (daemon/partitions.py).

Upgrade: the old table is renamed and emptied into the new one with INSERT … SELECT, ids kept
and the identity sequence continued where it was; every row is kept. Indexes, the primary and
unique keys and the foreign keys are added after the copy (one bulk build each, faster than
maintaining them row by row). Views bind to a table's OID, so every view that reads agent_logs
(directly or through another view) is dropped first and created again afterwards from its own
stored definition (pg_get_viewdef), with its comments and grants; the table's grants are copied
too. Downgrade does the reverse into the 0001/0003 layout; if two rows share an event_uid (only
possible after this revision: the same foreign file re-delivered with another mtime), the
earliest is kept, since the old unique key cannot hold both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE = "agent_logs"
OLD = "agent_logs_unpartitioned"
DEFAULT_PARTITION = "agent_logs_default"
AHEAD_MONTHS = 3  # partitions created after the current month (same as daemon/partitions.py)
MIN_YEAR, MAX_YEAR = 1, 9999  # rows of other years stay in the DEFAULT partition

COLUMNS = (
    "id, event_uid, host, claude_session_id, claude_agent_id, agent_id, session_id, event_category,"
    " event_type, tool_name, tool_use_id, prompt_id, occurred_at, ingested_at, cwd, project_dir,"
    " workflow_slug, agent_type, payload, payload_bytes, payload_sha256, transforms"
)

# Column definitions as 0001 made them, without keys; shared by upgrade and downgrade.
COLUMN_DEFS = """
    id bigint GENERATED ALWAYS AS IDENTITY,
    event_uid text NOT NULL,
    host text NOT NULL,
    claude_session_id text,
    claude_agent_id text,
    agent_id uuid,
    session_id uuid,
    event_category text NOT NULL,
    event_type text NOT NULL,
    tool_name text,
    tool_use_id text,
    prompt_id text,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    cwd text,
    project_dir text,
    workflow_slug text,
    agent_type text,
    payload jsonb,
    payload_bytes bigint NOT NULL DEFAULT 0,
    payload_sha256 text,
    transforms text[],
    CONSTRAINT agent_logs_event_category_check CHECK (event_category IN ('hook', 'phase'))
"""

COMMENTS = """
COMMENT ON TABLE agent_logs IS 'One row per Claude Code hook event (hook) or observed workflow phase change (phase).';
COMMENT ON COLUMN agent_logs.event_uid IS 'Idempotency key: the spool file name (host-qualified), or phase:<host>:<slug>:<from>:<to>:<sha256>.';
COMMENT ON COLUMN agent_logs.transforms IS 'Changes made to the payload before storing it, e.g. {nul_escaped}; payload_sha256 is then the sha256 of the original bytes.';
"""

PARTITIONED_COMMENTS = """
COMMENT ON TABLE agent_logs IS 'One row per Claude Code hook event (hook) or observed workflow phase change (phase). Partitioned by UTC month of occurred_at (agent_logs_YYYY_MM, agent_logs_default for months without a partition).';
COMMENT ON COLUMN agent_logs.event_uid IS 'Idempotency key, unique with occurred_at: the spool file name (host-qualified), or phase:<host>:<slug>:<from>:<to>:<sha256>.';
COMMENT ON COLUMN agent_logs.transforms IS 'Changes made to the payload before storing it, e.g. {nul_escaped}; payload_sha256 is then the sha256 of the original bytes.';
"""

FOREIGN_KEYS = """
ALTER TABLE agent_logs ADD CONSTRAINT agent_logs_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents (id);
ALTER TABLE agent_logs ADD CONSTRAINT agent_logs_session_id_fkey FOREIGN KEY (session_id) REFERENCES sessions (id);
"""

# Secondary indexes of 0001 and 0003, identical on both layouts.
INDEXES = """
CREATE INDEX agent_logs_claude_session_time_idx ON agent_logs (claude_session_id, occurred_at);
CREATE INDEX agent_logs_agent_time_idx ON agent_logs (agent_id, occurred_at);
CREATE INDEX agent_logs_session_time_idx ON agent_logs (session_id, occurred_at);
CREATE INDEX agent_logs_event_type_time_idx ON agent_logs (event_type, occurred_at);
CREATE INDEX agent_logs_tool_use_id_idx ON agent_logs (tool_use_id) WHERE tool_use_id IS NOT NULL;
CREATE INDEX agent_logs_unlinked_agent_idx ON agent_logs (agent_id)
    WHERE session_id IS NULL AND agent_id IS NOT NULL;
CREATE INDEX agent_logs_permission_request_idx ON agent_logs (claude_session_id, occurred_at)
    WHERE event_type = 'PermissionRequest';
"""

INDEX_NAMES = (
    "agent_logs_claude_session_time_idx",
    "agent_logs_agent_time_idx",
    "agent_logs_session_time_idx",
    "agent_logs_event_type_time_idx",
    "agent_logs_tool_use_id_idx",
    "agent_logs_unlinked_agent_idx",
    "agent_logs_permission_request_idx",
)

# lz4 TOAST compression where the server has it (as 0001); partitions inherit it from the parent.
LZ4_PAYLOAD = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE agent_logs ALTER COLUMN payload SET COMPRESSION lz4;
    END IF;
END
$$;
"""

# Every view that reads agent_logs, directly or through other views, with what re-creating it
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
    """The views over agent_logs, each after the views it reads."""
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
            raise RuntimeError("cyclic view dependencies over agent_logs")
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
        "SELECT setval(pg_get_serial_sequence('agent_logs', 'id'), %(v)s, %(c)s)",
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
    """Rename agent_logs out of the way and free every name the new table will use."""
    sequence = _sequence_state(TABLE)
    grants = _grants(TABLE)
    _sql(f"ALTER TABLE {TABLE} RENAME TO {new_name}")
    _sql(f"ALTER TABLE {new_name} ALTER COLUMN id DROP IDENTITY")
    _sql("DROP INDEX " + ", ".join(INDEX_NAMES))
    _sql(f"ALTER TABLE {new_name} DROP CONSTRAINT agent_logs_pkey")
    return sequence, grants


def upgrade() -> None:
    views = _dependent_views()
    _drop_views(views)
    sequence, grants = _detach_old_table(OLD)
    _sql(f"ALTER TABLE {OLD} DROP CONSTRAINT agent_logs_event_uid_key")
    _sql(f"CREATE TABLE {TABLE} ({COLUMN_DEFS}) PARTITION BY RANGE (occurred_at)")
    _sql(LZ4_PAYLOAD)
    _sql(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {TABLE} DEFAULT")
    for year, month in _months(_sql(MONTHS_PRESENT)):
        _create_month(year, month)
    _sql(f"INSERT INTO {TABLE} ({COLUMNS}) OVERRIDING SYSTEM VALUE SELECT {COLUMNS} FROM {OLD}")  # noqa: S608 - module constants
    _continue_sequence(sequence)
    _sql(f"DROP TABLE {OLD}")
    _sql(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT agent_logs_pkey PRIMARY KEY (id, occurred_at),"
        " ADD CONSTRAINT agent_logs_event_uid_occurred_at_key UNIQUE (event_uid, occurred_at)"
    )
    _sql(FOREIGN_KEYS)
    _sql(INDEXES)
    _sql(PARTITIONED_COMMENTS)
    for statement in grants:
        _sql(statement)
    _create_views(views)
    _sql(f"ANALYZE {TABLE}")  # autovacuum never analyzes a partitioned parent


def downgrade() -> None:
    old = "agent_logs_partitioned"
    views = _dependent_views()
    _drop_views(views)
    sequence, grants = _detach_old_table(old)
    _sql(f"ALTER TABLE {old} DROP CONSTRAINT agent_logs_event_uid_occurred_at_key")
    _sql(f"CREATE TABLE {TABLE} ({COLUMN_DEFS})")
    _sql(LZ4_PAYLOAD)
    keep_first = (
        f"SELECT DISTINCT ON (event_uid) {COLUMNS} FROM {old} ORDER BY event_uid, occurred_at, id"  # noqa: S608
    )
    _sql(f"INSERT INTO {TABLE} ({COLUMNS}) OVERRIDING SYSTEM VALUE {keep_first}")
    _continue_sequence(sequence)
    _sql(f"DROP TABLE {old}")
    _sql(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT agent_logs_pkey PRIMARY KEY (id),"
        " ADD CONSTRAINT agent_logs_event_uid_key UNIQUE (event_uid)"
    )
    _sql(FOREIGN_KEYS)
    _sql(INDEXES)
    _sql(COMMENTS)
    for statement in grants:
        _sql(statement)
    _create_views(views)
    _sql(f"ANALYZE {TABLE}")
