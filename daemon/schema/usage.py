"""Token usage and cost tables: responses, transcript files, prices, the cost engine, heartbeats."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from daemon.schema.base import USAGE_COUNTERS, metadata, timestamps

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
    *timestamps(),
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
