"""Token usage from transcripts, a versioned price table, and cost views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE token_usage (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id text NOT NULL,
    request_id text NOT NULL,
    claude_session_id text,
    claude_agent_id text,
    agent_id uuid CONSTRAINT token_usage_agent_id_fkey REFERENCES agents (id),
    prompt_id text,
    model text,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    web_search_requests bigint NOT NULL DEFAULT 0,
    web_fetch_requests bigint NOT NULL DEFAULT 0,
    speed text,
    service_tier text,
    inference_geo text,
    occurred_at timestamptz,
    is_sidechain boolean NOT NULL DEFAULT false,
    host text,
    transcript_path text,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT token_usage_message_request_key UNIQUE (message_id, request_id)
);
COMMENT ON TABLE token_usage IS 'One row per API response, deduplicated across transcript lines and files by (message_id, request_id).';
CREATE INDEX token_usage_claude_session_idx ON token_usage (claude_session_id);
CREATE INDEX token_usage_agent_idx ON token_usage (agent_id);
CREATE INDEX token_usage_occurred_idx ON token_usage (occurred_at);
CREATE INDEX token_usage_prompt_idx ON token_usage (prompt_id) WHERE prompt_id IS NOT NULL;

CREATE TABLE transcript_files (
    host text NOT NULL,
    path text NOT NULL,
    claude_session_id text,
    claude_agent_id text,
    byte_offset bigint NOT NULL DEFAULT 0,
    file_dev bigint,
    file_ino bigint,
    head_sha256 text,
    last_prompt_id text,
    lines_read bigint NOT NULL DEFAULT 0,
    missing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, path)
);
COMMENT ON TABLE transcript_files IS 'Claude Code transcripts read so far: the byte offset is committed with the rows it produced.';

CREATE TABLE prices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_prefix text NOT NULL,
    effective_from timestamptz NOT NULL,
    input_usd_per_mtok numeric NOT NULL,
    output_usd_per_mtok numeric NOT NULL,
    cache_write_5m_usd_per_mtok numeric NOT NULL,
    cache_write_1h_usd_per_mtok numeric NOT NULL,
    cache_read_usd_per_mtok numeric NOT NULL,
    long_context_threshold_tokens bigint,
    long_context_input_multiplier numeric NOT NULL DEFAULT 1,
    long_context_output_multiplier numeric NOT NULL DEFAULT 1,
    fast_multiplier numeric NOT NULL DEFAULT 1,
    data_residency_multiplier numeric NOT NULL DEFAULT 1,
    web_search_usd_per_1k numeric NOT NULL DEFAULT 10,
    note text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT prices_model_prefix_effective_key UNIQUE (model_prefix, effective_from)
);
COMMENT ON TABLE prices IS 'USD per million tokens by model prefix (longest prefix wins) from effective_from on. Costs are computed from it in views, so a correction re-prices history.';
"""

# List prices as published 2026-08-22 (docs/design/claude-code.md §11), valid for all history.
# (prefix, input, 5m write, 1h write, cache read, output, long-context threshold, lc in ×, lc out ×,
#  fast ×, data residency ×). Long context: Sonnet 4/4.5 re-price a request whose input side
# (input + cache writes + cache reads) exceeds 200k at $6/$22.50 (2× input side, 1.5× output).
# Fast mode: Opus 5 / 4.8 are 2×; Opus 4.6/4.7 6× (the rate ccusage's table carries).
# Data residency (inference_geo = 'us'): 1.1× on 4.6+ models.
SEED = [
    ("claude-opus-4-5", 5, 6.25, 10, 0.50, 25, None, 1, 1, 1, 1),
    ("claude-opus-4-6", 5, 6.25, 10, 0.50, 25, None, 1, 1, 6, 1.1),
    ("claude-opus-4-7", 5, 6.25, 10, 0.50, 25, None, 1, 1, 6, 1.1),
    ("claude-opus-4-8", 5, 6.25, 10, 0.50, 25, None, 1, 1, 2, 1.1),
    ("claude-opus-5", 5, 6.25, 10, 0.50, 25, None, 1, 1, 2, 1.1),
    ("claude-opus-4-20250514", 15, 18.75, 30, 1.50, 75, None, 1, 1, 1, 1),
    ("claude-opus-4-1", 15, 18.75, 30, 1.50, 75, None, 1, 1, 1, 1),
    ("claude-sonnet-4-20250514", 3, 3.75, 6, 0.30, 15, 200000, 2, 1.5, 1, 1),
    ("claude-sonnet-4-5", 3, 3.75, 6, 0.30, 15, 200000, 2, 1.5, 1, 1),
    ("claude-sonnet-4-6", 3, 3.75, 6, 0.30, 15, None, 1, 1, 1, 1.1),
    ("claude-sonnet-5", 2, 2.50, 4, 0.20, 10, None, 1, 1, 1, 1.1),
    ("claude-haiku-4-5", 1, 1.25, 2, 0.10, 5, None, 1, 1, 1, 1),
    ("claude-3-5-haiku", 0.80, 1, 1.60, 0.08, 4, None, 1, 1, 1, 1),
    ("claude-fable-5", 10, 12.50, 20, 1, 50, None, 1, 1, 1, 1.1),
    ("claude-mythos-5", 10, 12.50, 20, 1, 50, None, 1, 1, 1, 1.1),
]

