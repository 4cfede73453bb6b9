"""One heartbeat row per running daemon, and a view that says which machines are stale.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE daemon_heartbeats (
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    spool text NOT NULL,
    started_at timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    events_ingested bigint NOT NULL DEFAULT 0,
    quarantined bigint NOT NULL DEFAULT 0,
    backlog_files bigint NOT NULL DEFAULT 0,
    backlog_bytes bigint NOT NULL DEFAULT 0,
    oldest_backlog_s double precision,
    last_error text,
    last_error_at timestamptz,
    PRIMARY KEY (host, pid, started_at)
);
COMMENT ON TABLE daemon_heartbeats IS 'One row per daemon run, refreshed every scan interval while it runs.';

CREATE VIEW daemon_status AS
SELECT h.*,
    now() - h.last_heartbeat AS silent_for,
    (now() - h.last_heartbeat > interval '60 seconds') AS stale
FROM daemon_heartbeats h
WHERE h.last_heartbeat > now() - interval '7 days';
COMMENT ON VIEW daemon_status IS 'Daemons seen in the last 7 days; stale when silent for over 60 s (stopped, hung or cut off).';
"""

DOWNGRADE = """
DROP VIEW daemon_status;
DROP TABLE daemon_heartbeats;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
