"""The conversation archive: `messages`, one row per conversation entry of a transcript.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02

What changes:
- messages: one row per transcript entry that carries conversation (user prompts, assistant
  text, thinking and tool_use blocks, tool results, system entries, compaction summaries, and
  attachments as metadata), keyed by the transcript's own `uuid`, so the copies Claude Code
  makes on resume and in sidechains stay one row. Not partitioned: `session-db prune` deletes
  its rows by age (occurred_at), see docs/archive.md.
- search_vector: a generated tsvector over `text` ('english'), with a GIN index.
- content is compressed with lz4 where the server was built with it (else pglz, the default).
- conversation_turns: per user prompt, its final reply, joined with the `turns` view (0003)
  for the hook-timed duration, tool calls and cost, plus the turn's tokens from token_usage.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

MESSAGES = """
CREATE TABLE messages (
    id bigint GENERATED ALWAYS AS IDENTITY,
    uuid text NOT NULL,
    parent_uuid text,
    claude_session_id text,
    claude_agent_id text,
    agent_id uuid REFERENCES agents (id),
    host text,
    occurred_at timestamptz,
    role text NOT NULL,
    entry_type text NOT NULL,
    model text,
    cwd text,
    git_branch text,
    prompt_id text,
    message_id text,
    tool_use_id text,
    tool_name text,
    spawned_agent_id text,
    is_sidechain boolean NOT NULL DEFAULT false,
    content jsonb,
    text text,
    content_bytes bigint NOT NULL DEFAULT 0,
    content_sha256 text,
    transforms text[],
    transcript_path text,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    search_vector tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, coalesce(text, ''))) STORED,
    CONSTRAINT messages_pkey PRIMARY KEY (id),
    CONSTRAINT messages_uuid_key UNIQUE (uuid)
);
CREATE INDEX messages_claude_session_time_idx ON messages (claude_session_id, occurred_at);
CREATE INDEX messages_agent_idx ON messages (agent_id);
CREATE INDEX messages_occurred_idx ON messages (occurred_at);
CREATE INDEX messages_prompt_idx ON messages (claude_session_id, prompt_id) WHERE prompt_id IS NOT NULL;
CREATE INDEX messages_tool_use_id_idx ON messages (tool_use_id) WHERE tool_use_id IS NOT NULL;
CREATE INDEX messages_search_idx ON messages USING gin (search_vector);
COMMENT ON TABLE messages IS 'The conversation archive: one row per transcript entry that carries conversation (prompts, replies, thinking, tool calls and results, system entries, compaction summaries; attachments as metadata), keyed by the transcript uuid.';
COMMENT ON COLUMN messages.entry_type IS 'prompt, meta, compact_summary, tool_result, text, thinking, redacted_thinking, tool_use, the system subtype, or the attachment type.';
COMMENT ON COLUMN messages.content IS 'The entry''s content (a block, the prompt, the system fields; metadata only for attachments and with archive = metadata), redacted and capped like event payloads.';
COMMENT ON COLUMN messages.text IS 'The searchable plain text of content; NULL with archive = metadata.';
COMMENT ON COLUMN messages.content_bytes IS 'UTF-8 bytes of the content JSON as read, before redaction and caps.';
COMMENT ON COLUMN messages.content_sha256 IS 'sha256 of the content JSON as read, kept when a cap changed it and nothing was redacted.';
COMMENT ON COLUMN messages.spawned_agent_id IS 'For the tool_result of an Agent call: the subagent (claude_agent_id) it ran.';
"""

# lz4 only where the server was built with it (its name is then a value of the setting).
LZ4 = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE messages ALTER COLUMN content SET COMPRESSION lz4;
        ALTER TABLE messages ALTER COLUMN text SET COMPRESSION lz4;
    END IF;
END $$;
"""

CONVERSATION_TURNS = """
CREATE VIEW conversation_turns AS
SELECT
    p.claude_session_id,
    p.prompt_id,
    p.agent_id,
    p.uuid AS prompt_uuid,
    p.text AS prompt_text,
    p.occurred_at AS started_at,
    r.uuid AS reply_uuid,
    r.text AS reply_text,
    r.occurred_at AS replied_at,
    coalesce(t.duration_ms,
             round(extract(epoch FROM r.occurred_at - p.occurred_at) * 1000, 3)) AS duration_ms,
    CASE WHEN t.duration_ms IS NOT NULL THEN 'hooks'
         WHEN r.occurred_at IS NOT NULL THEN 'transcript' END AS duration_source,
    t.outcome,
    k.tool_uses,
    t.tool_calls,
    u.responses,
    u.input_tokens,
    u.output_tokens,
    u.cache_write_tokens,
    u.cache_read_tokens,
    coalesce(t.cost_usd, u.cost_usd) AS cost_usd
FROM messages p
LEFT JOIN turns t ON t.claude_session_id = p.claude_session_id AND t.prompt_id = p.prompt_id
LEFT JOIN LATERAL (
    SELECT m.uuid, m.text, m.occurred_at FROM messages m
    WHERE m.claude_session_id = p.claude_session_id AND m.prompt_id = p.prompt_id
      AND m.claude_agent_id IS NULL AND m.role = 'assistant' AND m.entry_type = 'text'
    ORDER BY m.occurred_at DESC, m.id DESC LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS tool_uses FROM messages m
    WHERE m.claude_session_id = p.claude_session_id AND m.prompt_id = p.prompt_id
      AND m.entry_type = 'tool_use'
) k ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS responses,
        coalesce(sum(c.input_tokens), 0) AS input_tokens,
        coalesce(sum(c.output_tokens), 0) AS output_tokens,
        coalesce(sum(c.cache_write_5m_tokens + c.cache_write_1h_tokens), 0) AS cache_write_tokens,
        coalesce(sum(c.cache_read_tokens), 0) AS cache_read_tokens,
        CASE WHEN bool_or(c.unpriced) THEN NULL ELSE coalesce(sum(c.cost_usd), 0) END AS cost_usd
    FROM token_usage_costs c
    WHERE c.claude_session_id = p.claude_session_id AND c.prompt_id = p.prompt_id
) u ON true
WHERE p.role = 'user' AND p.entry_type = 'prompt' AND p.claude_agent_id IS NULL
  AND p.prompt_id IS NOT NULL;
COMMENT ON VIEW conversation_turns IS 'One row per user prompt of the archive (messages): the prompt, its final assistant text reply, duration (the turns view''s hook timing, else prompt to reply in the transcript), tool_use blocks (subagents included), tool calls, tokens and cost of the prompt''s API responses.';
COMMENT ON COLUMN conversation_turns.tool_uses IS 'tool_use blocks in the archive with this prompt_id, subagents included.';
COMMENT ON COLUMN conversation_turns.tool_calls IS 'From the turns view (hook events); NULL without hook events.';
COMMENT ON COLUMN conversation_turns.cost_usd IS 'The turns view''s cost, else the sum over token_usage_costs with this prompt_id; NULL if a response is unpriced.';
"""


def upgrade() -> None:
    op.execute(MESSAGES)
    op.execute(LZ4)
    op.execute(CONVERSATION_TURNS)


def downgrade() -> None:
    op.execute("DROP VIEW conversation_turns")
    op.execute("DROP TABLE messages")
