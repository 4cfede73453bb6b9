"""Shared fixtures: a real PostgreSQL server (pytest-postgresql), one migrated template
database, and a fresh clone of it per test."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_postgresql import factories
from pytest_postgresql.janitor import DatabaseJanitor

from daemon import migrations
from daemon.spool import Spool

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "claude-code-2.1.330"
PG_CTL = str(TESTS / "support" / "pg_ctl")
PG_USER = "postgres"


def url_for(host: str, port: int, user: str, dbname: str) -> str:
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def migrate_template(
    host: str, port: int, user: str, dbname: str, password: str | None = None, **_: Any
) -> None:
    """Loader: bring the template database to head once per test session."""
    migrations.upgrade(url_for(host, port, user, dbname))


postgresql_proc = factories.postgresql_proc(
    executable=PG_CTL,
    user=PG_USER,
    unixsocketdir="/tmp",
    load=[migrate_template],
)


def _janitor(proc: Any, dbname: str, template: bool) -> DatabaseJanitor:
    return DatabaseJanitor(
        user=proc.user,
        host=proc.host,
        port=proc.port,
        dbname=dbname,
        template_dbname=proc.template_dbname if template else None,
        password=proc.password,
    )


_counter = iter(range(1_000_000))


@contextmanager
def fresh_database(proc: Any, prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A libpq URL of a new database on `proc` (a clone of the migrated template, or empty),
    dropped on exit."""
    name = f"{prefix}{os.getpid()}_{next(_counter)}"
    with _janitor(proc, name, template=migrated):
        yield url_for(proc.host, proc.port, proc.user, name)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """An empty spool (new/, tmp/, quarantine/) in the test's temporary folder."""
    s = Spool(tmp_path / "spool")
    s.ensure()
    return s


@pytest.fixture
def db_url(postgresql_proc: Any) -> Iterator[str]:
    """A libpq URL of a fresh database at schema head, dropped after the test."""
    with fresh_database(postgresql_proc, "t") as url:
        yield url


@pytest.fixture
def empty_db_url(postgresql_proc: Any) -> Iterator[str]:
    """A libpq URL of a fresh, empty database (no schema)."""
    with fresh_database(postgresql_proc, "e", migrated=False) as url:
        yield url


@pytest.fixture
def host() -> str:
    return socket.gethostname()


@pytest.fixture
def hook_path() -> Path:
    return REPO / "hooks" / "session-db-hook"


LAYERS = ("unit", "conformance", "integration", "acceptance", "migrations", "e2e", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries the marker of its layer (its folder under tests/)."""
    for item in items:
        parts = item.path.relative_to(TESTS).parts
        if parts and parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


def pytest_report_header() -> list[str]:
    return [f"postgres via {PG_CTL}; pg_dump: {shutil.which('pg_dump')}; euid={os.geteuid()}"]
