"""`session-db roles` on the real server: the owner migrates, the writer ingests, the analyst reads.

Each test makes its own group and login roles (roles are cluster-wide) and drops them after its
database is gone: the `cast` fixture is requested before the database fixture for that reason.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors, sql

from daemon import migrations, roles
from tests.acceptance.conftest import Daemon, Env, wait_for
from tests.conftest import url_for
from tests.support.spoolwriter import write_event
from tests.support.workload import WRITTEN_TABLES, spool_workload

_tags = itertools.count()


@dataclass(frozen=True)
class Cast:
    """Group roles for one test and one login member of each."""

    groups: roles.Roles
    migrator: str
    ingest: str
    alice: str

    def flags(self) -> list[str]:
        g = self.groups
        return ["--owner", g.owner, "--writer", g.writer, "--analyst", g.analyst]

    def create_logins(self, superuser_url: str) -> None:
        """Members as the README says: the owner's member acts as the group for what it creates."""
        statements = [
            ("CREATE ROLE {} LOGIN IN ROLE {}", self.migrator, self.groups.owner),
            ("ALTER ROLE {} SET role = {}", self.migrator, self.groups.owner),
            ("CREATE ROLE {} LOGIN IN ROLE {}", self.ingest, self.groups.writer),
            ("CREATE ROLE {} LOGIN IN ROLE {}", self.alice, self.groups.analyst),
        ]
        with psycopg.connect(superuser_url, autocommit=True) as conn:
            for text, login, group in statements:
                second = sql.Literal(group) if "SET role" in text else sql.Identifier(group)
                conn.execute(sql.SQL(text).format(sql.Identifier(login), second))


@pytest.fixture
def cast(postgresql_proc: Any) -> Iterator[Cast]:
    """Fresh role names; dropped after the test (and after its database, which held their grants)."""
    tag = f"t{os.getpid()}_{next(_tags)}"
    c = Cast(
        roles.Roles(owner=f"{tag}_owner", writer=f"{tag}_writer", analyst=f"{tag}_analyst"),
        f"{tag}_migrator",
        f"{tag}_ingest",
        f"{tag}_alice",
    )
    yield c
    admin = url_for(postgresql_proc.host, postgresql_proc.port, postgresql_proc.user, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in (c.migrator, c.ingest, c.alice, *c.groups.names):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}").geturl()


