"""Heartbeats record a clean stop: `status` tells a stopped daemon from a crashed one.

Adds daemon_heartbeats.stopped_at (set by a daemon that stops cleanly) and replaces
daemon_status (grants kept): a stopped daemon is never stale, and two new columns at the end,
`stopped_at` and `state` (running, stale or stopped). One-shot runs (`ingest --once`) write
no heartbeat row at all.

Revision ID: 0007b
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007b"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE daemon_heartbeats ADD COLUMN stopped_at timestamptz;
COMMENT ON COLUMN daemon_heartbeats.stopped_at IS 'When the daemon stopped cleanly (SIGTERM/SIGINT); NULL while it runs or after a crash.';

-- CREATE OR REPLACE keeps the view's grants (roles.py); new columns go at the end.
CREATE OR REPLACE VIEW daemon_status AS
SELECT h.host, h.pid, h.version, h.spool, h.started_at, h.last_heartbeat, h.events_ingested,
    h.quarantined, h.backlog_files, h.backlog_bytes, h.oldest_backlog_s, h.last_error,
    h.last_error_at,
    now() - h.last_heartbeat AS silent_for,
    (h.stopped_at IS NULL AND now() - h.last_heartbeat > interval '60 seconds') AS stale,
    h.stopped_at,
    CASE WHEN h.stopped_at IS NOT NULL THEN 'stopped'
         WHEN now() - h.last_heartbeat > interval '60 seconds' THEN 'stale'
         ELSE 'running' END AS state
FROM daemon_heartbeats h
WHERE h.last_heartbeat > now() - interval '7 days';
COMMENT ON VIEW daemon_status IS 'Daemons seen in the last 7 days; state is running, stopped (a clean stop) or stale (silent for over 60 s without a clean stop: crashed, hung or cut off).';
"""

DOWNGRADE = """
DROP VIEW daemon_status;
ALTER TABLE daemon_heartbeats DROP COLUMN stopped_at;
CREATE VIEW daemon_status AS
SELECT h.*,
    now() - h.last_heartbeat AS silent_for,
    (now() - h.last_heartbeat > interval '60 seconds') AS stale
FROM daemon_heartbeats h
WHERE h.last_heartbeat > now() - interval '7 days';
COMMENT ON VIEW daemon_status IS 'Daemons seen in the last 7 days; stale when silent for over 60 s (stopped, hung or cut off).';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
