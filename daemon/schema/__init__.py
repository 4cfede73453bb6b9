"""The tables as SQLAlchemy metadata: what the Alembic revisions create, described once more.

The revisions in alembic/versions own the schema; the tables are described by area in this
package (workflows, usage, archive, reports). This description serves three readers:
Alembic's env.py (autogenerate), the schema check at daemon start (which columns and unique keys
the daemon writes: WRITTEN_TABLES), and `roles` (which tables to grant). The queries themselves
are SQL text in daemon/db.py. tests/migrations/test_migrations.py::test_schema_metadata_has_no_drift
compares this package with a migrated database, types and server defaults included.
"""

from __future__ import annotations

from daemon.schema.archive import MESSAGE_ROLES, messages
from daemon.schema.base import (
    AGENT_STATUSES,
    EVENT_CATEGORIES,
    SESSION_STATUSES,
    SESSION_TYPES,
    USAGE_COUNTERS,
    metadata,
)
from daemon.schema.reports import (
    BUDGET_PERIODS,
    budget_alerts,
    budgets,
    project_aliases,
    usage_hourly,
)
from daemon.schema.usage import (
    cost_state_models,
    cost_states,
    daemon_heartbeats,
    prices,
    token_usage,
    transcript_files,
)
from daemon.schema.workflows import agent_logs, agents, sessions, watch_roots

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

__all__ = [
    "AGENT_STATUSES",
    "BUDGET_PERIODS",
    "EVENT_CATEGORIES",
    "MESSAGE_ROLES",
    "SESSION_STATUSES",
    "SESSION_TYPES",
    "USAGE_COUNTERS",
    "WRITTEN_TABLES",
    "agent_logs",
    "agents",
    "budget_alerts",
    "budgets",
    "cost_state_models",
    "cost_states",
    "daemon_heartbeats",
    "messages",
    "metadata",
    "prices",
    "project_aliases",
    "sessions",
    "token_usage",
    "transcript_files",
    "usage_hourly",
    "watch_roots",
]
