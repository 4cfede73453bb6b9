"""Alembic, driven from code: upgrade, and check the revision before ingesting."""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from daemon.errors import SchemaMismatchError
from daemon.resources import data_path


def alembic_config() -> Config:
    cfg = Config(str(data_path("alembic.ini")))
    scripts = data_path("alembic")
    cfg.set_main_option("script_location", str(scripts))
    cfg.set_main_option("version_locations", str(scripts / "versions"))
    return cfg


def engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine that hands the libpq URI to psycopg verbatim (pgpass, PG* vars honoured)."""
    return sa.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=sa.NullPool
    )


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    with engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, target: str = "head") -> None:
    _run(url, command.upgrade, target)


def downgrade(url: str, target: str) -> None:
    _run(url, command.downgrade, target)


def _run(url: str, fn: Any, target: str) -> None:
    cfg = alembic_config()
    with engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        fn(cfg, target)


def check(url: str) -> str:
    """Return the revision if it is this code's head; else raise SchemaMismatchError."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return current
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current is None:
        raise SchemaMismatchError("the database has no session-db schema: run `session-db migrate`")
    if current in known:
        raise SchemaMismatchError(
            f"the database schema is at revision {current}, this session-db needs {head}: run `session-db migrate`"
        )
    raise SchemaMismatchError(
        f"the database schema is at revision {current}, unknown to this session-db (head {head}): "
        "it was migrated by a newer version; upgrade session-db"
    )
