"""Reports (alembic 0009): project aliases, budgets, budget alerts, usage_hourly."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from daemon.schema.base import USAGE_COUNTERS, metadata, one_of

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
    sa.CheckConstraint(one_of("period", BUDGET_PERIODS), name="budgets_period_check"),
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
        "hour_utc",
        "claude_session_id",
        "agent_id",
        "model",
        "host",
        "cwd",
        "git_branch",
        "price_id",
        name="usage_hourly_key",
        postgresql_nulls_not_distinct=True,
    ),
    sa.Index("usage_hourly_session_idx", "claude_session_id"),
    comment="Exact rollup of token_usage per UTC hour of occurred_at (-infinity: none) and session, agent, "
    "model, host, cwd, branch and price, kept by statement triggers; first_at/last_at bound the responses "
    "(they may stay wider after a delete). Rows whose responses fell to 0 are kept.",
)
