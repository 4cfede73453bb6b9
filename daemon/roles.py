"""Database roles: an owner that migrates, a writer for the daemons, a read-only analyst.

`session-db roles` prints the SQL, `session-db roles --apply` runs it as a superuser in the
session-db database. The three are group roles (NOLOGIN); people and machines log in as members.
Every statement is idempotent, so applying again (after each `migrate`) is safe and is how the
writer gets tables that a new revision added.

What the writer may do is what the daemon does (the statements in daemon/db.py): read every
table, insert and update the tables it fills, create its temporary COPY staging tables. It never
deletes, and of agent_logs it may update only `session_id` (back-filled workflow links), so a
stored event cannot be rewritten. Identity columns need no sequence grant (checked on
PostgreSQL 15: an INSERT by a role without USAGE on the identity sequence succeeds).

Partitions: inserts through a partitioned table check privileges on the parent only, so the
owner may create partitions ahead at any time; default privileges make them (and anything else
the owner creates later) readable by writer and analyst.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from daemon import db
from daemon.errors import ConfigError

DEFAULT_OWNER = "session_db_owner"
DEFAULT_WRITER = "session_db_writer"
DEFAULT_ANALYST = "session_db_analyst"
SCHEMA = "public"  # where Alembic creates session-db's tables (the search_path's first schema)

# Unquoted-identifier style names only, so they are safe in identifiers and string literals alike.
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Views of the migrations (tests/acceptance/test_roles.py checks this list against the schema).
VIEWS = (
    "agent_costs",
    "agent_timings",
    "claude_session_costs",
    "conversation_turns",
    "cost_check",
    "daemon_status",
    "daily_costs",
    "session_costs",
    "slash_commands",
    "token_usage_costs",
    "token_usage_hourly",  # a table before alembic 0013
    "tool_calls",
    "tool_stats",
    "turns",
    # reports (alembic 0009)
    "branch_costs",
    "budget_status",
    "cache_savings",
    "claude_session_titles",
    "project_costs",
    "session_title_costs",
    "subagent_shares",
    "usage_attribution",
    "usage_blocks",
    "usage_rollup",
)

# What the daemon writes, beyond SELECT on everything (daemon/db.py). Nothing is ever deleted
# (prune runs as the owner).
WRITER_GRANTS = {
    "agent_logs": "INSERT, UPDATE (session_id)",  # update: back-filled workflow links only
    "agents": "INSERT, UPDATE",
    "budget_alerts": "INSERT",  # reports: budget_exceeded, once per budget and period
    "cost_state_models": "INSERT, UPDATE",  # cost engine: Claude Code's cost-state lines
    "cost_states": "INSERT, UPDATE",
    "daemon_heartbeats": "INSERT, UPDATE",
    "messages": "INSERT",  # the conversation archive (daemon/messages.py); prune is the owner's
    "sessions": "INSERT, UPDATE",
    "token_usage": "INSERT, UPDATE",
    "transcript_files": "INSERT, UPDATE",
    "usage_hourly": "INSERT, UPDATE",  # reports: its triggers on token_usage run as the writer
    "watch_roots": "INSERT",
}
# Written only by triggers on the tables above (no statement in daemon/db.py names them).
TRIGGER_WRITTEN = frozenset({"usage_hourly"})


def tables() -> tuple[str, ...]:
    """session-db's tables: those of daemon/schema, and Alembic's version table."""
    from daemon.schema import metadata

    return (*sorted(metadata.tables), "alembic_version")


@dataclass(frozen=True)
class Roles:
    """The three group role names (override with --owner/--writer/--analyst)."""

    owner: str = DEFAULT_OWNER
    writer: str = DEFAULT_WRITER
    analyst: str = DEFAULT_ANALYST
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = (self.owner, self.writer, self.analyst)
        for name in names:
            if not ROLE_NAME.match(name):
                raise ConfigError(
                    f"role name {name!r}: use lower-case letters, digits and _ (at most 63, not starting with a digit)"
                )
        if len(set(names)) != len(names):
            raise ConfigError(f"owner, writer and analyst must be three different roles: {names}")
        object.__setattr__(self, "names", names)


def _array(items: tuple[str, ...], indent: str) -> str:
    """A text[] literal, a few names per line."""
    quoted = [f"'{i}'" for i in items]
    lines = [", ".join(quoted[i : i + 4]) for i in range(0, len(quoted), 4)]
    return "ARRAY[" + f",\n{indent}".join(lines) + "]"


def script(r: Roles) -> str:
    """The SQL that creates the roles and grants their privileges; idempotent."""
    rels = _array((*tables(), *VIEWS), " " * 30)
    create = "\n".join(
        f"    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN\n"
        f'        CREATE ROLE "{name}" NOLOGIN;\n'
        f"    END IF;"
        for name in r.names
    )
    writer = "\n".join(
        f"    IF to_regclass('{SCHEMA}.{table}') IS NOT NULL THEN\n"
        f'        GRANT {grant} ON {SCHEMA}.{table} TO "{r.writer}";\n'
        f"    END IF;"
        for table, grant in WRITER_GRANTS.items()
    )
    # Only constants and names matched against ROLE_NAME are interpolated.
    return f"""\
