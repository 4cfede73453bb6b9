"""Alembic owns the schema: round trips are exact and the metadata matches it."""

from __future__ import annotations

import shutil
import subprocess

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from daemon import migrations
from daemon.schema import metadata


def schema_dump(url: str) -> str:
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed for the migration round-trip test"
    out = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "-d", url],
        check=True,
        capture_output=True,
        text=True,
    )
    # pg_dump 15+ prints a random \restrict key line in newer minor versions; drop it.
    return "\n".join(
        line
        for line in out.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrations_round_trip_is_identical(empty_db_url: str) -> None:
    """upgrade head → downgrade base → upgrade head yields the same schema, and base is empty."""
    migrations.upgrade(empty_db_url)
    first = schema_dump(empty_db_url)
    assert {"sessions", "agents", "agent_logs", "watch_roots", "alembic_version"} <= tables(
        empty_db_url
    )
    migrations.downgrade(empty_db_url, "base")
    assert {"alembic_version"} == tables(empty_db_url)
    migrations.upgrade(empty_db_url)
    assert first == schema_dump(empty_db_url)
    assert migrations.head_revision() == migrations.current_revision(empty_db_url)


def partitions(url: str) -> set[str]:
    """Names of partitions (agent_logs_YYYY_MM, agent_logs_default): daemon/schema describes parents."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relispartition").fetchall()
    return {r[0] for r in rows}


def test_schema_metadata_has_no_drift(db_url: str) -> None:
    """daemon/schema describes exactly what the migrations create (partitions aside)."""
    skip = partitions(db_url)
    assert "agent_logs_default" in skip

    def include_name(name: str | None, type_: str, _parents: dict[str, str | None]) -> bool:
        return not (type_ == "table" and name in skip)

    with migrations.engine(db_url).connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": include_name,
            },
        )
        diff = compare_metadata(ctx, metadata)
    assert [] == diff


def test_schema_payload_uses_lz4_when_available(db_url: str) -> None:
    """agent_logs.payload is lz4-compressed where the server supports lz4."""
    with psycopg.connect(db_url) as conn:
        (enumvals,) = conn.execute(
            "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()  # type: ignore[misc]
        (compression,) = conn.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'agent_logs'::regclass AND attname = 'payload'"
        ).fetchone()  # type: ignore[misc]
    expected = "l" if "lz4" in enumvals else ""
    assert expected == compression