def cli(root: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        # The workload's transcripts live under root, not below a Claude projects/ folder.
        env=Env(root, url, extra={"SESSION_DB_TRANSCRIPT_ROOTS": str(root)}).vars(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    assert row is not None
    return int(row[0])


def revision(url: str) -> str | None:
    return migrations.current_revision(url)


ACL_SNAPSHOT = """
SELECT 'rel', c.relname, c.relowner::regrole::text,
       array(SELECT unnest(c.relacl)::text ORDER BY 1)::text
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'col', a.attrelid::regclass::text || '.' || a.attname, '', array(SELECT unnest(a.attacl)::text ORDER BY 1)::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'public'::regnamespace AND a.attacl IS NOT NULL
UNION ALL
SELECT 'default', d.defaclrole::regrole::text, d.defaclobjtype::text,
       array(SELECT unnest(d.defaclacl)::text ORDER BY 1)::text
FROM pg_default_acl d
UNION ALL
SELECT 'schema', n.nspname, n.nspowner::regrole::text, array(SELECT unnest(n.nspacl)::text ORDER BY 1)::text
FROM pg_namespace n WHERE n.nspname = 'public'
UNION ALL
SELECT 'database', d.datname, '', array(SELECT unnest(d.datacl)::text ORDER BY 1)::text
FROM pg_database d WHERE d.datname = current_database()
UNION ALL
SELECT 'role', r.rolname, r.rolcanlogin::text, r.rolsuper::text FROM pg_roles r WHERE r.rolname = ANY(%s)
ORDER BY 1, 2, 3
"""


def acl_snapshot(url: str, c: Cast) -> list[tuple[Any, ...]]:
    """Owners and privileges of everything the roles SQL touches."""
    with psycopg.connect(url) as conn:
        return conn.execute(ACL_SNAPSHOT, (list(c.groups.names),)).fetchall()


def test_roles_cover_every_table_and_view_of_the_schema(db_url: str) -> None:
    """roles.tables() and roles.VIEWS name every relation the migrations create (partitions aside).

    A revision that adds a table or view must add it there, or the owner would not take it over.
    """
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND NOT c.relispartition"
        ).fetchall()
    assert {r[0] for r in rows} == set(roles.tables()) | set(roles.VIEWS)


def test_roles_new_database_owner_migrates_writer_cannot_and_apply_is_idempotent(
    cast: Cast, empty_db_url: str, tmp_path: Path
) -> None:
    """The documented order works: roles, migrate as an owner member, roles again, ingest as a writer member.

    The writer cannot migrate; everything ends owned by the owner group; applying again changes nothing.
    """
    psql = shutil.which("psql")
    assert psql, "psql is needed: the printed SQL is meant for it"
    printed = cli(tmp_path, empty_db_url, "roles", *cast.flags())
    assert 0 == printed.returncode, printed.stderr
    piped = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", empty_db_url],
        input=printed.stdout, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == piped.returncode, piped.stderr
    cast.create_logins(empty_db_url)
    owner_url = as_user(empty_db_url, cast.migrator)
    writer_url = as_user(empty_db_url, cast.ingest)

    first = cli(tmp_path, owner_url, "migrate", "--revision", "0004")
    assert 0 == first.returncode, first.stderr[-3000:]
    assert "0004" == revision(empty_db_url)
    refused = cli(tmp_path, writer_url, "migrate")
    assert 0 != refused.returncode
    assert "0004" == revision(empty_db_url)
    upgraded = cli(tmp_path, owner_url, "migrate")
    assert 0 == upgraded.returncode, upgraded.stderr[-3000:]
    assert migrations.head_revision() == revision(empty_db_url)

    applied = cli(tmp_path, empty_db_url, "roles", "--apply", *cast.flags())
    assert 0 == applied.returncode, applied.stderr
    assert f"{cast.groups.owner}: already there" in applied.stdout
    with psycopg.connect(empty_db_url) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'S')"
        ).fetchall()
    assert [(cast.groups.owner,)] == owners

    before = acl_snapshot(empty_db_url, cast)
    again = cli(tmp_path, empty_db_url, "roles", "--apply", *cast.flags())
    assert 0 == again.returncode, again.stderr
    assert before == acl_snapshot(empty_db_url, cast)

    env = Env(tmp_path, writer_url)
    uids = {
        write_event(env.spool, b'{"session_id": "s-1"}', event="Notification") for _ in range(3)
    }
    ingested = cli(tmp_path, writer_url, "ingest", "--once")
    assert 0 == ingested.returncode, ingested.stderr[-3000:]
    assert len(uids) == count(empty_db_url, "agent_logs")


def test_roles_writer_runs_the_real_ingest(cast: Cast, db_url: str, tmp_path: Path) -> None:
    """As a writer member, `ingest --once` (twice) fills every table the daemon writes; nothing is quarantined."""
    applied = cli(tmp_path, db_url, "roles", "--apply", *cast.flags())
    assert 0 == applied.returncode, applied.stderr
    cast.create_logins(db_url)
    writer_url = as_user(db_url, cast.ingest)
    env = Env(tmp_path, writer_url)
    work = spool_workload(tmp_path, env.spool)
    for _ in range(2):  # the second run takes the update paths (ON CONFLICT DO UPDATE, offsets)
        done = cli(tmp_path, writer_url, "ingest", "--once")
        assert 0 == done.returncode, done.stderr[-3000:]
    assert [] == sorted((env.spool / "new").iterdir())
    assert not (env.spool / "quarantine").exists() or [] == sorted(
        (env.spool / "quarantine").iterdir()
    )
    assert len(work.uids) == env.rows()
    # `ingest --once` writes no heartbeat (it is not a daemon): a short daemon run as the
    # writer inserts its row, then marks its clean stop (UPDATE).
    daemon = Daemon(env, tmp_path / "writer-daemon.log")
    try:
        wait_for(lambda: count(db_url, "daemon_heartbeats") == 1, what="the writer's heartbeat")
        assert 0 == daemon.stop()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    with psycopg.connect(db_url) as conn:
        assert [("stopped",)] == conn.execute("SELECT state FROM daemon_status").fetchall()
    empty = [t for t in WRITTEN_TABLES if count(db_url, t) == 0]
    assert [] == empty
    status = cli(tmp_path, writer_url, "status", "--json")
    assert 0 == status.returncode, status.stderr