VIEWS = """
CREATE VIEW token_usage_costs AS
SELECT u.*,
    p.id AS price_id,
    p.model_prefix AS price_model_prefix,
    (p.id IS NULL) AS unpriced,
    CASE WHEN p.id IS NOT NULL THEN
        ((u.input_tokens * p.input_usd_per_mtok
          + u.cache_write_5m_tokens * p.cache_write_5m_usd_per_mtok
          + u.cache_write_1h_tokens * p.cache_write_1h_usd_per_mtok
          + u.cache_read_tokens * p.cache_read_usd_per_mtok) * m.long_input
         + u.output_tokens * p.output_usd_per_mtok * m.long_output) / 1000000
        * CASE WHEN u.speed = 'fast' THEN p.fast_multiplier ELSE 1 END
        * CASE WHEN lower(u.inference_geo) = 'us' THEN p.data_residency_multiplier ELSE 1 END
        + u.web_search_requests * p.web_search_usd_per_1k / 1000
    END AS cost_usd
FROM token_usage u
LEFT JOIN LATERAL (
    SELECT * FROM prices p
    WHERE u.model IS NOT NULL AND starts_with(u.model, p.model_prefix)
      AND p.effective_from <= coalesce(u.occurred_at, u.ingested_at)
    ORDER BY length(p.model_prefix) DESC, p.effective_from DESC
    LIMIT 1
) p ON true
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN u.input_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens + u.cache_read_tokens
                  > p.long_context_threshold_tokens
             THEN p.long_context_input_multiplier ELSE 1 END AS long_input,
        CASE WHEN u.input_tokens + u.cache_write_5m_tokens + u.cache_write_1h_tokens + u.cache_read_tokens
                  > p.long_context_threshold_tokens
             THEN p.long_context_output_multiplier ELSE 1 END AS long_output
) m;
COMMENT ON VIEW token_usage_costs IS 'token_usage priced at the price in effect at the response time; cost_usd NULL (unpriced) for unknown models.';

CREATE VIEW agent_costs AS
SELECT a.id AS agent_id, a.session_id, a.sdk_session_id AS claude_session_id, a.claude_agent_id,
    a.parent_agent_id, a.agent_type, a.status, a.started_at, a.completed_at,
    count(c.id) AS responses,
    coalesce(sum(c.input_tokens), 0) AS input_tokens,
    coalesce(sum(c.output_tokens), 0) AS output_tokens,
    coalesce(sum(c.cache_write_5m_tokens), 0) AS cache_write_5m_tokens,
    coalesce(sum(c.cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
    coalesce(sum(c.cache_read_tokens), 0) AS cache_read_tokens,
    CASE WHEN bool_or(c.unpriced) THEN NULL ELSE coalesce(sum(c.cost_usd), 0) END AS cost_usd,
    coalesce(sum(c.cost_usd), 0) AS priced_cost_usd,
    count(c.id) FILTER (WHERE c.unpriced) AS unpriced_responses,
    array_agg(DISTINCT c.model) FILTER (WHERE c.model IS NOT NULL) AS models,
    min(c.occurred_at) AS first_response_at,
    max(c.occurred_at) AS last_response_at
FROM agents a
LEFT JOIN token_usage_costs c ON c.agent_id = a.id
GROUP BY a.id;
COMMENT ON VIEW agent_costs IS 'Tokens and computed cost per agents row (a Claude Code session or one subagent). cost_usd is NULL when a response has no price; priced_cost_usd sums the rest.';

CREATE VIEW claude_session_costs AS
WITH u AS (
    SELECT claude_session_id,
        count(*) AS responses,
        count(DISTINCT claude_agent_id) AS subagents,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
        sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
        sum(cache_read_tokens) AS cache_read_tokens,
        bool_or(unpriced) AS any_unpriced,
        sum(cost_usd) AS priced_cost_usd,
        count(*) FILTER (WHERE unpriced) AS unpriced_responses,
        min(occurred_at) AS first_response_at,
        max(occurred_at) AS last_response_at
    FROM token_usage_costs
    WHERE claude_session_id IS NOT NULL
    GROUP BY claude_session_id
), e AS (
    SELECT claude_session_id, count(*) AS events, min(occurred_at) AS first_event_at,
        max(occurred_at) AS last_event_at
    FROM agent_logs
    WHERE claude_session_id IS NOT NULL
    GROUP BY claude_session_id
)
SELECT coalesce(u.claude_session_id, e.claude_session_id) AS claude_session_id,
    CASE WHEN u.any_unpriced THEN NULL ELSE coalesce(u.priced_cost_usd, 0) END AS cost_usd,
    coalesce(u.priced_cost_usd, 0) AS priced_cost_usd,
    coalesce(u.unpriced_responses, 0) AS unpriced_responses,
    coalesce(u.responses, 0) AS responses,
    coalesce(u.subagents, 0) AS subagents,
    coalesce(u.input_tokens, 0) AS input_tokens,
    coalesce(u.output_tokens, 0) AS output_tokens,
    coalesce(u.cache_write_5m_tokens, 0) AS cache_write_5m_tokens,
    coalesce(u.cache_write_1h_tokens, 0) AS cache_write_1h_tokens,
    coalesce(u.cache_read_tokens, 0) AS cache_read_tokens,
    coalesce(e.events, 0) AS events,
    least(u.first_response_at, e.first_event_at) AS first_activity_at,
    greatest(u.last_response_at, e.last_event_at) AS last_activity_at
FROM u FULL JOIN e ON e.claude_session_id = u.claude_session_id;
COMMENT ON VIEW claude_session_costs IS 'Per Claude Code session (main thread and subagents): computed cost, token totals, first and last activity.';

CREATE VIEW session_costs AS
SELECT s.id AS session_id, s.host, s.slug, s.title, s.status, s.session_type,
    s.total_cost AS claimed_cost_usd,
    CASE WHEN bool_or(c.unpriced) THEN NULL ELSE coalesce(sum(c.cost_usd), 0) END AS cost_usd,
    coalesce(sum(c.cost_usd), 0) AS priced_cost_usd,
    count(c.id) AS responses,
    count(DISTINCT a.id) AS agents,
    coalesce(sum(c.input_tokens), 0) AS input_tokens,
    coalesce(sum(c.output_tokens), 0) AS output_tokens,
    coalesce(sum(c.cache_write_5m_tokens), 0) AS cache_write_5m_tokens,
    coalesce(sum(c.cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
    coalesce(sum(c.cache_read_tokens), 0) AS cache_read_tokens,
    s.created_at, s.completed_at,
    least(min(a.started_at), s.created_at) AS started_at,
    coalesce(s.completed_at, max(a.completed_at)) AS ended_at
FROM sessions s
LEFT JOIN agents a ON a.session_id = s.id
LEFT JOIN token_usage_costs c ON c.agent_id = a.id
GROUP BY s.id;
COMMENT ON VIEW session_costs IS 'Workflow sessions: computed cost of all their agents next to the orchestrator''s claimed total_cost.';

CREATE VIEW daily_costs AS
SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day_utc, model,
    count(*) AS responses,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    CASE WHEN bool_or(unpriced) THEN NULL ELSE sum(cost_usd) END AS cost_usd
FROM token_usage_costs
GROUP BY 1, 2;
COMMENT ON VIEW daily_costs IS 'Cost per UTC day and model (group token_usage_costs by occurred_at AT TIME ZONE ''…'' for a local day).';
"""

