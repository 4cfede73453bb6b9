"""Alembic, driven from code: upgrade, and check the revision before ingesting.

Upgrades hold a transaction-scoped advisory lock (MIGRATION_LOCK_KEY) on the connection Alembic
uses, so two hosts running `session-db migrate` at once apply each revision once: the second
waits, then finds the schema at head. A daemon accepts the database at this code's head, and
also at a newer revision it does not know when the tables it writes still have every column and
unique key it uses (it logs `schema_newer`); an older or incompatible schema is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from daemon import db
from daemon.config import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_MS
from daemon.errors import SchemaMismatchError
from daemon.resources import data_path
from daemon.schema import WRITTEN_TABLES

log = structlog.get_logger("session_db.migrations")

MIGRATION_LOCK_KEY = 0x5E55_10DB_0001  # pg_advisory_xact_lock key held while migrating


def alembic_config() -> Config:
    cfg = Config(str(data_path("alembic.ini")))
    scripts = data_path("alembic")
    cfg.set_main_option("script_location", str(scripts))
    cfg.set_main_option("version_locations", str(scripts / "versions"))
    return cfg


def engine(
    url: str,
    *,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
) -> sa.Engine:
    """A SQLAlchemy engine over db.connect (the libpq URI verbatim: pgpass, PG* vars honoured;
    connect timeout, keepalives and statement timeout as every other connection)."""
    return sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: db.connect(
            url, connect_timeout_s=connect_timeout_s, statement_timeout_ms=statement_timeout_ms
        ),
        poolclass=sa.NullPool,
    )


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> str | None:
    with engine(url, connect_timeout_s=connect_timeout_s).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, target: str = "head", *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> None:
    _run(url, command.upgrade, target, connect_timeout_s)


def downgrade(url: str, target: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> None:
    _run(url, command.downgrade, target, connect_timeout_s)


def _run(url: str, fn: Any, target: str, connect_timeout_s: int) -> None:
    """Run an Alembic command in one transaction that holds the migration lock.

    No statement timeout: a revision may rewrite a large table (0005 moves every row)."""
    cfg = alembic_config()
    with engine(url, connect_timeout_s=connect_timeout_s, statement_timeout_ms=0).begin() as conn:
        if not conn.exec_driver_sql(db.TRY_XACT_LOCK, (MIGRATION_LOCK_KEY,)).scalar():
            log.info("migrate_waiting", reason="another session-db migrate holds the lock")
            conn.exec_driver_sql(db.XACT_LOCK, (MIGRATION_LOCK_KEY,))
        cfg.attributes["connection"] = conn
        fn(cfg, target)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """The database's revision as this code sees it."""

    revision: str | None
    head: str
    verdict: str  # one of SCHEMA_VERDICTS
    problems: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return self.verdict in ("head", "newer_compatible")


SCHEMA_VERDICTS = ("head", "none", "older", "newer_compatible", "newer_incompatible")


def schema_state(url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> SchemaState:
    """Where the database's schema stands against this code: at head, missing, older, or newer
    (a revision this code does not know) and then compatible or not with what it writes."""
    current = current_revision(url, connect_timeout_s=connect_timeout_s)
    head = head_revision()
    if current == head:
        return SchemaState(current, head, "head")
    if current is None:
        return SchemaState(current, head, "none")
    script = ScriptDirectory.from_config(alembic_config())
    if current in {rev.revision for rev in script.walk_revisions()}:
        return SchemaState(current, head, "older")
    problems = tuple(compatibility_problems(url, connect_timeout_s=connect_timeout_s))
    return SchemaState(
        current, head, "newer_incompatible" if problems else "newer_compatible", problems
    )


def check(url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> str:
    """Return the revision when this code can write to the database; else raise SchemaMismatchError.

    At head: fine. Older, or no schema: refused (`session-db migrate`). Newer (a revision this
    code does not know, migrated by a newer session-db on another host): fine with a
    `schema_newer` warning when the tables this daemon writes are compatible, else refused.
    """
    state = schema_state(url, connect_timeout_s=connect_timeout_s)
    current, head = state.revision, state.head
    if state.verdict == "none":
        raise SchemaMismatchError("the database has no session-db schema: run `session-db migrate`")
    if state.verdict == "older":
        raise SchemaMismatchError(
            f"the database schema is at revision {current}, this session-db needs {head}: run `session-db migrate`"
        )
    if state.verdict == "newer_incompatible":
        raise SchemaMismatchError(
            f"the database schema is at revision {current}, newer than this session-db (head {head}), "
            f"and incompatible with what it writes: {'; '.join(state.problems)}; upgrade session-db on this host"
        )
    assert current is not None
    if state.verdict == "newer_compatible":
        log.warning(
            "schema_newer",
            revision=current,
            head=head,
            detail="migrated by a newer session-db; the tables this daemon writes are compatible, ingesting",
        )
    return current


def compatibility_problems(url: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S) -> list[str]:
    """Why this code could not write to the database's tables, empty when it can.

    Every column of daemon/schema's written tables must exist, a column this code does not
    know must be nullable or have a default, and every unique key it names in ON CONFLICT must
    exist with the same columns.
    """
    names = [t.name for t in WRITTEN_TABLES]
    with db.connect(url, connect_timeout_s=connect_timeout_s) as conn:
        columns = conn.execute(db.SELECT_TABLE_COLUMNS, (names,)).fetchall()
        keys = conn.execute(db.SELECT_UNIQUE_KEYS, (names,)).fetchall()
    found: dict[str, dict[str, tuple[bool, bool]]] = {}
    for table, column, nullable, has_default in columns:
        found.setdefault(table, {})[column] = (nullable, has_default)
    unique = {(table, tuple(cols)) for table, cols in keys}
    problems = []
    for table in WRITTEN_TABLES:
        have = found.get(table.name)
        if have is None:
            problems.append(f"table {table.name} is missing")
            continue
        problems += [
            f"{table.name}.{c.name} is missing" for c in table.columns if c.name not in have
        ]
        problems += [
            f"{table.name}.{name} is NOT NULL without a default"
            for name, (nullable, has_default) in sorted(have.items())
            if name not in table.columns and not nullable and not has_default
        ]
        for cols in _unique_keys(table):
            if (table.name, cols) not in unique:
                problems.append(f"{table.name} has no unique key ({', '.join(cols)})")
    return problems


def _unique_keys(table: sa.Table) -> list[tuple[str, ...]]:
    """Column sets (sorted) of the table's primary key, unique constraints and unique indexes."""
    keys = [tuple(sorted(c.name for c in table.primary_key.columns))]
    keys += [
        tuple(sorted(c.name for c in con.columns))
        for con in table.constraints
        if isinstance(con, sa.UniqueConstraint)
    ]
    keys += [tuple(sorted(c.name for c in ix.columns)) for ix in table.indexes if ix.unique]
    return [k for k in keys if k]
