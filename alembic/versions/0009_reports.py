"""Reports: where usage came from (cwd, git branch), project aliases, budgets, usage blocks and
attribution views.

Revision ID: 0009
Revises: 0007b (needs 0006, the cost engine: token_usage.price_id and cost_usd, kept by its triggers)
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0007b"
branch_labels = None
depends_on = None

# Rows of a transition table as signed deltas of usage_hourly, in key order (so concurrent
# writers lock rollup rows in the same order).
_HOURLY_DELTA = """
    INSERT INTO usage_hourly AS h (hour_utc, claude_session_id, agent_id, model, host, cwd, git_branch,
        price_id, responses, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
        cache_read_tokens, priced_cost_usd, unpriced_responses, cache_savings_usd, first_at, last_at)
    SELECT date_trunc('hour', coalesce(d.occurred_at, '-infinity'), 'UTC'), d.claude_session_id,
        d.agent_id, d.model, d.host, d.cwd, d.git_branch, d.price_id,
        sum(d.sign), sum(d.sign * d.input_tokens), sum(d.sign * d.output_tokens),
        sum(d.sign * d.cache_write_5m_tokens), sum(d.sign * d.cache_write_1h_tokens),
        sum(d.sign * d.cache_read_tokens), coalesce(sum(d.sign * d.cost_usd), 0),
        coalesce(sum(d.sign) FILTER (WHERE d.price_id IS NULL), 0),
        coalesce(sum(d.sign * usage_cache_savings_usd(p, d.input_tokens, d.cache_write_5m_tokens,
            d.cache_write_1h_tokens, d.cache_read_tokens, d.speed, d.inference_geo)), 0),
        min(d.occurred_at) FILTER (WHERE d.sign > 0), max(d.occurred_at) FILTER (WHERE d.sign > 0)
    FROM ({rows}) d
    LEFT JOIN prices p ON p.id = d.price_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT ON CONSTRAINT usage_hourly_key DO UPDATE SET
        responses = h.responses + EXCLUDED.responses,
        input_tokens = h.input_tokens + EXCLUDED.input_tokens,
        output_tokens = h.output_tokens + EXCLUDED.output_tokens,
        cache_write_5m_tokens = h.cache_write_5m_tokens + EXCLUDED.cache_write_5m_tokens,
        cache_write_1h_tokens = h.cache_write_1h_tokens + EXCLUDED.cache_write_1h_tokens,
        cache_read_tokens = h.cache_read_tokens + EXCLUDED.cache_read_tokens,
        priced_cost_usd = h.priced_cost_usd + EXCLUDED.priced_cost_usd,
        unpriced_responses = h.unpriced_responses + EXCLUDED.unpriced_responses,
        cache_savings_usd = h.cache_savings_usd + EXCLUDED.cache_savings_usd,
        first_at = least(h.first_at, EXCLUDED.first_at),
        last_at = greatest(h.last_at, EXCLUDED.last_at);
"""
_NEW = "SELECT 1 AS sign, * FROM new_rows"
_OLD = "SELECT -1 AS sign, * FROM old_rows"


def _trigger_function(name: str, rows: str) -> str:
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$\nBEGIN\n"
        + _HOURLY_DELTA.format(rows=rows)
        + "    RETURN NULL;\nEND\n$fn$;\n"
    )


USAGE_HOURLY_TRIGGERS = (
    _trigger_function("usage_hourly_insert", _NEW)  # noqa: S608 - module constants only
    + _trigger_function("usage_hourly_update", f"{_NEW} UNION ALL {_OLD}")
    + _trigger_function("usage_hourly_delete", _OLD)
    + """
CREATE TRIGGER usage_hourly_insert AFTER INSERT ON token_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_insert();
CREATE TRIGGER usage_hourly_update AFTER UPDATE ON token_usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_update();
CREATE TRIGGER usage_hourly_delete AFTER DELETE ON token_usage
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_delete();

-- The rows already there.
"""
    + _HOURLY_DELTA.format(rows="SELECT 1 AS sign, * FROM token_usage")
    + """
