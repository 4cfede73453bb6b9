"""Cost engine: prices matched by model identity, the Claude Code 2.1.332 catalog, costs stored
per response at write time, an hourly rollup, Claude Code's own cost-state figures, cost_check.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Price resolution (the one place): `model_id_base(model)` drops a provider prefix
(`us.anthropic.`, `eu.anthropic.`, `anthropic.`, ...), a Bedrock version (`-v1:0`), a Vertex
date (`@20250805`) and a context tag (`[1m]`); `model_price_key(model)` also drops a trailing
`-YYYYMMDD` date. A `prices.model_prefix` matches a model when it equals one of the two (the
base wins over the key, then the latest effective_from not after the response). Nothing else
matches: `claude-opus-5` never prices `claude-opus-5-5`. `price_for(model, at)` returns that row.

Write-time cost: a BEFORE INSERT OR UPDATE trigger on token_usage stores price_id and cost_usd;
statement triggers on prices re-price the rows of every key that changed, so `prices set`
re-prices history exactly. Statement triggers with transition tables keep token_usage_hourly
(per UTC hour × model) exact on every insert, update and delete; daily_costs reads it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD_SEED_NOTE = "list price 2026-08-22 (seed)"
SEED_NOTE = "Claude Code 2.1.332 catalog (seed)"

# Claude Code 2.1.332's price tiers (docs/design/claude-code.md §17): USD per million tokens,
# (input, output, 5-minute cache write, 1-hour cache write, cache read).
TIERS = {
    "haiku_35": (0.8, 4, 1, 1.6, 0.08),
    "haiku_45": (1, 5, 1.25, 2, 0.1),
    "haiku_55": (0.1, 0.5, 0.125, 0.2, 0.01),
    "tier_2_10": (2, 10, 2.5, 4, 0.2),
    "tier_2_10_cache_read_0_10": (2, 10, 2.5, 4, 0.1),
    "tier_2_10_cache_read_0_20": (2, 10, 2.5, 4, 0.2),
    "tier_3_15": (3, 15, 3.75, 6, 0.3),
    "tier_4_20_cache_read_0_20": (4, 20, 5, 8, 0.2),
    "tier_5_25": (5, 25, 6.25, 10, 0.5),
    "tier_8_40_cache_read_0_20": (8, 40, 10, 16, 0.2),
    "tier_10_50": (10, 50, 12.5, 20, 1),
    "tier_10_50_cache_read_0_25": (10, 50, 12.5, 20, 0.25),
    "tier_15_75": (15, 75, 18.75, 30, 1.5),
}
# (price key, tier, fast-mode multiplier on every token category, data-residency multiplier).
# Keys are first-party ids without their date; `-4-0` catalog aliases are keys of their own.
# Fast mode: opus-4-6/4-7 30/150 (6×), opus-4-8, opus-5 10/50, opus-5-5 8/40, fable/mythos-5-2
# 16/80 (2×). Data residency (inference_geo 'us') 1.1× on 4.6+ models (pricing page).
CATALOG = [
    ("claude-3-5-haiku", "haiku_35", 1, 1),
    ("claude-haiku-4-5", "haiku_45", 1, 1),
    ("claude-haiku-5-5", "haiku_55", 1, 1.1),
    ("claude-3-5-sonnet", "tier_3_15", 1, 1),
    ("claude-3-7-sonnet", "tier_3_15", 1, 1),
    ("claude-sonnet-4", "tier_3_15", 1, 1),
    ("claude-sonnet-4-0", "tier_3_15", 1, 1),
    ("claude-sonnet-4-5", "tier_3_15", 1, 1),
    ("claude-sonnet-4-6", "tier_3_15", 1, 1.1),
    ("claude-sonnet-5", "tier_2_10", 1, 1.1),
    ("claude-opus-4", "tier_15_75", 1, 1),
    ("claude-opus-4-0", "tier_15_75", 1, 1),
    ("claude-opus-4-1", "tier_15_75", 1, 1),
    ("claude-opus-4-5", "tier_5_25", 1, 1),
    ("claude-opus-4-6", "tier_5_25", 6, 1.1),
    ("claude-opus-4-7", "tier_5_25", 6, 1.1),
    ("claude-opus-4-8", "tier_5_25", 2, 1.1),
    ("claude-opus-5", "tier_5_25", 2, 1.1),
    ("claude-opus-5-5", "tier_4_20_cache_read_0_20", 2, 1.1),
    ("claude-fable-5", "tier_10_50", 1, 1.1),
    ("claude-mythos-5", "tier_10_50", 1, 1.1),
    ("claude-fable-5-1", "tier_10_50_cache_read_0_25", 1, 1.1),
    ("claude-mythos-5-1", "tier_10_50_cache_read_0_25", 1, 1.1),
    ("claude-fable-5-2", "tier_8_40_cache_read_0_20", 2, 1.1),
    ("claude-mythos-5-2", "tier_8_40_cache_read_0_20", 2, 1.1),
]
# Sonnet 5.5: cache read 0.20 until 2026-10-07, 0.10 from then on (two dated rows).
SONNET_55 = [
    ("claude-sonnet-5-5", "-infinity", "tier_2_10_cache_read_0_20"),
    ("claude-sonnet-5-5", "2026-10-07 00:00:00+00", "tier_2_10_cache_read_0_10"),
]
# Whole-request long-prompt tiers: (prompt tokens above which, input-side ×, output ×). Haiku 5.5:
# every category ×5 above 100k (the CLI's catalog). Sonnet 4/4.5 with the 1M-context beta: $6/$22.50
# above 200k (pricing page; the CLI's catalog lacks it, and without the beta no request exceeds it).
LONG_PROMPT_TIERS = {
    "claude-haiku-5-5": (100_000, 5, 5),
    "claude-sonnet-4": (200_000, 2, 1.5),
    "claude-sonnet-4-0": (200_000, 2, 1.5),
    "claude-sonnet-4-5": (200_000, 2, 1.5),
}
WEB_SEARCH_USD_PER_1K = 10  # $0.01 per search

FUNCTIONS = r"""
CREATE FUNCTION model_id_base(model text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(
    regexp_replace(model, '^([a-z]+\.)?anthropic\.', ''),
    '(@[^@]*|-v[0-9]+(:[0-9]+)?)?(\[[A-Za-z0-9]+\])?$', '');
COMMENT ON FUNCTION model_id_base(text) IS 'A model id without provider prefix (us.anthropic.), Bedrock version (-v1:0), Vertex date (@20250805) or context tag ([1m]).';

CREATE FUNCTION model_price_key(model text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(model_id_base(model), '-[0-9]{8}$', '');
COMMENT ON FUNCTION model_price_key(text) IS 'model_id_base without a trailing -YYYYMMDD date: the key a seeded price row carries.';

CREATE FUNCTION price_for(model text, at timestamptz) RETURNS prices
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    base text := model_id_base(model);
    key text := regexp_replace(base, '-[0-9]{8}$', '');
    found prices;
BEGIN
    -- The two candidate keys are computed once, so the lookup is one index probe per key.
    SELECT p.* INTO found FROM prices p
    WHERE p.model_prefix IN (base, key) AND p.effective_from <= at
    ORDER BY p.model_prefix = base DESC, p.effective_from DESC
    LIMIT 1;
    RETURN found;
END
$$;
COMMENT ON FUNCTION price_for(text, timestamptz) IS 'The price row of a model at a time: model_prefix equal to model_id_base (preferred) or model_price_key, latest effective_from not after it. Every cost goes through it.';

CREATE FUNCTION usage_cost_usd(p prices, input_tokens bigint, output_tokens bigint,
    cache_write_5m_tokens bigint, cache_write_1h_tokens bigint, cache_read_tokens bigint,
    web_search_requests bigint, speed text, inference_geo text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN p.id IS NOT NULL THEN
    ((input_tokens * p.input_usd_per_mtok
      + cache_write_5m_tokens * p.cache_write_5m_usd_per_mtok
      + cache_write_1h_tokens * p.cache_write_1h_usd_per_mtok
      + cache_read_tokens * p.cache_read_usd_per_mtok)
     * CASE WHEN input_tokens + cache_write_5m_tokens + cache_write_1h_tokens + cache_read_tokens
                 > p.long_context_threshold_tokens
            THEN p.long_context_input_multiplier ELSE 1 END
     + output_tokens * p.output_usd_per_mtok
     * CASE WHEN input_tokens + cache_write_5m_tokens + cache_write_1h_tokens + cache_read_tokens
                 > p.long_context_threshold_tokens
            THEN p.long_context_output_multiplier ELSE 1 END) / 1000000
    * CASE WHEN speed = 'fast' THEN p.fast_multiplier ELSE 1 END
    * CASE WHEN lower(inference_geo) = 'us' THEN p.data_residency_multiplier ELSE 1 END
    + web_search_requests * p.web_search_usd_per_1k / 1000
END;
COMMENT ON FUNCTION usage_cost_usd(prices, bigint, bigint, bigint, bigint, bigint, bigint, text, text) IS 'USD of one response at a price row: token prices, whole-request long-prompt tier, fast and data-residency multipliers, web searches. NULL without a price.';
"""

HOURLY_TABLE = """
CREATE TABLE token_usage_hourly (
    hour_utc timestamptz NOT NULL,
    model text NOT NULL,
    responses bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    priced_cost_usd numeric NOT NULL DEFAULT 0,
    unpriced_responses bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour_utc, model)
);
COMMENT ON TABLE token_usage_hourly IS 'Exact rollup of token_usage per UTC hour of occurred_at (-infinity: none) and model ('''': none), kept by statement triggers on token_usage.';
"""

TABLES = f"""
ALTER TABLE token_usage ADD COLUMN price_id bigint, ADD COLUMN cost_usd numeric;
COMMENT ON TABLE prices IS 'USD per million tokens by model key (model_prefix: matched by identity, see price_for) from effective_from on. Costs are stored per response by triggers, and a change here re-prices history.';
COMMENT ON COLUMN token_usage.price_id IS 'prices.id resolved by price_for at write time (trigger); NULL: unpriced.';
COMMENT ON COLUMN token_usage.cost_usd IS 'USD at price_id (usage_cost_usd), kept current by triggers on token_usage and prices.';
CREATE INDEX token_usage_session_model_idx ON token_usage (claude_session_id, model);

{HOURLY_TABLE}

CREATE TABLE cost_states (
    claude_session_id text PRIMARY KEY,
    host text,
    transcript_path text,
    total_cost_usd numeric,
    total_api_duration_ms numeric,
    total_api_duration_without_retries_ms numeric,
    total_tool_duration_ms numeric,
    total_duration_ms numeric,
    lines_added bigint,
    lines_removed bigint,
    started_at timestamptz,
    has_unknown_model_cost boolean,
    compacted boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cost_states IS 'Claude Code''s own running totals per session: the latest cost-state transcript line (the one with the largest totalDuration, then totalCostUSD; both only grow within a session, resumes included). compacted: a compact_boundary line was seen.';

CREATE TABLE cost_state_models (
    claude_session_id text NOT NULL,
    model text NOT NULL,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    thinking_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    web_search_requests bigint NOT NULL DEFAULT 0,
    cost_usd numeric,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (claude_session_id, model)
);
COMMENT ON TABLE cost_state_models IS 'modelUsage of the latest cost-state line per session (cost_states): Claude Code''s tokens and costUSD per model.';
"""

TRIGGERS = """
CREATE FUNCTION token_usage_set_cost() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p prices;
BEGIN
    IF NEW.model IS NULL THEN
        NEW.price_id := NULL;
        NEW.cost_usd := NULL;
        RETURN NEW;
    END IF;
    p := price_for(NEW.model, coalesce(NEW.occurred_at, NEW.ingested_at));
    NEW.price_id := p.id;
    NEW.cost_usd := usage_cost_usd(p, NEW.input_tokens, NEW.output_tokens, NEW.cache_write_5m_tokens,
        NEW.cache_write_1h_tokens, NEW.cache_read_tokens, NEW.web_search_requests, NEW.speed,
        NEW.inference_geo);
    RETURN NEW;
END
$$;
CREATE TRIGGER token_usage_set_cost BEFORE INSERT OR UPDATE ON token_usage
    FOR EACH ROW EXECUTE FUNCTION token_usage_set_cost();
"""

# Rows of a transition table as signed hourly deltas, in key order (so concurrent writers lock
# rollup rows in the same order).
_HOURLY_DELTA = """
    INSERT INTO token_usage_hourly AS h (hour_utc, model, responses, input_tokens, output_tokens,
        cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, priced_cost_usd,
        unpriced_responses)
    SELECT date_trunc('hour', coalesce(d.occurred_at, '-infinity'), 'UTC'), coalesce(d.model, ''),
        sum(d.sign), sum(d.sign * d.input_tokens), sum(d.sign * d.output_tokens),
        sum(d.sign * d.cache_write_5m_tokens), sum(d.sign * d.cache_write_1h_tokens),
        sum(d.sign * d.cache_read_tokens), coalesce(sum(d.sign * d.cost_usd), 0),
        coalesce(sum(d.sign) FILTER (WHERE d.price_id IS NULL), 0)
    FROM ({rows}) d
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (hour_utc, model) DO UPDATE SET
        responses = h.responses + EXCLUDED.responses,
        input_tokens = h.input_tokens + EXCLUDED.input_tokens,
        output_tokens = h.output_tokens + EXCLUDED.output_tokens,
        cache_write_5m_tokens = h.cache_write_5m_tokens + EXCLUDED.cache_write_5m_tokens,
        cache_write_1h_tokens = h.cache_write_1h_tokens + EXCLUDED.cache_write_1h_tokens,
        cache_read_tokens = h.cache_read_tokens + EXCLUDED.cache_read_tokens,
        priced_cost_usd = h.priced_cost_usd + EXCLUDED.priced_cost_usd,
        unpriced_responses = h.unpriced_responses + EXCLUDED.unpriced_responses;
"""
_COLS = "occurred_at, model, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, cost_usd, price_id"
_NEW = f"SELECT 1 AS sign, {_COLS} FROM new_rows"  # noqa: S608 - module constants only
_OLD = f"SELECT -1 AS sign, {_COLS} FROM old_rows"  # noqa: S608 - module constants only

ROLLUP = f"""
INSERT INTO token_usage_hourly (hour_utc, model, responses, input_tokens, output_tokens,
    cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, priced_cost_usd,
    unpriced_responses)
SELECT date_trunc('hour', coalesce(occurred_at, '-infinity'), 'UTC'), coalesce(model, ''), count(*),
    sum(input_tokens), sum(output_tokens), sum(cache_write_5m_tokens), sum(cache_write_1h_tokens),
    sum(cache_read_tokens), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE price_id IS NULL)
FROM token_usage GROUP BY 1, 2;

CREATE FUNCTION token_usage_hourly_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_HOURLY_DELTA.format(rows=_NEW)}
    RETURN NULL;
END
$$;
CREATE FUNCTION token_usage_hourly_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_HOURLY_DELTA.format(rows=_NEW + " UNION ALL " + _OLD)}
    RETURN NULL;
END
$$;
CREATE FUNCTION token_usage_hourly_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{_HOURLY_DELTA.format(rows=_OLD)}
    RETURN NULL;
END
$$;
CREATE TRIGGER token_usage_hourly_insert AFTER INSERT ON token_usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION token_usage_hourly_insert();
CREATE TRIGGER token_usage_hourly_update AFTER UPDATE ON token_usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION token_usage_hourly_update();
CREATE TRIGGER token_usage_hourly_delete AFTER DELETE ON token_usage
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION token_usage_hourly_delete();
"""  # noqa: S608 - module constants only

REPRICE = """
-- A price row added, changed or removed re-prices every response its key (old or new) can match.
-- The models to re-price come from the rollup (every model stored, a small table).
CREATE FUNCTION prices_reprice(keys text[]) RETURNS void LANGUAGE sql AS $$
    UPDATE token_usage SET cost_usd = NULL
    WHERE model = ANY (ARRAY(
        SELECT DISTINCT h.model FROM token_usage_hourly h
        WHERE h.model <> '' AND (model_price_key(h.model) = ANY (keys) OR model_id_base(h.model) = ANY (keys))
    ));
$$;
"""

PRICE_TRIGGERS = """
CREATE FUNCTION prices_changed_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM prices_reprice(ARRAY(SELECT DISTINCT model_prefix FROM new_rows));
    RETURN NULL;
END
$$;
CREATE FUNCTION prices_changed_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM prices_reprice(ARRAY(SELECT model_prefix FROM new_rows UNION SELECT model_prefix FROM old_rows));
    RETURN NULL;
END
$$;
CREATE FUNCTION prices_changed_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM prices_reprice(ARRAY(SELECT DISTINCT model_prefix FROM old_rows));
    RETURN NULL;
END
$$;
CREATE TRIGGER prices_changed_insert AFTER INSERT ON prices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION prices_changed_insert();
CREATE TRIGGER prices_changed_update AFTER UPDATE ON prices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION prices_changed_update();
CREATE TRIGGER prices_changed_delete AFTER DELETE ON prices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION prices_changed_delete();
"""

_USAGE_COLUMNS = """u.id, u.message_id, u.request_id, u.claude_session_id, u.claude_agent_id, u.agent_id,
    u.prompt_id, u.model, u.input_tokens, u.output_tokens, u.cache_write_5m_tokens,
    u.cache_write_1h_tokens, u.cache_read_tokens, u.web_search_requests, u.web_fetch_requests,
    u.speed, u.service_tier, u.inference_geo, u.occurred_at, u.is_sidechain, u.host,
    u.transcript_path, u.ingested_at, u.updated_at"""

# Views keep every column of 0002 in its place (CREATE OR REPLACE) and append the new ones.
DAILY_COSTS = """
CREATE OR REPLACE VIEW daily_costs AS
SELECT CASE WHEN isfinite(h.hour_utc) THEN (h.hour_utc AT TIME ZONE 'UTC')::date END AS day_utc, nullif(h.model, '') AS model,
    sum(h.responses)::bigint AS responses,
    sum(h.input_tokens)::numeric AS input_tokens,
    sum(h.output_tokens)::numeric AS output_tokens,
    sum(h.cache_write_5m_tokens)::numeric AS cache_write_5m_tokens,
    sum(h.cache_write_1h_tokens)::numeric AS cache_write_1h_tokens,
    sum(h.cache_read_tokens)::numeric AS cache_read_tokens,
    CASE WHEN sum(h.unpriced_responses) > 0 THEN NULL ELSE sum(h.priced_cost_usd) END AS cost_usd,
    sum(h.priced_cost_usd) AS priced_cost_usd,
    sum(h.unpriced_responses)::bigint AS unpriced_responses
FROM token_usage_hourly h
WHERE h.responses <> 0
GROUP BY 1, 2;
COMMENT ON VIEW daily_costs IS 'Cost per UTC day and model, from the exact hourly rollup token_usage_hourly (group it by hour_utc AT TIME ZONE ''…'' for a local day; responses without a time have day_utc NULL).';
"""

VIEWS = f"""
CREATE OR REPLACE VIEW token_usage_costs AS
SELECT {_USAGE_COLUMNS},
    u.price_id,
    p.model_prefix AS price_model_prefix,
    (u.price_id IS NULL) AS unpriced,
    u.cost_usd
FROM token_usage u
LEFT JOIN prices p ON p.id = u.price_id;
COMMENT ON VIEW token_usage_costs IS 'token_usage with the price resolved at write time (price_for: the model''s identity, the price in effect at the response); cost_usd NULL (unpriced) for unknown models.';

CREATE OR REPLACE VIEW agent_costs AS
SELECT a.id AS agent_id, a.session_id, a.sdk_session_id AS claude_session_id, a.claude_agent_id,
    a.parent_agent_id, a.agent_type, a.status, a.started_at, a.completed_at,
    c.responses, c.input_tokens, c.output_tokens, c.cache_write_5m_tokens, c.cache_write_1h_tokens,
    c.cache_read_tokens,
    CASE WHEN c.unpriced_responses > 0 THEN NULL ELSE c.priced_cost_usd END AS cost_usd,
    c.priced_cost_usd, c.unpriced_responses, c.models, c.first_response_at, c.last_response_at
FROM agents a
CROSS JOIN LATERAL (
    SELECT count(*) AS responses,
        coalesce(sum(t.input_tokens), 0) AS input_tokens,
        coalesce(sum(t.output_tokens), 0) AS output_tokens,
        coalesce(sum(t.cache_write_5m_tokens), 0) AS cache_write_5m_tokens,
        coalesce(sum(t.cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
        coalesce(sum(t.cache_read_tokens), 0) AS cache_read_tokens,
        coalesce(sum(t.cost_usd), 0) AS priced_cost_usd,
        count(*) FILTER (WHERE t.price_id IS NULL) AS unpriced_responses,
        array_agg(DISTINCT t.model) FILTER (WHERE t.model IS NOT NULL) AS models,
        min(t.occurred_at) AS first_response_at,
        max(t.occurred_at) AS last_response_at
    FROM token_usage t
    WHERE t.agent_id = a.id
) c;
COMMENT ON VIEW agent_costs IS 'Tokens and cost per agents row (a Claude Code session or one subagent). cost_usd is NULL when a response has no price; priced_cost_usd sums the rest.';

CREATE OR REPLACE VIEW claude_session_costs AS
SELECT s.claude_session_id,
    CASE WHEN coalesce(u.unpriced_responses, 0) > 0 THEN NULL ELSE coalesce(u.priced_cost_usd, 0) END
        AS cost_usd,
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
    greatest(u.last_response_at, e.last_event_at) AS last_activity_at,
    cs.total_cost_usd AS cli_cost_usd,
    ti.session_title
FROM (
    -- Every session once; a filter on claude_session_id reaches each branch's index, and the
    -- equality joins below carry it into each aggregate (no FULL JOIN, no coalesce key).
    SELECT claude_session_id FROM token_usage WHERE claude_session_id IS NOT NULL
    UNION
    SELECT claude_session_id FROM agent_logs WHERE claude_session_id IS NOT NULL
    UNION
    SELECT claude_session_id FROM cost_states
) s
LEFT JOIN (
    SELECT t.claude_session_id,
        count(*) AS responses,
        count(DISTINCT t.claude_agent_id) AS subagents,
        sum(t.input_tokens) AS input_tokens,
        sum(t.output_tokens) AS output_tokens,
        sum(t.cache_write_5m_tokens) AS cache_write_5m_tokens,
        sum(t.cache_write_1h_tokens) AS cache_write_1h_tokens,
        sum(t.cache_read_tokens) AS cache_read_tokens,
        sum(t.cost_usd) AS priced_cost_usd,
        count(*) FILTER (WHERE t.price_id IS NULL) AS unpriced_responses,
        min(t.occurred_at) AS first_response_at,
        max(t.occurred_at) AS last_response_at
    FROM token_usage t
    GROUP BY t.claude_session_id
) u ON u.claude_session_id = s.claude_session_id
LEFT JOIN (
    SELECT l.claude_session_id, count(*) AS events, min(l.occurred_at) AS first_event_at,
        max(l.occurred_at) AS last_event_at
    FROM agent_logs l
    GROUP BY l.claude_session_id
) e ON e.claude_session_id = s.claude_session_id
LEFT JOIN cost_states cs ON cs.claude_session_id = s.claude_session_id
LEFT JOIN (
    SELECT DISTINCT ON (l.claude_session_id) l.claude_session_id, l.payload ->> 'session_title' AS session_title
    FROM agent_logs l
    WHERE l.event_type = 'UserPromptSubmit' AND l.payload ? 'session_title'
    ORDER BY l.claude_session_id, l.occurred_at DESC
) ti ON ti.claude_session_id = s.claude_session_id;
COMMENT ON VIEW claude_session_costs IS 'Per Claude Code session (main thread and subagents): computed cost, Claude Code''s own figure (cli_cost_usd, from its latest cost-state line), token totals, first and last activity, session title.';
COMMENT ON COLUMN claude_session_costs.cli_cost_usd IS 'totalCostUSD of the session''s latest cost-state transcript line (cost_states); NULL when none was read.';
COMMENT ON COLUMN claude_session_costs.session_title IS 'session_title of the latest UserPromptSubmit event of the session that carries one.';

CREATE OR REPLACE VIEW session_costs AS
SELECT s.id AS session_id, s.host, s.slug, s.title, s.status, s.session_type,
    s.total_cost AS claimed_cost_usd,
    CASE WHEN c.unpriced_responses > 0 THEN NULL ELSE c.priced_cost_usd END AS cost_usd,
    c.priced_cost_usd, c.responses, c.agents, c.input_tokens, c.output_tokens,
    c.cache_write_5m_tokens, c.cache_write_1h_tokens, c.cache_read_tokens,
    s.created_at, s.completed_at,
    least(c.first_agent_at, s.created_at) AS started_at,
    coalesce(s.completed_at, c.last_agent_completed_at) AS ended_at,
    c.unpriced_responses
FROM sessions s
CROSS JOIN LATERAL (
    SELECT count(t.id) AS responses,
        count(DISTINCT a.id) AS agents,
        coalesce(sum(t.input_tokens), 0) AS input_tokens,
        coalesce(sum(t.output_tokens), 0) AS output_tokens,
        coalesce(sum(t.cache_write_5m_tokens), 0) AS cache_write_5m_tokens,
        coalesce(sum(t.cache_write_1h_tokens), 0) AS cache_write_1h_tokens,
        coalesce(sum(t.cache_read_tokens), 0) AS cache_read_tokens,
        coalesce(sum(t.cost_usd), 0) AS priced_cost_usd,
        count(t.id) FILTER (WHERE t.price_id IS NULL) AS unpriced_responses,
        min(a.started_at) AS first_agent_at,
        max(a.completed_at) AS last_agent_completed_at
    FROM agents a
    LEFT JOIN token_usage t ON t.agent_id = a.id
    WHERE a.session_id = s.id
) c;
COMMENT ON VIEW session_costs IS 'Workflow sessions: computed cost of all their agents next to the orchestrator''s claimed total_cost.';

{DAILY_COSTS}
CREATE VIEW cost_check AS
SELECT cs.claude_session_id, k.model, o.cost_usd, m.cost_usd AS cli_cost_usd,
    o.cost_usd - m.cost_usd AS difference_usd,
    CASE WHEN o.responses > 0 AND o.cost_usd IS NULL THEN 'unpriced'
         WHEN cs.has_unknown_model_cost THEN 'cli has unknown model cost'
         WHEN cs.compacted AND coalesce(o.cost_usd, 0) < coalesce(m.cost_usd, 0) THEN 'compaction call'
         WHEN EXISTS (SELECT 1 FROM agent_logs l
                      WHERE l.claude_session_id = cs.claude_session_id
                        AND l.event_type = 'SessionStart' AND l.payload ->> 'source' = 'resume')
             THEN 'resumed'
    END AS reason
FROM cost_states cs
CROSS JOIN LATERAL (
    SELECT t.model FROM token_usage t WHERE t.claude_session_id = cs.claude_session_id AND t.model IS NOT NULL
    UNION
    SELECT sm.model FROM cost_state_models sm WHERE sm.claude_session_id = cs.claude_session_id
) k
CROSS JOIN LATERAL (
    SELECT count(*) AS responses,
        CASE WHEN count(*) FILTER (WHERE t.price_id IS NULL) > 0 THEN NULL
             ELSE coalesce(sum(t.cost_usd), 0) END AS cost_usd
    FROM token_usage t
    WHERE t.claude_session_id = cs.claude_session_id AND t.model = k.model
) o
LEFT JOIN cost_state_models m ON m.claude_session_id = cs.claude_session_id AND m.model = k.model
WHERE cs.total_cost_usd IS NOT NULL
  AND (o.cost_usd IS NULL OR abs(o.cost_usd - coalesce(m.cost_usd, 0)) > 0.000001);
COMMENT ON VIEW cost_check IS 'Per Claude session × model where our cost differs from Claude Code''s own (cost_state_models.cost_usd) by more than 1e-6 USD, or ours is NULL. reason: unpriced, cli has unknown model cost, compaction call (its usage is only in cost-state), resumed, else NULL.';
"""  # noqa: S608 - module constants only

AGENT_TIMINGS = """
CREATE OR REPLACE VIEW agent_timings AS
SELECT
    a.id AS agent_id,
    a.session_id,
    a.parent_agent_id,
    a.sdk_session_id,
    a.claude_agent_id,
    a.agent_type,
    a.model,
    a.status,
    coalesce(a.started_at, ev.first_event_at) AS started_at,
    x.ended_at,
    round(extract(epoch FROM x.ended_at - coalesce(a.started_at, ev.first_event_at)) * 1000, 3)
        AS duration_ms,
    ev.events,
    ev.first_event_at,
    ev.last_event_at,
    cs.lines_added,
    cs.lines_removed,
    cs.total_api_duration_ms AS api_duration_ms,
    cs.total_api_duration_without_retries_ms AS api_duration_without_retries_ms,
    cs.total_tool_duration_ms AS tool_duration_ms,
    cs.total_duration_ms AS cli_duration_ms
FROM agents a
CROSS JOIN LATERAL (
    SELECT count(*) AS events, min(l.occurred_at) AS first_event_at, max(l.occurred_at) AS last_event_at
    FROM agent_logs l
    WHERE l.agent_id = a.id
) ev
CROSS JOIN LATERAL (
    SELECT coalesce(a.completed_at, (
        SELECT l.occurred_at FROM agent_logs l
        WHERE a.completed_at IS NULL
          AND l.agent_id = a.id
          AND l.event_type = CASE WHEN a.claude_agent_id IS NULL THEN 'SessionEnd' ELSE 'SubagentStop' END
        ORDER BY l.occurred_at DESC
        LIMIT 1
    )) AS ended_at
    OFFSET 0
) x
LEFT JOIN cost_states cs ON a.claude_agent_id IS NULL AND cs.claude_session_id = a.sdk_session_id;
COMMENT ON COLUMN agent_timings.lines_added IS 'Claude Code session rows (no claude_agent_id): totalLinesAdded of its latest cost-state line (subagents included).';
COMMENT ON COLUMN agent_timings.lines_removed IS 'As lines_added, totalLinesRemoved.';
COMMENT ON COLUMN agent_timings.api_duration_ms IS 'totalAPIDuration of the session''s latest cost-state line, ms (retries included).';
COMMENT ON COLUMN agent_timings.api_duration_without_retries_ms IS 'totalAPIDurationWithoutRetries, ms.';
COMMENT ON COLUMN agent_timings.tool_duration_ms IS 'totalToolDuration, ms.';
COMMENT ON COLUMN agent_timings.cli_duration_ms IS 'totalDuration (Claude Code''s wall time of the session), ms.';
"""

DOWNGRADE_OBJECTS = """
DROP VIEW cost_check;
DROP VIEW turns, daily_costs, session_costs, claude_session_costs, agent_costs, token_usage_costs;
DROP VIEW agent_timings;
DROP TRIGGER prices_changed_insert ON prices;
DROP TRIGGER prices_changed_update ON prices;
DROP TRIGGER prices_changed_delete ON prices;
DROP FUNCTION prices_changed_insert(), prices_changed_update(), prices_changed_delete(),
    prices_reprice(text[]);
DROP TRIGGER token_usage_hourly_insert ON token_usage;
DROP TRIGGER token_usage_hourly_update ON token_usage;
DROP TRIGGER token_usage_hourly_delete ON token_usage;
DROP FUNCTION token_usage_hourly_insert(), token_usage_hourly_update(), token_usage_hourly_delete();
DROP TRIGGER token_usage_set_cost ON token_usage;
DROP FUNCTION token_usage_set_cost();
DROP TABLE cost_state_models, cost_states, token_usage_hourly;
DROP INDEX token_usage_session_model_idx;
ALTER TABLE token_usage DROP COLUMN price_id, DROP COLUMN cost_usd;
DROP FUNCTION usage_cost_usd(prices, bigint, bigint, bigint, bigint, bigint, bigint, text, text);
DROP FUNCTION price_for(text, timestamptz);
DROP FUNCTION model_price_key(text);
DROP FUNCTION model_id_base(text);
COMMENT ON TABLE prices IS 'USD per million tokens by model prefix (longest prefix wins) from effective_from on. Costs are computed from it in views, so a correction re-prices history.';
"""


def _run(sql: str) -> None:
    """Alembic's connection, without SQLAlchemy's bind-parameter parsing (`:0` in `-v1:0`)."""
    op.get_bind().exec_driver_sql(sql)


def _num(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def seed_rows() -> list[tuple[str, str, tuple[float | int, ...], float | int, float | int]]:
    """(key, effective_from, tier prices, fast ×, geo ×) of the seed."""
    rows = [(key, "-infinity", TIERS[tier], fast, geo) for key, tier, fast, geo in CATALOG]
    rows += [(key, when, TIERS[tier], 1, 1.1) for key, when, tier in SONNET_55]
    return rows


def _seed_sql() -> str:
    values = []
    for key, when, (inp, out, w5, w1, rd), fast, geo in seed_rows():
        tier = LONG_PROMPT_TIERS.get(key)
        lc = "NULL, 1, 1" if tier is None else ", ".join(_num(v) for v in tier)
        values.append(
            f"('{key}', '{when}', {_num(inp)}, {_num(out)}, {_num(w5)}, {_num(w1)}, {_num(rd)}, {lc},"
            f" {_num(fast)}, {_num(geo)}, {WEB_SEARCH_USD_PER_1K}, '{SEED_NOTE}')"
        )
    return (
        "INSERT INTO prices (model_prefix, effective_from, input_usd_per_mtok, output_usd_per_mtok,"
        " cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok,"
        " long_context_threshold_tokens, long_context_input_multiplier, long_context_output_multiplier,"
        " fast_multiplier, data_residency_multiplier, web_search_usd_per_1k, note) VALUES\n"
        + ",\n".join(values)
        + "\nON CONFLICT (model_prefix, effective_from) DO NOTHING"  # a user's row wins
    )


def _revision(name: str) -> ModuleType:
    """An earlier revision file of this folder, for the definitions a downgrade restores."""
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"_rev_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    _run(FUNCTIONS)
    _run(TABLES)
    # Seed rows are ours to correct; rows a user added (`prices set`, another note) stay.
    _run(f"DELETE FROM prices WHERE note = '{OLD_SEED_NOTE}'")  # noqa: S608 - module constants only
    _run(_seed_sql())
    _run(TRIGGERS)
    _run("UPDATE token_usage SET cost_usd = NULL")  # price what is stored (the trigger computes)
    _run(ROLLUP)
    _run(REPRICE)
    _run(PRICE_TRIGGERS)
    _run(VIEWS)
    _run(AGENT_TIMINGS)


REDEFINED_VIEWS = (
    "token_usage_costs",
    "agent_costs",
    "claude_session_costs",
    "session_costs",
    "daily_costs",
    "turns",
    "agent_timings",
)


def downgrade() -> None:
    costs = _revision("0002_costs.py")
    timing = _revision("0003_timing_views.py")
    partitioned = _revision("0005_partitioned_agent_logs.py")
    grants = [g for name in REDEFINED_VIEWS for g in partitioned._grants(name)]
    _run(DOWNGRADE_OBJECTS)
    _run(f"DELETE FROM prices WHERE note = '{SEED_NOTE}'")  # noqa: S608 - module constants only
    _run(costs._seed_sql() + "\nON CONFLICT (model_prefix, effective_from) DO NOTHING")
    _run(costs.VIEWS)
    _run(timing.TURNS)
    _run(timing.AGENT_TIMINGS)
    for grant in grants:
        _run(grant)
