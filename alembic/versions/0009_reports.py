"""Reports: where usage came from (cwd, git branch), project aliases, budgets, usage blocks and
attribution views.

Revision ID: 0009
Revises: 0006 (the cost engine: token_usage.price_id and cost_usd, kept by its triggers)
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE token_usage ADD COLUMN cwd text, ADD COLUMN git_branch text;
COMMENT ON COLUMN token_usage.cwd IS 'cwd of the transcript line that carried the response (the project directory).';
COMMENT ON COLUMN token_usage.git_branch IS 'gitBranch of the transcript line that carried the response.';

CREATE TABLE project_aliases (
    path text PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE project_aliases IS 'A working directory (on any host) counted as the project NAME; several paths may share a name.';

CREATE TABLE budgets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period text NOT NULL,
    project text NOT NULL DEFAULT '',
    limit_usd numeric NOT NULL,
    tz text NOT NULL DEFAULT 'UTC',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT budgets_period_project_key UNIQUE (period, project),
    CONSTRAINT budgets_period_check CHECK (period IN ('daily', 'weekly', 'monthly')),
    CONSTRAINT budgets_limit_usd_check CHECK (limit_usd > 0)
);
COMMENT ON TABLE budgets IS 'Spending limits per calendar day, ISO week or month in zone tz; project '''' means all projects.';

CREATE TABLE budget_alerts (
    budget_id bigint NOT NULL CONSTRAINT budget_alerts_budget_id_fkey REFERENCES budgets (id) ON DELETE CASCADE,
    period_start timestamptz NOT NULL,
    spent_usd numeric NOT NULL,
    alerted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_id, period_start)
);
COMMENT ON TABLE budget_alerts IS 'One row per budget and period whose limit was exceeded (the daemon logs budget_exceeded once, when it inserts the row).';

CREATE VIEW usage_attribution AS
SELECT t.id AS token_usage_id, t.message_id, t.claude_session_id, t.claude_agent_id, t.agent_id,
    t.model, t.host, t.occurred_at, t.is_sidechain,
    t.input_tokens, t.output_tokens, t.cache_write_5m_tokens, t.cache_write_1h_tokens,
    t.cache_read_tokens,
    t.input_tokens + t.output_tokens + t.cache_write_5m_tokens + t.cache_write_1h_tokens
        + t.cache_read_tokens AS total_tokens,
    t.cost_usd, (t.price_id IS NULL) AS unpriced,
    coalesce(t.cwd, a.cwd) AS project_dir,
    coalesce(pa.name, t.cwd, a.cwd) AS project,
    t.git_branch,
    CASE WHEN p.id IS NOT NULL THEN
        t.cache_read_tokens * (p.input_usd_per_mtok - p.cache_read_usd_per_mtok) / 1000000
        * CASE WHEN t.input_tokens + t.cache_write_5m_tokens + t.cache_write_1h_tokens + t.cache_read_tokens
                    > p.long_context_threshold_tokens
               THEN p.long_context_input_multiplier ELSE 1 END
        * CASE WHEN t.speed = 'fast' THEN p.fast_multiplier ELSE 1 END
        * CASE WHEN lower(t.inference_geo) = 'us' THEN p.data_residency_multiplier ELSE 1 END
    END AS cache_savings_usd
FROM token_usage t
LEFT JOIN agents a ON a.id = t.agent_id
LEFT JOIN project_aliases pa ON pa.path = coalesce(t.cwd, a.cwd)
LEFT JOIN prices p ON p.id = t.price_id;
COMMENT ON VIEW usage_attribution IS 'token_usage with its cost (as token_usage_costs), its project (alias name, else the cwd of the transcript line, else the agent''s hook cwd), git branch and cache savings (cache reads priced as plain input minus their price).';

CREATE VIEW project_costs AS
WITH s AS (
    SELECT project, claude_session_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at
    FROM usage_attribution GROUP BY project, claude_session_id
)
SELECT u.project,
    array_agg(DISTINCT u.project_dir) FILTER (WHERE u.project_dir IS NOT NULL) AS project_dirs,
    count(*) AS responses,
    count(DISTINCT u.claude_session_id) AS sessions,
    count(DISTINCT u.git_branch) AS branches,
    sum(u.input_tokens) AS input_tokens, sum(u.output_tokens) AS output_tokens,
    sum(u.cache_write_5m_tokens) AS cache_write_5m_tokens,
    sum(u.cache_write_1h_tokens) AS cache_write_1h_tokens,
    sum(u.cache_read_tokens) AS cache_read_tokens, sum(u.total_tokens) AS total_tokens,
    CASE WHEN bool_or(u.unpriced) THEN NULL ELSE coalesce(sum(u.cost_usd), 0) END AS cost_usd,
    coalesce(sum(u.cost_usd), 0) AS priced_cost_usd,
    coalesce(sum(u.cache_savings_usd), 0) AS cache_savings_usd,
    (SELECT sum(s.last_at - s.first_at) FROM s WHERE s.project IS NOT DISTINCT FROM u.project) AS session_time,
    min(u.occurred_at) AS first_response_at, max(u.occurred_at) AS last_response_at
FROM usage_attribution u
GROUP BY u.project;
COMMENT ON VIEW project_costs IS 'Per project (alias or directory): cost, tokens, cache savings, sessions and session_time (sum over its sessions of first to last response).';

CREATE VIEW branch_costs AS
SELECT project, git_branch,
    count(*) AS responses,
    count(DISTINCT claude_session_id) AS sessions,
    sum(total_tokens) AS total_tokens,
    CASE WHEN bool_or(unpriced) THEN NULL ELSE coalesce(sum(cost_usd), 0) END AS cost_usd,
    coalesce(sum(cost_usd), 0) AS priced_cost_usd,
    coalesce(sum(cache_savings_usd), 0) AS cache_savings_usd,
    max(occurred_at) - min(occurred_at) AS time_span,
    min(occurred_at) AS first_response_at, max(occurred_at) AS last_response_at
FROM usage_attribution
GROUP BY project, git_branch;
COMMENT ON VIEW branch_costs IS 'Per project and git branch (transcript gitBranch): cost, tokens, cache savings and the time from first to last response.';

CREATE VIEW claude_session_titles AS
SELECT DISTINCT ON (claude_session_id) claude_session_id, payload->>'session_title' AS title, occurred_at AS titled_at
FROM agent_logs
WHERE claude_session_id IS NOT NULL AND event_type IN ('UserPromptSubmit', 'SessionStart')
  AND payload->>'session_title' IS NOT NULL AND payload->>'session_title' <> ''
ORDER BY claude_session_id, occurred_at DESC;
COMMENT ON VIEW claude_session_titles IS 'The latest session_title of each Claude Code session (UserPromptSubmit or SessionStart payloads).';

CREATE VIEW session_title_costs AS
SELECT c.*, t.title
FROM claude_session_costs c
LEFT JOIN claude_session_titles t USING (claude_session_id);
COMMENT ON VIEW session_title_costs IS 'claude_session_costs with the session''s title (NULL when no hook reported one).';

CREATE VIEW cache_savings AS
SELECT model,
    sum(cache_read_tokens) AS cache_read_tokens,
    coalesce(sum(cache_savings_usd), 0) AS cache_savings_usd,
    CASE WHEN bool_or(unpriced) THEN NULL ELSE coalesce(sum(cost_usd), 0) END AS cost_usd
FROM usage_attribution
GROUP BY model;
COMMENT ON VIEW cache_savings IS 'Per model: what cache reads would have cost as plain input minus what they cost, next to the cost paid.';

CREATE VIEW subagent_shares AS
SELECT a.agent_id, a.claude_session_id, a.claude_agent_id, a.agent_type,
    a.priced_cost_usd AS cost_usd,
    s.priced_cost_usd AS session_cost_usd,
    CASE WHEN s.priced_cost_usd > 0 THEN a.priced_cost_usd / s.priced_cost_usd END AS share
FROM agent_costs a
JOIN claude_session_costs s ON s.claude_session_id = a.claude_session_id
WHERE a.claude_agent_id IS NOT NULL;
COMMENT ON VIEW subagent_shares IS 'Each subagent''s priced cost and its share (0..1) of its Claude Code session''s priced cost.';

-- ccusage's blocks: a block starts at the hour (UTC) of the first response after a gap of over
-- 5 hours, or after the previous block's 5 hours ran out. Iterating over hours, not rows, keeps
-- it linear in the number of active hours.
CREATE FUNCTION usage_block_spans()
RETURNS TABLE (block_start timestamptz, first_at timestamptz, last_at timestamptz)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    h record;
    cur_start timestamptz;
    cur_first timestamptz;
    cur_last timestamptz;
BEGIN
    FOR h IN
        SELECT date_trunc('hour', occurred_at, 'UTC') AS hour, min(occurred_at) AS lo, max(occurred_at) AS hi
        FROM token_usage WHERE occurred_at IS NOT NULL GROUP BY 1 ORDER BY 1
    LOOP
        IF cur_start IS NULL OR h.hour >= cur_start + interval '5 hours'
           OR h.lo - cur_last > interval '5 hours' THEN
            IF cur_start IS NOT NULL THEN
                block_start := cur_start; first_at := cur_first; last_at := cur_last;
                RETURN NEXT;
            END IF;
            cur_start := h.hour;
            cur_first := h.lo;
        END IF;
        cur_last := h.hi;
    END LOOP;
    IF cur_start IS NOT NULL THEN
        block_start := cur_start; first_at := cur_first; last_at := cur_last;
        RETURN NEXT;
    END IF;
END
$fn$;

CREATE VIEW usage_blocks AS
WITH b AS (SELECT * FROM usage_block_spans()), agg AS (
    SELECT b.block_start, b.first_at, b.last_at,
        count(c.token_usage_id) AS responses,
        sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
        sum(c.cache_write_5m_tokens) AS cache_write_5m_tokens,
        sum(c.cache_write_1h_tokens) AS cache_write_1h_tokens,
        sum(c.cache_read_tokens) AS cache_read_tokens,
        sum(c.input_tokens + c.output_tokens + c.cache_write_5m_tokens + c.cache_write_1h_tokens
            + c.cache_read_tokens) AS total_tokens,
        CASE WHEN bool_or(c.unpriced) THEN NULL ELSE coalesce(sum(c.cost_usd), 0) END AS cost_usd,
        coalesce(sum(c.cost_usd), 0) AS priced_cost_usd,
        array_agg(DISTINCT c.model ORDER BY c.model) FILTER (WHERE c.model IS NOT NULL) AS models,
        count(DISTINCT c.claude_session_id) AS sessions
    FROM b
    JOIN usage_attribution c ON c.occurred_at >= b.block_start AND c.occurred_at <= b.last_at
    GROUP BY b.block_start, b.first_at, b.last_at
)
SELECT block_start AS start_at, block_start + interval '5 hours' AS end_at,
    first_at AS first_response_at, last_at AS last_response_at,
    (now() < block_start + interval '5 hours' AND now() - last_at < interval '5 hours') AS active,
    responses, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    cache_read_tokens, total_tokens, cost_usd, priced_cost_usd, models, sessions,
    CASE WHEN last_at > first_at
         THEN total_tokens / (extract(epoch FROM last_at - first_at) / 60) END AS tokens_per_minute,
    CASE WHEN last_at > first_at
         THEN priced_cost_usd / (extract(epoch FROM last_at - first_at) / 3600) END AS usd_per_hour,
    CASE WHEN now() < block_start + interval '5 hours' AND now() - last_at < interval '5 hours'
         THEN greatest(extract(epoch FROM block_start + interval '5 hours' - now()) / 60, 0) END AS remaining_minutes,
    CASE WHEN now() < block_start + interval '5 hours' AND now() - last_at < interval '5 hours' AND last_at > first_at
         THEN total_tokens + total_tokens / (extract(epoch FROM last_at - first_at) / 60)
              * greatest(extract(epoch FROM block_start + interval '5 hours' - now()) / 60, 0) END AS projected_tokens,
    CASE WHEN now() < block_start + interval '5 hours' AND now() - last_at < interval '5 hours' AND last_at > first_at
         THEN priced_cost_usd + priced_cost_usd / (extract(epoch FROM last_at - first_at) / 60)
              * greatest(extract(epoch FROM block_start + interval '5 hours' - now()) / 60, 0) END AS projected_cost_usd
FROM agg;
COMMENT ON VIEW usage_blocks IS '5-hour usage blocks (ccusage rules): start at the UTC hour of the first response after a gap or the end of the previous block. Burn rate is over first to last response; the projection to end_at only for the active block.';

CREATE VIEW budget_status AS
SELECT b.id AS budget_id, b.period, b.project, b.limit_usd, b.tz,
    w.period_start, w.period_end,
    coalesce(s.spent, 0) AS spent_usd,
    coalesce(s.spent, 0) / b.limit_usd AS used_fraction,
    coalesce(s.spent, 0) > b.limit_usd AS exceeded,
    coalesce(s.spent, 0) * extract(epoch FROM w.period_end - w.period_start)
        / greatest(extract(epoch FROM now() - w.period_start), 1) AS projected_usd
FROM budgets b
CROSS JOIN LATERAL (
    SELECT date_trunc(u.unit, now() AT TIME ZONE b.tz) AT TIME ZONE b.tz AS period_start,
        (date_trunc(u.unit, now() AT TIME ZONE b.tz) + u.length) AT TIME ZONE b.tz AS period_end
    FROM (SELECT CASE b.period WHEN 'daily' THEN 'day' WHEN 'weekly' THEN 'week' ELSE 'month' END AS unit,
                 CASE b.period WHEN 'daily' THEN interval '1 day' WHEN 'weekly' THEN interval '1 week'
                      ELSE interval '1 month' END AS length) u
) w
CROSS JOIN LATERAL (
    SELECT sum(a.cost_usd) AS spent FROM usage_attribution a
    WHERE a.occurred_at >= w.period_start AND a.occurred_at < w.period_end
      AND (b.project = '' OR a.project = b.project)
) s;
COMMENT ON VIEW budget_status IS 'Each budget in its current period: priced spend, fraction used, exceeded, and the spend projected to the period end at the rate so far.';
"""

DOWNGRADE = """
DROP VIEW budget_status;
DROP VIEW usage_blocks;
DROP FUNCTION usage_block_spans();
DROP VIEW subagent_shares;
DROP VIEW cache_savings;
DROP VIEW session_title_costs;
DROP VIEW claude_session_titles;
DROP VIEW branch_costs;
DROP VIEW project_costs;
DROP VIEW usage_attribution;
DROP TABLE budget_alerts;
DROP TABLE budgets;
DROP TABLE project_aliases;
ALTER TABLE token_usage DROP COLUMN git_branch, DROP COLUMN cwd;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