DOWNGRADE = """
DROP VIEW daily_costs;
DROP VIEW session_costs;
DROP VIEW claude_session_costs;
DROP VIEW agent_costs;
DROP VIEW token_usage_costs;
DROP TABLE prices;
DROP TABLE transcript_files;
DROP TABLE token_usage;
"""


def _seed_sql() -> str:
    rows = []
    for prefix, inp, w5, w1, rd, out, lc, lci, lco, fast, geo in SEED:
        lc_sql = "NULL" if lc is None else str(lc)
        rows.append(
            f"('{prefix}', '-infinity', {inp}, {out}, {w5}, {w1}, {rd}, {lc_sql}, {lci}, {lco}, {fast}, {geo}, 10,"
            " 'list price 2026-08-22 (seed)')"
        )
    return (
        "INSERT INTO prices (model_prefix, effective_from, input_usd_per_mtok, output_usd_per_mtok,"
        " cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok,"
        " long_context_threshold_tokens, long_context_input_multiplier, long_context_output_multiplier,"
        " fast_multiplier, data_residency_multiplier, web_search_usd_per_1k, note) VALUES\n"
        + ",\n".join(rows)
    )


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(_seed_sql())
    op.execute(VIEWS)


def downgrade() -> None:
    op.execute(DOWNGRADE)
