"""Workflow tables: sessions and agents from state.json, the agent_logs hook events, watch_roots."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from daemon.schema.base import (
    AGENT_STATUSES,
    EVENT_CATEGORIES,
    SESSION_STATUSES,
    SESSION_TYPES,
    metadata,
    one_of,
    timestamps,
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("slug", sa.Text, nullable=False),
    sa.Column("title", sa.Text),
    sa.Column("status", sa.Text, nullable=False, server_default="created"),
    sa.Column("session_type", sa.Text),
    sa.Column("working_dir", sa.Text),
    sa.Column("state_path", sa.Text),
    sa.Column(
        "total_cost",
        sa.Numeric,
        comment="The orchestrator's own claim from state.json, not computed.",
    ),
    sa.Column("state", pg.JSONB),
    sa.Column("state_sha256", sa.Text),
    *timestamps(),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("host", "slug", name="sessions_host_slug_key"),
    sa.CheckConstraint(one_of("status", SESSION_STATUSES), name="sessions_status_check"),
    sa.CheckConstraint(one_of("session_type", SESSION_TYPES), name="sessions_session_type_check"),
    comment="Workflow sessions, one per agents/sessions/<slug>/state.json per host.",
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column(
        "session_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("sessions.id", name="agents_session_id_fkey"),
    ),
    sa.Column(
        "parent_agent_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("agents.id", name="agents_parent_agent_id_fkey"),
    ),
    sa.Column("agent_type", sa.Text),
    sa.Column("sdk_session_id", sa.Text),
    sa.Column("claude_agent_id", sa.Text),
    sa.Column("model", sa.Text),
    sa.Column("model_alias", sa.Text),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("status_source", sa.Text, nullable=False, server_default="events"),
    sa.Column("checkpoint_id", sa.Text),
    sa.Column("cost_usd", sa.Numeric),
    sa.Column("cwd", sa.Text),
    sa.Column("host", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
    *timestamps(),
    sa.CheckConstraint(one_of("status", AGENT_STATUSES), name="agents_status_check"),
    sa.CheckConstraint("status_source IN ('events', 'state')", name="agents_status_source_check"),
    sa.Index(
        "agents_sdk_session_claude_agent_key",
        "sdk_session_id",
        "claude_agent_id",
        unique=True,
        postgresql_nulls_not_distinct=True,
        postgresql_where=sa.text("sdk_session_id IS NOT NULL"),
    ),
    sa.Index("agents_session_id_idx", "session_id"),
    sa.Index("agents_parent_agent_id_idx", "parent_agent_id"),
    comment="One row per Claude Code session (claude_agent_id NULL) and per subagent.",
)

# Partitioned by UTC month of occurred_at (alembic 0005, daemon/partitions.py): every unique key
# includes the partition column, so the idempotency key is (event_uid, occurred_at).
agent_logs = sa.Table(
    "agent_logs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column(
        "event_uid",
        sa.Text,
        nullable=False,
        comment="Idempotency key, unique with occurred_at: the spool file name (host-qualified), "
        "or phase:<host>:<slug>:<from>:<to>:<sha256>.",
    ),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("claude_session_id", sa.Text),
    sa.Column("claude_agent_id", sa.Text),
    sa.Column(
        "agent_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("agents.id", name="agent_logs_agent_id_fkey"),
    ),
    sa.Column(
        "session_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("sessions.id", name="agent_logs_session_id_fkey"),
    ),
    sa.Column("event_category", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("tool_name", sa.Text),
    sa.Column("tool_use_id", sa.Text),
    sa.Column("prompt_id", sa.Text),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, primary_key=True),
    sa.Column(
        "ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("cwd", sa.Text),
    sa.Column("project_dir", sa.Text),
    sa.Column("workflow_slug", sa.Text),
    sa.Column("agent_type", sa.Text),
    sa.Column("payload", pg.JSONB),
    sa.Column("payload_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("payload_sha256", sa.Text),
    sa.Column(
        "transforms",
        pg.ARRAY(sa.Text),
        comment="Changes made to the payload before storing it (nul_escaped, bom_stripped, "
        "truncated…, redacted…, dropped…). payload_sha256 is the sha256 of the original bytes when "
        "the payload was changed and nothing was redacted; a redacted row keeps no hash of the "
        "original.",
    ),
    sa.UniqueConstraint("event_uid", "occurred_at", name="agent_logs_event_uid_occurred_at_key"),
    sa.CheckConstraint(
        one_of("event_category", EVENT_CATEGORIES), name="agent_logs_event_category_check"
    ),
    sa.Index("agent_logs_claude_session_time_idx", "claude_session_id", "occurred_at"),
    sa.Index("agent_logs_agent_time_idx", "agent_id", "occurred_at"),
    sa.Index("agent_logs_session_time_idx", "session_id", "occurred_at"),
    sa.Index("agent_logs_event_type_time_idx", "event_type", "occurred_at"),
    sa.Index(
        "agent_logs_tool_use_id_idx",
        "tool_use_id",
        postgresql_where=sa.text("tool_use_id IS NOT NULL"),
    ),
    sa.Index(
        "agent_logs_unlinked_agent_idx",
        "agent_id",
        postgresql_where=sa.text("session_id IS NULL AND agent_id IS NOT NULL"),
    ),
    sa.Index(
        "agent_logs_permission_request_idx",
        "claude_session_id",
        "occurred_at",
        postgresql_where=sa.text("event_type = 'PermissionRequest'"),
    ),
    comment="One row per Claude Code hook event (hook) or observed workflow phase change (phase). "
    "Partitioned by UTC month of occurred_at (agent_logs_YYYY_MM, agent_logs_default for months "
    "without a partition).",
    postgresql_partition_by="RANGE (occurred_at)",
)

watch_roots = sa.Table(
    "watch_roots",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column(
        "discovered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    comment="agents/sessions folders the daemon on each host watches (from SESSION_DB_WATCH or discovered in events).",
)