-- session-db roles. Run as a superuser, connected to the session-db database:
--   session-db roles --apply              (on SESSION_DB_URL), or
--   session-db roles | psql -v ON_ERROR_STOP=1 -d DATABASE
-- Idempotent: run it again after every `session-db migrate`.
--   {r.owner}: owns tables, views, partitions; runs `session-db migrate`
--   {r.writer}: the daemons; reads all, inserts/updates what it fills, deletes nothing
--   {r.analyst}: SELECT on every table and view, nothing else
BEGIN;

-- Group roles: nobody logs in as them, people and machines log in as members.
DO $$
BEGIN
{create}
END
$$;

-- Database and schema. Only the owner creates objects (PostgreSQL 15 no longer lets PUBLIC
-- create in schema public; a database from an older release may still).
REVOKE CREATE ON SCHEMA {SCHEMA} FROM PUBLIC;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO "{r.owner}", "{r.writer}", "{r.analyst}"',
                   current_database());
    -- the ingest path stages rows in temporary tables (COPY, then INSERT ... SELECT)
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO "{r.writer}"', current_database());
END
$$;
GRANT USAGE, CREATE ON SCHEMA {SCHEMA} TO "{r.owner}";
GRANT USAGE ON SCHEMA {SCHEMA} TO "{r.writer}", "{r.analyst}";

-- Whatever the owner creates later (migrations, partitions made ahead): readable by both.
ALTER DEFAULT PRIVILEGES FOR ROLE "{r.owner}" IN SCHEMA {SCHEMA}
    GRANT SELECT ON TABLES TO "{r.writer}", "{r.analyst}";

-- session-db's existing tables, their partitions and its views: the owner takes them over
-- (e.g. from the superuser that migrated first); writer and analyst may read them, no more.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH ours AS (
            SELECT to_regclass(format('%I.%I', '{SCHEMA}', name)) AS oid
            FROM unnest({rels}) AS name
        )
        SELECT c.oid::regclass AS rel, c.relkind, pg_get_userbyid(c.relowner) AS owner
        FROM pg_class c
        WHERE c.oid IN (SELECT oid FROM ours
                        UNION SELECT t.relid FROM ours, pg_partition_tree(ours.oid) AS t)
        ORDER BY c.oid
    LOOP
        IF r.owner <> '{r.owner}' THEN
            EXECUTE format('ALTER %s %s OWNER TO %I',
                           CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                          ELSE 'TABLE' END,
                           r.rel, '{r.owner}');
        END IF;
        EXECUTE format('REVOKE ALL ON %s FROM %I, %I', r.rel, '{r.writer}', '{r.analyst}');
        EXECUTE format('GRANT SELECT ON %s TO %I, %I', r.rel, '{r.writer}', '{r.analyst}');
    END LOOP;
END
$$;

-- What the daemon writes (daemon/db.py). Tables a migration has not created yet are skipped.
DO $$
BEGIN
{writer}
END
$$;

COMMIT;

-- Login users, members of the groups (set passwords with psql's \\password, which keeps them
-- out of shell and psql history):
--   CREATE ROLE migrator LOGIN IN ROLE "{r.owner}";
--   ALTER ROLE migrator SET role = '{r.owner}';  -- what it creates belongs to the group
--   CREATE ROLE ingest_laptop LOGIN IN ROLE "{r.writer}";
--   CREATE ROLE alice LOGIN IN ROLE "{r.analyst}";
"""  # noqa: S608


@dataclass(frozen=True)
class Applied:
    """What `apply` found and did."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    owned: int  # session-db relations (tables, partitions, views) the owner role now owns
    schema_revision: str | None  # None: not migrated yet


def apply(url: str, r: Roles, *, connect_timeout_s: int) -> Applied:
    """Run `script(r)` on the database as one transaction; the session must be a superuser's."""
    with db.connect(url, autocommit=True, connect_timeout_s=connect_timeout_s) as conn:
        row = conn.execute(db.SELECT_SUPERUSER).fetchone()
        if not (row and row[0]):
            raise ConfigError(
                "roles --apply creates roles and hands tables to the owner role: connect as a superuser "
                "(SESSION_DB_URL=postgresql://postgres@…), or print the SQL with `session-db roles` for your DBA"
            )
        before = {n for (n,) in conn.execute(db.SELECT_ROLES, (list(r.names),))}
        conn.execute(script(r).encode())
        owned = conn.execute(db.COUNT_OWNED, (r.owner,)).fetchone()
        migrated = conn.execute(db.HAS_VERSION_TABLE).fetchone()
        revision = conn.execute(db.SELECT_REVISION).fetchone() if migrated and migrated[0] else None
    return Applied(
        created=tuple(n for n in r.names if n not in before),
        existing=tuple(n for n in r.names if n in before),
        owned=int(owned[0]) if owned else 0,
        schema_revision=revision[0] if revision else None,
    )