-- A price whose figures change re-computes the cache savings of its rollup rows (costs are
-- re-priced on token_usage by 0006's triggers, which reach usage_hourly through the ones above).
CREATE FUNCTION usage_hourly_prices_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE usage_hourly h SET cache_savings_usd = coalesce(s.savings, 0)
    FROM (
        SELECT k.hour_utc, k.claude_session_id, k.agent_id, k.model, k.host, k.cwd, k.git_branch,
            k.price_id, s.savings
        FROM usage_hourly k
        LEFT JOIN LATERAL (
            SELECT sum(usage_cache_savings_usd(p, t.input_tokens, t.cache_write_5m_tokens,
                t.cache_write_1h_tokens, t.cache_read_tokens, t.speed, t.inference_geo)) AS savings
            FROM token_usage t JOIN prices p ON p.id = t.price_id
            WHERE t.price_id = k.price_id
              AND date_trunc('hour', coalesce(t.occurred_at, '-infinity'), 'UTC') = k.hour_utc
              AND t.claude_session_id IS NOT DISTINCT FROM k.claude_session_id
              AND t.agent_id IS NOT DISTINCT FROM k.agent_id AND t.model IS NOT DISTINCT FROM k.model
              AND t.host IS NOT DISTINCT FROM k.host AND t.cwd IS NOT DISTINCT FROM k.cwd
              AND t.git_branch IS NOT DISTINCT FROM k.git_branch
        ) s ON true
        WHERE k.price_id IN (SELECT id FROM new_rows)
    ) s
    WHERE h.price_id = s.price_id AND h.hour_utc = s.hour_utc
      AND h.claude_session_id IS NOT DISTINCT FROM s.claude_session_id
      AND h.agent_id IS NOT DISTINCT FROM s.agent_id AND h.model IS NOT DISTINCT FROM s.model
      AND h.host IS NOT DISTINCT FROM s.host AND h.cwd IS NOT DISTINCT FROM s.cwd
      AND h.git_branch IS NOT DISTINCT FROM s.git_branch;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER usage_hourly_prices_changed AFTER UPDATE ON prices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_prices_changed();
-- A deleted price leaves no response behind (0006 re-prices them), so its rows saved nothing.
CREATE FUNCTION usage_hourly_prices_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE usage_hourly SET cache_savings_usd = 0 WHERE price_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER usage_hourly_prices_deleted AFTER DELETE ON prices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_prices_deleted();
"""
)

UPGRADE = f"""
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

-- What a response's cache reads would have cost as plain input, minus what they cost (NULL when
-- unpriced): the long-context, fast and data-residency multipliers of the input side apply.
CREATE FUNCTION usage_cache_savings_usd(p prices, input_tokens bigint, cache_write_5m_tokens bigint,
    cache_write_1h_tokens bigint, cache_read_tokens bigint, speed text, inference_geo text)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN p.id IS NOT NULL THEN
        cache_read_tokens * (p.input_usd_per_mtok - p.cache_read_usd_per_mtok) / 1000000
        * CASE WHEN input_tokens + cache_write_5m_tokens + cache_write_1h_tokens + cache_read_tokens
                    > p.long_context_threshold_tokens
               THEN p.long_context_input_multiplier ELSE 1 END
        * CASE WHEN speed = 'fast' THEN p.fast_multiplier ELSE 1 END
        * CASE WHEN lower(inference_geo) = 'us' THEN p.data_residency_multiplier ELSE 1 END
    END
$fn$;

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
    usage_cache_savings_usd(p, t.input_tokens, t.cache_write_5m_tokens, t.cache_write_1h_tokens,
        t.cache_read_tokens, t.speed, t.inference_geo) AS cache_savings_usd
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

-- Exact rollup for the reports: one row per UTC hour and (session, agent, model, host, cwd,
-- branch, price), kept by statement triggers on token_usage (like token_usage_hourly, 0006).
CREATE TABLE usage_hourly (
    hour_utc timestamptz NOT NULL,
    claude_session_id text,
    agent_id uuid,
    model text,
    host text,
    cwd text,
    git_branch text,
    price_id bigint,
    responses bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    priced_cost_usd numeric NOT NULL DEFAULT 0,
    unpriced_responses bigint NOT NULL DEFAULT 0,
    cache_savings_usd numeric NOT NULL DEFAULT 0,
    first_at timestamptz,
    last_at timestamptz,
    CONSTRAINT usage_hourly_key UNIQUE NULLS NOT DISTINCT
        (hour_utc, claude_session_id, agent_id, model, host, cwd, git_branch, price_id)
);
CREATE INDEX usage_hourly_session_idx ON usage_hourly (claude_session_id);
COMMENT ON TABLE usage_hourly IS 'Exact rollup of token_usage per UTC hour of occurred_at (-infinity: none) and session, agent, model, host, cwd, branch and price, kept by statement triggers; first_at/last_at bound the responses (they may stay wider after a delete). Rows whose responses fell to 0 are kept.';

