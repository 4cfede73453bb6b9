"""A daemon and a database at another revision: older is refused, newer is used when compatible.

Hosts are upgraded one by one: after `session-db migrate` from a newer host, the older daemons
keep ingesting as long as the tables they write keep what they use."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from daemon import migrations
from daemon.errors import SchemaMismatchError
from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.support.spoolwriter import write_event

FUTURE = "0099_future"
STAMP_FUTURE = "UPDATE alembic_version SET version_num = '0099_future'"


def run(url: str, *statements: str) -> None:
    with psycopg.connect(url) as conn:
        for statement in statements:
            conn.execute(statement)


def stamp_future(url: str, *changes: str) -> None:
    """What a newer session-db's migration would leave: an unknown revision plus its changes."""
    run(url, STAMP_FUTURE, *changes)


def test_schema_newer_compatible_keeps_ingesting(db_url: str, tmp_path: Path) -> None:
    """An unknown newer revision that only adds (a nullable column, a table) is accepted with a
    `schema_newer` warning naming it, and events are still ingested."""
    stamp_future(
        db_url,
        "ALTER TABLE agent_logs ADD COLUMN future_note text",
        "ALTER TABLE sessions ADD COLUMN future_rank int NOT NULL DEFAULT 0",
        "CREATE TABLE future_things (id int PRIMARY KEY)",
    )
    with capture_logs() as logs:
        assert FUTURE == migrations.check(db_url)
    assert [("schema_newer", FUTURE)] == [(e["event"], e.get("revision")) for e in logs]

    spool = Spool(tmp_path / "spool")
    spool.ensure()
    sink = PostgresSink(
        db_url,
        host="old-host",
        connect_timeout_s=5,
        statement_timeout_ms=30_000,
        lock_timeout_ms=10_000,
    )
    try:
        ingestor = Ingestor(
            spool,
            sink,
            host="old-host",
            batch_max_files=100,
            batch_max_bytes=1 << 20,
            foreign_grace_s=0,
        )
        for n in range(3):
            write_event(
                spool.root,
                b'{"session_id": "s-%d", "hook_event_name": "Stop"}' % n,
                event="Stop",
                env={"SESSION_DB_SESSION": "wf"},
                host="old-host",
                fsync=False,
            )
        assert 3 == ingestor.drain().inserted
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            "ALTER TABLE agent_logs ADD COLUMN tenant text NOT NULL",
            "agent_logs.tenant is NOT NULL without a default",
        ),
        ("ALTER TABLE agent_logs DROP COLUMN project_dir", "agent_logs.project_dir is missing"),
        (
            "ALTER TABLE sessions DROP CONSTRAINT sessions_host_slug_key",
            "sessions has no unique key (host, slug)",
        ),
        ("ALTER TABLE watch_roots RENAME TO watched_roots", "table watch_roots is missing"),
    ],
)
def test_schema_newer_incompatible_is_refused(db_url: str, change: str, problem: str) -> None:
    """A newer revision that removes or requires something this daemon writes is refused, and
    the message says what and that this host's session-db needs upgrading."""
    stamp_future(db_url, change)
    with pytest.raises(SchemaMismatchError) as err:
        migrations.check(db_url)
    assert problem in str(err.value)
    assert "upgrade session-db on this host" in str(err.value)


def test_schema_older_is_refused_with_the_fix(db_url: str) -> None:
    """A database at a known older revision is refused with `session-db migrate` as the fix."""
    run(db_url, "UPDATE alembic_version SET version_num = '0004'")
    with pytest.raises(SchemaMismatchError, match="run `session-db migrate`"):
        migrations.check(db_url)


def test_schema_head_has_no_compatibility_problems(db_url: str) -> None:
    """At head, the compatibility check finds nothing (it agrees with daemon/schema)."""
    assert [] == migrations.compatibility_problems(db_url)
