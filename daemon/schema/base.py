"""The one MetaData every table joins, the value lists CHECK constraints name, column helpers."""

from __future__ import annotations

import sqlalchemy as sa

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


def one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]
