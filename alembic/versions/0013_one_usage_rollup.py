"""One hourly rollup of token_usage instead of two.

0006 keeps token_usage_hourly (hour × model) for daily_costs and price drift; 0009 added
usage_hourly (hour × session, agent, model, host, cwd, branch, price), which holds everything
the first one does. Both were kept by statement triggers on every token_usage write. This
revision keeps usage_hourly only: daily_costs, prices_reprice and the statements of
daemon/db.py read it, and token_usage_hourly becomes a view over it with the same columns,
so queries written against the table keep working.

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None

HOURLY_VIEW = """
CREATE VIEW token_usage_hourly AS
SELECT h.hour_utc, coalesce(h.model, '') AS model,
    sum(h.responses)::bigint AS responses,
    sum(h.input_tokens)::bigint AS input_tokens,
    sum(h.output_tokens)::bigint AS output_tokens,
    sum(h.cache_write_5m_tokens)::bigint AS cache_write_5m_tokens,
    sum(h.cache_write_1h_tokens)::bigint AS cache_write_1h_tokens,
    sum(h.cache_read_tokens)::bigint AS cache_read_tokens,
    sum(h.priced_cost_usd) AS priced_cost_usd,
    sum(h.unpriced_responses)::bigint AS unpriced_responses
FROM usage_hourly h
GROUP BY 1, 2;
COMMENT ON VIEW token_usage_hourly IS 'usage_hourly summed per UTC hour of occurred_at (-infinity: none) and model ('''': none); a table kept by its own triggers before revision 0013.';
"""

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
FROM usage_hourly h
WHERE h.responses <> 0
GROUP BY 1, 2;
COMMENT ON VIEW daily_costs IS 'Cost per UTC day and model, from the exact hourly rollup usage_hourly (group it by hour_utc AT TIME ZONE ''…'' for a local day; responses without a time have day_utc NULL).';
"""

# The models to re-price come from the rollup: every model stored, without reading token_usage.
REPRICE = """
CREATE OR REPLACE FUNCTION prices_reprice(keys text[]) RETURNS void LANGUAGE sql AS $$
    UPDATE token_usage SET cost_usd = NULL
    WHERE model = ANY (ARRAY(
        SELECT DISTINCT h.model FROM usage_hourly h
        WHERE h.model <> '' AND (model_price_key(h.model) = ANY (keys) OR model_id_base(h.model) = ANY (keys))
    ));
$$;
"""

DROP_TABLE = """
DROP TRIGGER token_usage_hourly_insert ON token_usage;
DROP TRIGGER token_usage_hourly_update ON token_usage;
DROP TRIGGER token_usage_hourly_delete ON token_usage;
DROP FUNCTION token_usage_hourly_insert(), token_usage_hourly_update(), token_usage_hourly_delete();
DROP TABLE token_usage_hourly;
"""


# The table's triggers run as the writer of token_usage, who needs to write it again.
# (%% is a literal % for the driver, which reads % as a placeholder.)
WRITER_GRANTS_BACK = """
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
             WHERE table_name = 'token_usage' AND privilege_type = 'INSERT'
               AND grantee NOT IN (current_user, 'PUBLIC') LOOP
        EXECUTE format('GRANT INSERT, UPDATE ON token_usage_hourly TO %%I', r.grantee);
    END LOOP;
END
$$;
"""


def _revision(name: str) -> ModuleType:
    """An earlier revision file of this folder, for the definitions a downgrade restores."""
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"_rev_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(sql: str) -> None:
    op.get_bind().exec_driver_sql(sql)


def _select_grants(name: str) -> list[str]:
    """SELECT grants on a relation (the analyst's and writer's read access), to carry over."""
    partitioned = _revision("0005_partitioned_agent_logs.py")
    return [g for g in partitioned._grants(name) if g.startswith("GRANT SELECT ")]


def upgrade() -> None:
    grants = _select_grants("token_usage_hourly")
    _run(DAILY_COSTS)
    _run(REPRICE)
    _run(DROP_TABLE)
    _run(HOURLY_VIEW)
    for grant in grants:
        _run(grant)


def downgrade() -> None:
    engine = _revision("0006_cost_engine.py")
    grants = _select_grants("token_usage_hourly")
    _run("DROP VIEW token_usage_hourly")
    _run(engine.HOURLY_TABLE)
    _run(engine.ROLLUP)
    _run(engine.REPRICE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    _run(engine.DAILY_COSTS)
    for grant in grants:
        _run(grant)
    _run(WRITER_GRANTS_BACK)
