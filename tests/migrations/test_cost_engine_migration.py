"""Revision 0006 (cost engine): seed prices are corrected, a user's price rows survive, stored
responses are priced, and the downgrade brings back the old seed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from daemon import migrations

BEFORE = "0005"
AFTER = "0006"
USER_ROWS = """
INSERT INTO prices (model_prefix, effective_from, input_usd_per_mtok, output_usd_per_mtok,
    cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok, note)
VALUES ('claude-haiku-5-5', '-infinity', 7, 7, 7, 7, 7, 'mine'),
       ('claude-sonnet-4-5', '2026-06-01', 9, 9, 9, 9, 9, NULL)
"""


def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_cost_engine_migration_keeps_user_prices_and_prices_history(empty_db_url: str) -> None:
    """Rows added with `prices set` (note not the seed's) are untouched and win over a seed row
    of the same key and date; wrong seed rows are replaced; existing responses get a cost; the
    hourly rollup starts equal to them."""
    url = empty_db_url
    migrations.upgrade(url, BEFORE)
    with psycopg.connect(url) as conn:
        conn.execute(USER_ROWS)
        conn.execute(
            "INSERT INTO token_usage (message_id, request_id, model, input_tokens, occurred_at) VALUES"
            " ('m1', 'r1', 'claude-opus-5-5', 1000000, '2026-11-01'),"
            " ('m2', 'r2', 'claude-sonnet-4-5-20250929', 1000000, '2026-07-01')"
        )
    user_before = fetch(
        url,
        "SELECT to_jsonb(p) FROM prices p WHERE note IS DISTINCT FROM 'list price 2026-08-22 (seed)' ORDER BY id",
    )
    migrations.upgrade(url, AFTER)
    assert user_before == fetch(
        url,
        "SELECT to_jsonb(p) FROM prices p WHERE note IS DISTINCT FROM 'Claude Code 2.1.332 catalog (seed)' ORDER BY id",
    )
    assert [] == fetch(
        url, "SELECT to_jsonb(p) FROM prices p WHERE note = 'list price 2026-08-22 (seed)'"
    )
    assert [(Decimal(7),)] == fetch(
        url, "SELECT input_usd_per_mtok FROM prices WHERE model_prefix = 'claude-haiku-5-5'"
    )
    costs = dict(fetch(url, "SELECT message_id, cost_usd FROM token_usage"))
    assert {"m1": Decimal(4), "m2": Decimal(9)} == costs  # opus-5-5 at 4/Mtok, the user's 9/Mtok
    assert [(2, Decimal(13))] == fetch(
        url, "SELECT sum(responses), sum(priced_cost_usd) FROM token_usage_hourly"
    )

    migrations.downgrade(url, BEFORE)
    assert user_before == fetch(
        url,
        "SELECT to_jsonb(p) FROM prices p WHERE note IS DISTINCT FROM 'list price 2026-08-22 (seed)' ORDER BY id",
    )
    assert [("claude-opus-5",)] == fetch(
        url, "SELECT model_prefix FROM prices WHERE model_prefix = 'claude-opus-5'"
    )