{USAGE_HOURLY_TRIGGERS}
CREATE VIEW usage_rollup AS
SELECT h.hour_utc, h.claude_session_id, h.agent_id, h.model, h.host,
    coalesce(h.cwd, a.cwd) AS project_dir,
    coalesce(pa.name, h.cwd, a.cwd) AS project,
    h.git_branch, h.price_id, h.responses, h.input_tokens, h.output_tokens,
    h.cache_write_5m_tokens, h.cache_write_1h_tokens, h.cache_read_tokens,
    h.input_tokens + h.output_tokens + h.cache_write_5m_tokens + h.cache_write_1h_tokens
        + h.cache_read_tokens AS total_tokens,
    h.priced_cost_usd, h.unpriced_responses, h.cache_savings_usd, h.first_at, h.last_at
FROM usage_hourly h
LEFT JOIN agents a ON a.id = h.agent_id
LEFT JOIN project_aliases pa ON pa.path = coalesce(h.cwd, a.cwd)
WHERE h.responses <> 0;
COMMENT ON VIEW usage_rollup IS 'usage_hourly with the project of usage_attribution: sums over it equal sums over usage_attribution by UTC hour.';

-- ccusage's blocks: a block starts at the hour (UTC) of the first response after a gap of over
-- 5 hours, or after the previous block's 5 hours ran out. Iterating over hours, not rows, keeps
-- it linear in the number of active hours.
CREATE FUNCTION usage_block_hours()
RETURNS TABLE (hour_utc timestamptz, block_start timestamptz)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    h record;
    cur_start timestamptz;
    cur_last timestamptz;
BEGIN
    FOR h IN
        SELECT k.hour_utc AS hour, min(k.first_at) AS lo, max(k.last_at) AS hi
        FROM usage_hourly k WHERE k.responses <> 0 AND isfinite(k.hour_utc) GROUP BY 1 ORDER BY 1
    LOOP
        IF cur_start IS NULL OR h.hour >= cur_start + interval '5 hours'
           OR h.lo - cur_last > interval '5 hours' THEN
            cur_start := h.hour;
        END IF;
        cur_last := h.hi;
        hour_utc := h.hour;
        block_start := cur_start;
        RETURN NEXT;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION usage_block_hours() IS 'Every UTC hour with usage and the start of the 5-hour block it belongs to (usage_blocks).';

CREATE VIEW usage_blocks AS
WITH agg AS (
    SELECT b.block_start, min(c.first_at) AS first_at, max(c.last_at) AS last_at,
        sum(c.responses) AS responses,
        sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
        sum(c.cache_write_5m_tokens) AS cache_write_5m_tokens,
        sum(c.cache_write_1h_tokens) AS cache_write_1h_tokens,
        sum(c.cache_read_tokens) AS cache_read_tokens,
        sum(c.total_tokens) AS total_tokens,
        CASE WHEN sum(c.unpriced_responses) > 0 THEN NULL ELSE sum(c.priced_cost_usd) END AS cost_usd,
        sum(c.priced_cost_usd) AS priced_cost_usd,
        array_agg(DISTINCT c.model ORDER BY c.model) FILTER (WHERE c.model IS NOT NULL) AS models,
        count(DISTINCT c.claude_session_id) AS sessions
    FROM usage_block_hours() b
    JOIN usage_rollup c ON c.hour_utc = b.hour_utc
    GROUP BY b.block_start
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
"""  # noqa: S608 - module constants only

DOWNGRADE = """
DROP VIEW budget_status;
DROP VIEW usage_blocks;
DROP FUNCTION usage_block_hours();
DROP VIEW usage_rollup;
DROP TRIGGER usage_hourly_prices_deleted ON prices;
DROP FUNCTION usage_hourly_prices_deleted();
DROP TRIGGER usage_hourly_prices_changed ON prices;
DROP FUNCTION usage_hourly_prices_changed();
DROP TRIGGER usage_hourly_delete ON token_usage;
DROP TRIGGER usage_hourly_update ON token_usage;
DROP TRIGGER usage_hourly_insert ON token_usage;
DROP FUNCTION usage_hourly_delete();
DROP FUNCTION usage_hourly_update();
DROP FUNCTION usage_hourly_insert();
DROP TABLE usage_hourly;
DROP VIEW subagent_shares;
DROP VIEW cache_savings;
DROP VIEW session_title_costs;
DROP VIEW claude_session_titles;
DROP VIEW branch_costs;
DROP VIEW project_costs;
DROP VIEW usage_attribution;
DROP FUNCTION usage_cache_savings_usd(prices, bigint, bigint, bigint, bigint, text, text);
DROP TABLE budget_alerts;
DROP TABLE budgets;
DROP TABLE project_aliases;
ALTER TABLE token_usage DROP COLUMN git_branch, DROP COLUMN cwd;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