def test_roles_writer_may_not_change_the_schema_delete_or_rewrite_events(
    cast: Cast, db_url: str, tmp_path: Path
) -> None:
    """The writer may create temporary tables, but not create, alter, drop, delete, truncate,
    rewrite a stored event's payload, or change prices."""
    assert 0 == cli(tmp_path, db_url, "roles", "--apply", *cast.flags()).returncode
    cast.create_logins(db_url)
    forbidden = [
        "DROP TABLE agent_logs",
        "ALTER TABLE agents ADD COLUMN x int",
        "CREATE TABLE public.x (i int)",
        "CREATE VIEW public.v AS SELECT 1",
        "DELETE FROM agent_logs",
        "DELETE FROM agents",
        "TRUNCATE token_usage",
        "UPDATE agent_logs SET payload = '{}'::jsonb",
        "UPDATE agent_logs SET event_type = 'x'",
        "UPDATE prices SET note = 'x'",
        "INSERT INTO prices (model_prefix) VALUES ('x')",
        "DROP VIEW daemon_status",
    ]
    with psycopg.connect(as_user(db_url, cast.ingest), autocommit=True) as conn:
        conn.execute("CREATE TEMPORARY TABLE scratch (i int)")
        for statement in forbidden:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement.encode())


def test_roles_analyst_reads_every_table_and_view_and_writes_nothing(
    cast: Cast, db_url: str, tmp_path: Path
) -> None:
    """The analyst can SELECT from every table, partition and view, and is refused every write."""
    assert 0 == cli(tmp_path, db_url, "roles", "--apply", *cast.flags()).returncode
    cast.create_logins(db_url)
    with psycopg.connect(db_url) as conn:
        # Each table or view with one ordinary column (identity columns refuse plain updates).
        relations = conn.execute(
            "SELECT t.table_name, t.table_type, min(c.column_name) FROM information_schema.tables t"
            " JOIN information_schema.columns c USING (table_schema, table_name)"
            " WHERE t.table_schema = 'public' AND c.is_identity = 'NO' GROUP BY 1, 2 ORDER BY 1"
        ).fetchall()
        partitions = conn.execute(
            "SELECT relname FROM pg_class WHERE relispartition AND relkind IN ('r', 'p')"
            " AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    names = {r[0] for r in relations}
    assert {"agent_logs", "daemon_status", "alembic_version"} <= names
    assert {p[0] for p in partitions} <= names
    with psycopg.connect(as_user(db_url, cast.alice), autocommit=True) as conn:
        for name, kind, column in relations:
            table, col = sql.Identifier(name), sql.Identifier(column)
            conn.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(table))
            if kind != "BASE TABLE":
                continue
            for write in (
                "INSERT INTO {0} DEFAULT VALUES",
                "UPDATE {0} SET {1} = {1} WHERE false",
                "DELETE FROM {0} WHERE false",
                "TRUNCATE {0}",
            ):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(sql.SQL(write).format(table, col))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.x (i int)")
    status = cli(tmp_path, as_user(db_url, cast.alice), "status", "--json")
    assert 0 == status.returncode, status.stderr


def test_roles_missing_grant_keeps_events_in_the_spool(
    cast: Cast, db_url: str, tmp_path: Path
) -> None:
    """A writer without INSERT on agent_logs quarantines nothing: events wait in new/ until the grant is back."""
    assert 0 == cli(tmp_path, db_url, "roles", "--apply", *cast.flags()).returncode
    cast.create_logins(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("REVOKE INSERT ON agent_logs FROM {}").format(
                sql.Identifier(cast.groups.writer)
            )
        )
    writer_url = as_user(db_url, cast.ingest)
    env = Env(tmp_path, writer_url)
    uids = {write_event(env.spool, b"{}", event="Notification") for _ in range(4)}
    refused = cli(tmp_path, writer_url, "ingest", "--once")
    assert 0 != refused.returncode
    assert "roles --apply" in refused.stderr
    assert uids == {p.name for p in (env.spool / "new").iterdir()}
    assert not (env.spool / "quarantine").exists() or [] == sorted(
        (env.spool / "quarantine").iterdir()
    )
    assert 0 == cli(tmp_path, db_url, "roles", "--apply", *cast.flags()).returncode
    done = cli(tmp_path, writer_url, "ingest", "--once")
    assert 0 == done.returncode, done.stderr[-3000:]
    assert len(uids) == env.rows()
