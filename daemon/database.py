"""Which database a command talks to: SESSION_DB_URL, or the embedded cluster, started for the
call when no daemon is running it; and a sink on it at this version's schema (built by
daemon.wiring, like every object made from settings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from daemon import config

if TYPE_CHECKING:
    from daemon.sink import PostgresSink


@contextmanager
def database(settings: config.Settings) -> Iterator[str]:
    """The database URL; with no SESSION_DB_URL, the embedded cluster, started for the call if
    needed and stopped after it unless another process (a running daemon) still uses it."""
    if settings.url:
        yield settings.url
        return
    from daemon.cluster import EmbeddedCluster, find_binaries

    cluster = EmbeddedCluster(settings.state_dir, find_binaries(settings.pg_bin))
    cluster.ensure_started()
    try:
        yield cluster.url()
    finally:
        cluster.release()  # stops it only when no other process (a daemon) uses it


@contextmanager
def migrated_sink(settings: config.Settings) -> Iterator[PostgresSink]:
    """A PostgresSink on a database at this version's schema (the embedded one is migrated)."""
    from daemon import migrations, wiring

    with database(settings) as url:
        if settings.embedded:
            migrations.upgrade(url)
        migrations.check(url)
        sink = wiring.postgres_sink(settings, url)
        try:
            yield sink
        finally:
            sink.close()


def partition_connection(settings: config.Settings, url: str) -> Any:
    """A connection for partition DDL: no statement timeout (moving rows may take a while)."""
    from daemon import db

    return db.connect(
        url,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_ms=0,
        lock_timeout_ms=config.LOCK_TIMEOUT_MS,
    )
