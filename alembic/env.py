"""Alembic environment: runs migrations on a connection handed over by session-db,
or on SESSION_DB_URL when the alembic CLI is used directly."""

from __future__ import annotations

import os

from alembic import context
from daemon.migrations import engine
from daemon.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("SESSION_DB_URL")
    if not url:
        raise SystemExit("SESSION_DB_URL is not set: export it, or use `session-db migrate`.")
    # The same factory as every session-db connection (db.connect: timeouts, keepalives);
    # no statement timeout, as `session-db migrate`.
    with engine(url, statement_timeout_ms=0).connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("session-db migrations run online only.")
run_migrations_online()
