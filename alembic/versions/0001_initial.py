"""Initial schema: sessions, agents, agent_logs, watch_roots.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    host text NOT NULL,
    slug text NOT NULL,
    title text,
    status text NOT NULL DEFAULT 'created',
    session_type text,
    working_dir text,
    state_path text,
    total_cost numeric,
    state jsonb,
    state_sha256 text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CONSTRAINT sessions_host_slug_key UNIQUE (host, slug),
    CONSTRAINT sessions_status_check
        CHECK (status IN ('created', 'spec', 'plan', 'build', 'docs', 'complete', 'failed')),
    CONSTRAINT sessions_session_type_check CHECK (session_type IN ('full', 'quick', 'research'))
);
COMMENT ON TABLE sessions IS 'Workflow sessions, one per agents/sessions/<slug>/state.json per host.';
COMMENT ON COLUMN sessions.total_cost IS 'The orchestrator''s own claim from state.json, not computed.';

CREATE TABLE agents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid CONSTRAINT agents_session_id_fkey REFERENCES sessions (id),
    parent_agent_id uuid CONSTRAINT agents_parent_agent_id_fkey REFERENCES agents (id),
    agent_type text,
    sdk_session_id text,
    claude_agent_id text,
    model text,
    model_alias text,
    status text NOT NULL DEFAULT 'pending',
    status_source text NOT NULL DEFAULT 'events',
    checkpoint_id text,
    cost_usd numeric,
    cwd text,
    host text,
    started_at timestamptz,
    completed_at timestamptz,
    last_event_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agents_status_check CHECK (status IN ('pending', 'executing', 'complete', 'failed')),
    CONSTRAINT agents_status_source_check CHECK (status_source IN ('events', 'state'))
);
COMMENT ON TABLE agents IS 'One row per Claude Code session (claude_agent_id NULL) and per subagent.';
CREATE UNIQUE INDEX agents_sdk_session_claude_agent_key
    ON agents (sdk_session_id, claude_agent_id) NULLS NOT DISTINCT
    WHERE sdk_session_id IS NOT NULL;
CREATE INDEX agents_session_id_idx ON agents (session_id);
CREATE INDEX agents_parent_agent_id_idx ON agents (parent_agent_id);

CREATE TABLE agent_logs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_uid text NOT NULL,
    host text NOT NULL,
    claude_session_id text,
    claude_agent_id text,
    agent_id uuid CONSTRAINT agent_logs_agent_id_fkey REFERENCES agents (id),
    session_id uuid CONSTRAINT agent_logs_session_id_fkey REFERENCES sessions (id),
    event_category text NOT NULL,
    event_type text NOT NULL,
    tool_name text,
    tool_use_id text,
    prompt_id text,
    occurred_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    cwd text,
    project_dir text,
    workflow_slug text,
    agent_type text,
    payload jsonb,
    payload_bytes bigint NOT NULL DEFAULT 0,
    payload_sha256 text,
    transforms text[],
    CONSTRAINT agent_logs_event_uid_key UNIQUE (event_uid),
    CONSTRAINT agent_logs_event_category_check CHECK (event_category IN ('hook', 'phase'))
);
COMMENT ON TABLE agent_logs IS 'One row per Claude Code hook event (hook) or observed workflow phase change (phase).';
COMMENT ON COLUMN agent_logs.event_uid IS 'Idempotency key: the spool file name (host-qualified), or phase:<host>:<slug>:<from>:<to>:<sha256>.';
COMMENT ON COLUMN agent_logs.transforms IS 'Changes made to the payload before storing it, e.g. {nul_escaped}; payload_sha256 is then the sha256 of the original bytes.';
CREATE INDEX agent_logs_claude_session_time_idx ON agent_logs (claude_session_id, occurred_at);
CREATE INDEX agent_logs_agent_time_idx ON agent_logs (agent_id, occurred_at);
CREATE INDEX agent_logs_session_time_idx ON agent_logs (session_id, occurred_at);
CREATE INDEX agent_logs_event_type_time_idx ON agent_logs (event_type, occurred_at);
CREATE INDEX agent_logs_tool_use_id_idx ON agent_logs (tool_use_id) WHERE tool_use_id IS NOT NULL;
CREATE INDEX agent_logs_unlinked_agent_idx ON agent_logs (agent_id)
    WHERE session_id IS NULL AND agent_id IS NOT NULL;

CREATE TABLE watch_roots (
    host text NOT NULL,
    path text NOT NULL,
    source text NOT NULL,
    discovered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, path)
);
COMMENT ON TABLE watch_roots IS 'agents/sessions folders the daemon on each host watches (from SESSION_DB_WATCH or discovered in events).';
"""

# lz4 TOAST compression exists when the server was built with it (PostgreSQL 14+).
LZ4_PAYLOAD = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE agent_logs ALTER COLUMN payload SET COMPRESSION lz4;
    END IF;
END
$$;
"""

DOWNGRADE = """
DROP TABLE watch_roots;
DROP TABLE agent_logs;
DROP TABLE agents;
DROP TABLE sessions;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    op.execute(LZ4_PAYLOAD)


def downgrade() -> None:
    op.execute(DOWNGRADE)
