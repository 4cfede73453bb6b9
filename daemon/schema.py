"""The tables as SQLAlchemy metadata: what the Alembic revisions create, described once more.

The revisions in alembic/versions own the schema. This description serves three readers:
Alembic's env.py (autogenerate), the schema check at daemon start (which columns and unique keys
the daemon writes: WRITTEN_TABLES), and `roles` (which tables to grant). The queries themselves
are SQL text in daemon/db.py. tests/migrations/test_migrations.py::test_schema_metadata_has_no_drift
compares this module with a migrated database, types and server defaults included.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

SESSION_STATUSES = ("created", "spec", "plan", "build", "docs", "complete", "failed")
SESSION_TYPES = ("full", "quick", "research")
AGENT_STATUSES = ("pending", "executing", "complete", "failed")
EVENT_CATEGORIES = ("hook", "phase")
USAGE_COUNTERS = (  # token_usage counters; duplicates of one response merge by the largest value of each
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "web_search_requests",
    "web_fetch_requests",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


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
    *_timestamps(),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("host", "slug", name="sessions_host_slug_key"),
    sa.CheckConstraint(_in("status", SESSION_STATUSES), name="sessions_status_check"),
    sa.CheckConstraint(_in("session_type", SESSION_TYPES), name="sessions_session_type_check"),
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
    *_timestamps(),
    sa.CheckConstraint(_in("status", AGENT_STATUSES), name="agents_status_check"),
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
        comment="Changes made to the payload before storing it, e.g. {nul_escaped}; "
        "payload_sha256 is then the sha256 of the original bytes.",
    ),
    sa.UniqueConstraint("event_uid", "occurred_at", name="agent_logs_event_uid_occurred_at_key"),
    sa.CheckConstraint(
        _in("event_category", EVENT_CATEGORIES), name="agent_logs_event_category_check"
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

token_usage = sa.Table(
    "token_usage",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("claude_session_id", sa.Text),
    sa.Column("claude_agent_id", sa.Text),
    sa.Column(
        "agent_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("agents.id", name="token_usage_agent_id_fkey"),
    ),
    sa.Column("prompt_id", sa.Text),
    sa.Column("model", sa.Text),
    *[
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in USAGE_COUNTERS
    ],
    sa.Column("speed", sa.Text),
    sa.Column("service_tier", sa.Text),
    sa.Column("inference_geo", sa.Text),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("is_sidechain", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("host", sa.Text),
    sa.Column("transcript_path", sa.Text),
    sa.Column(
        "ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    # cost engine (0006): resolved and priced at write time by triggers
    sa.Column(
        "price_id",
        sa.BigInteger,
        comment="prices.id resolved by price_for at write time (trigger); NULL: unpriced.",
    ),
    sa.Column(
        "cost_usd",
        sa.Numeric,
        comment="USD at price_id (usage_cost_usd), kept current by triggers on token_usage and prices.",
    ),
    # Reports (alembic 0009): where the response was made, from its transcript line.
    sa.Column(
        "cwd",
        sa.Text,
        comment="cwd of the transcript line that carried the response (the project directory).",
    ),
    sa.Column(
        "git_branch",
        sa.Text,
        comment="gitBranch of the transcript line that carried the response.",
    ),
    sa.UniqueConstraint("message_id", "request_id", name="token_usage_message_request_key"),
    sa.Index("token_usage_claude_session_idx", "claude_session_id"),
    sa.Index("token_usage_agent_idx", "agent_id"),
    sa.Index("token_usage_occurred_idx", "occurred_at"),
    sa.Index(
        "token_usage_prompt_idx", "prompt_id", postgresql_where=sa.text("prompt_id IS NOT NULL")
    ),
    sa.Index("token_usage_session_model_idx", "claude_session_id", "model"),
    comment="One row per API response, deduplicated across transcript lines and files by (message_id, request_id).",
)

transcript_files = sa.Table(
    "transcript_files",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("claude_session_id", sa.Text),
    sa.Column("claude_agent_id", sa.Text),
    sa.Column("byte_offset", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("file_dev", sa.BigInteger),
    sa.Column("file_ino", sa.BigInteger),
    sa.Column("head_sha256", sa.Text),
    sa.Column("last_prompt_id", sa.Text),
    sa.Column("lines_read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("missing_since", sa.DateTime(timezone=True)),
    *_timestamps(),
    comment="Claude Code transcripts read so far: the byte offset is committed with the rows it produced.",
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("model_prefix", sa.Text, nullable=False),
    sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
    *[
        sa.Column(f"{name}_usd_per_mtok", sa.Numeric, nullable=False)
        for name in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
    ],
    sa.Column("long_context_threshold_tokens", sa.BigInteger),
    sa.Column("long_context_input_multiplier", sa.Numeric, nullable=False, server_default="1"),
    sa.Column("long_context_output_multiplier", sa.Numeric, nullable=False, server_default="1"),
    sa.Column("fast_multiplier", sa.Numeric, nullable=False, server_default="1"),
    sa.Column("data_residency_multiplier", sa.Numeric, nullable=False, server_default="1"),
    sa.Column("web_search_usd_per_1k", sa.Numeric, nullable=False, server_default="10"),
    sa.Column("note", sa.Text),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("model_prefix", "effective_from", name="prices_model_prefix_effective_key"),
    comment="USD per million tokens by model key (model_prefix: matched by identity, see price_for) "
    "from effective_from on. Costs are stored per response by triggers, and a change here re-prices "
    "history.",
)

# --- cost engine (0006) ---------------------------------------------------------------------

token_usage_hourly = sa.Table(
    "token_usage_hourly",
    metadata,
    sa.Column("hour_utc", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    *[
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in (
            "responses",
            "input_tokens",
            "output_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "cache_read_tokens",
        )
    ],
    sa.Column("priced_cost_usd", sa.Numeric, nullable=False, server_default="0"),
    sa.Column("unpriced_responses", sa.BigInteger, nullable=False, server_default="0"),
    comment="Exact rollup of token_usage per UTC hour of occurred_at (-infinity: none) and model "
    "('': none), kept by statement triggers on token_usage.",
)

cost_states = sa.Table(
    "cost_states",
    metadata,
    sa.Column("claude_session_id", sa.Text, primary_key=True),
    sa.Column("host", sa.Text),
    sa.Column("transcript_path", sa.Text),
    sa.Column("total_cost_usd", sa.Numeric),
    sa.Column("total_api_duration_ms", sa.Numeric),
    sa.Column("total_api_duration_without_retries_ms", sa.Numeric),
    sa.Column("total_tool_duration_ms", sa.Numeric),
    sa.Column("total_duration_ms", sa.Numeric),
    sa.Column("lines_added", sa.BigInteger),
    sa.Column("lines_removed", sa.BigInteger),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("has_unknown_model_cost", sa.Boolean),
    sa.Column("compacted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    comment="Claude Code's own running totals per session: the latest cost-state transcript line "
    "(the one with the largest totalDuration, then totalCostUSD; both only grow within a session, "
    "resumes included). compacted: a compact_boundary line was seen.",
)

cost_state_models = sa.Table(
    "cost_state_models",
    metadata,
    sa.Column("claude_session_id", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    *[
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in (
            "input_tokens",
            "output_tokens",
            "thinking_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "web_search_requests",
        )
    ],
    sa.Column("cost_usd", sa.Numeric),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    comment="modelUsage of the latest cost-state line per session (cost_states): Claude Code's "
    "tokens and costUSD per model.",
)

daemon_heartbeats = sa.Table(
    "daemon_heartbeats",
    metadata,
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("pid", sa.Integer, primary_key=True),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("spool", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column(
        "last_heartbeat", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("events_ingested", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("quarantined", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("backlog_files", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("backlog_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("oldest_backlog_s", sa.Float(precision=53)),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_at", sa.DateTime(timezone=True)),
    # reliability-processes (revision 0007b): a clean stop is recorded, so status tells it from a crash
    sa.Column(
        "stopped_at",
        sa.DateTime(timezone=True),
        comment="When the daemon stopped cleanly (SIGTERM/SIGINT); NULL while it runs or after a crash.",
    ),
    comment="One row per daemon run, refreshed every scan interval while it runs.",
)

# --- conversation archive (alembic 0008, daemon/messages.py) ----------------------------------

MESSAGE_ROLES = ("user", "assistant", "system", "attachment")
# Partitioned by UTC month of occurred_at (alembic 0008b, daemon/partitions.py) like agent_logs:
# every unique key includes the partition column. occurred_at stays nullable (an entry without a
# timestamp lands in messages_default), so there is no primary key and the keys are NULLS NOT
# DISTINCT: the archive key is (uuid, occurred_at).
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
    sa.Column("uuid", sa.Text, nullable=False),
    sa.Column("parent_uuid", sa.Text),
    sa.Column("claude_session_id", sa.Text),
    sa.Column("claude_agent_id", sa.Text),
    sa.Column(
        "agent_id", pg.UUID(as_uuid=True), sa.ForeignKey("agents.id", name="messages_agent_id_fkey")
    ),
    sa.Column("host", sa.Text),
    sa.Column(
        "occurred_at",
        sa.DateTime(timezone=True),
        comment="The entry's timestamp; NULL if it has none (the row is then in messages_default "
        "and never pruned).",
    ),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column(
        "entry_type",
        sa.Text,
        nullable=False,
        comment="prompt, meta, compact_summary, tool_result, text, thinking, redacted_thinking, "
        "tool_use, the system subtype, or the attachment type.",
    ),
    sa.Column("model", sa.Text),
    sa.Column("cwd", sa.Text),
    sa.Column("git_branch", sa.Text),
    sa.Column("prompt_id", sa.Text),
    sa.Column("message_id", sa.Text),
    sa.Column("tool_use_id", sa.Text),
    sa.Column("tool_name", sa.Text),
    sa.Column(
        "spawned_agent_id",
        sa.Text,
        comment="For the tool_result of an Agent call: the subagent (claude_agent_id) it ran.",
    ),
    sa.Column("is_sidechain", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column(
        "content",
        pg.JSONB,
        comment="The entry's content (a block, the prompt, the system fields; metadata only for "
        "attachments and with archive = metadata), redacted and capped like event payloads.",
    ),
    sa.Column(
        "text",
        sa.Text,
        comment="The searchable plain text of content; NULL with archive = metadata.",
    ),
    sa.Column(
        "content_bytes",
        sa.BigInteger,
        nullable=False,
        server_default="0",
        comment="UTF-8 bytes of the content JSON as read, before redaction and caps.",
    ),
    sa.Column(
        "content_sha256",
        sa.Text,
        comment="sha256 of the content JSON as read, kept when a cap changed it and nothing was redacted.",
    ),
    sa.Column("transforms", pg.ARRAY(sa.Text)),
    sa.Column("transcript_path", sa.Text),
    sa.Column(
        "ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "search_vector",
        pg.TSVECTOR,
        sa.Computed("to_tsvector('english'::regconfig, coalesce(text, ''))", persisted=True),
    ),
    sa.UniqueConstraint(
        "id", "occurred_at", name="messages_id_occurred_at_key", postgresql_nulls_not_distinct=True
    ),
    sa.UniqueConstraint(
        "uuid",
        "occurred_at",
        name="messages_uuid_occurred_at_key",
        postgresql_nulls_not_distinct=True,
    ),
    sa.Index("messages_claude_session_time_idx", "claude_session_id", "occurred_at"),
    sa.Index("messages_agent_idx", "agent_id"),
    sa.Index("messages_occurred_idx", "occurred_at"),
    sa.Index(
        "messages_prompt_idx",
        "claude_session_id",
        "prompt_id",
        postgresql_where=sa.text("prompt_id IS NOT NULL"),
    ),
    sa.Index(
        "messages_tool_use_id_idx",
        "tool_use_id",
        postgresql_where=sa.text("tool_use_id IS NOT NULL"),
    ),
    sa.Index("messages_search_idx", "search_vector", postgresql_using="gin"),
    comment="The conversation archive: one row per transcript entry that carries conversation "
    "(prompts, replies, thinking, tool calls and results, system entries, compaction summaries; "
    "attachments as metadata), keyed by the transcript uuid (unique with occurred_at). Partitioned "
    "by UTC month of occurred_at (messages_YYYY_MM, messages_default for months without a partition "
    "and rows without a timestamp).",
)

# --- reports (alembic 0009): project aliases and budgets ---------------------------------------
BUDGET_PERIODS = ("daily", "weekly", "monthly")

project_aliases = sa.Table(
    "project_aliases",
    metadata,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    comment="A working directory (on any host) counted as the project NAME; several paths may share a name.",
)

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("project", sa.Text, nullable=False, server_default=""),
    sa.Column("limit_usd", sa.Numeric, nullable=False),
    sa.Column("tz", sa.Text, nullable=False, server_default="UTC"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("period", "project", name="budgets_period_project_key"),
    sa.CheckConstraint(_in("period", BUDGET_PERIODS), name="budgets_period_check"),
    sa.CheckConstraint("limit_usd > 0", name="budgets_limit_usd_check"),
    comment="Spending limits per calendar day, ISO week or month in zone tz; project '' means all projects.",
)

budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column(
        "budget_id",
        sa.BigInteger,
        sa.ForeignKey("budgets.id", name="budget_alerts_budget_id_fkey", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("spent_usd", sa.Numeric, nullable=False),
    sa.Column(
        "alerted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    comment="One row per budget and period whose limit was exceeded (the daemon logs budget_exceeded once, "
    "when it inserts the row).",
)

usage_hourly = sa.Table(
    "usage_hourly",
    metadata,
    sa.Column("hour_utc", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claude_session_id", sa.Text),
    sa.Column("agent_id", pg.UUID(as_uuid=True)),
    sa.Column("model", sa.Text),
    sa.Column("host", sa.Text),
    sa.Column("cwd", sa.Text),
    sa.Column("git_branch", sa.Text),
    sa.Column("price_id", sa.BigInteger),
    *[
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in ("responses", *USAGE_COUNTERS[:5])
    ],
    sa.Column("priced_cost_usd", sa.Numeric, nullable=False, server_default="0"),
    sa.Column("unpriced_responses", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cache_savings_usd", sa.Numeric, nullable=False, server_default="0"),
    sa.Column("first_at", sa.DateTime(timezone=True)),
    sa.Column("last_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint(
        "hour_utc", "claude_session_id", "agent_id", "model", "host", "cwd", "git_branch", "price_id",
        name="usage_hourly_key",
        postgresql_nulls_not_distinct=True,
    ),
    sa.Index("usage_hourly_session_idx", "claude_session_id"),
    comment="Exact rollup of token_usage per UTC hour of occurred_at (-infinity: none) and session, agent, "
    "model, host, cwd, branch and price, kept by statement triggers; first_at/last_at bound the responses "
    "(they may stay wider after a delete). Rows whose responses fell to 0 are kept.",
)

# Tables the daemon writes (ingest, state.json, transcripts, heartbeats): a database at a newer,
# unknown revision is still usable when these keep every column and unique key described here
# (daemon/migrations.py, compatibility_problems).
WRITTEN_TABLES = (
    sessions,
    agents,
    agent_logs,
    watch_roots,
    token_usage,
    transcript_files,
    daemon_heartbeats,
    messages,
    cost_states,
    cost_state_models,
    budget_alerts,  # reports: the daemon's budget check
)
