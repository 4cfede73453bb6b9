"""Revision 0013 (one hourly rollup): daily_costs, token_usage_hourly and the re-pricing of
history read usage_hourly, with the same answers as the table 0006 kept; the downgrade rebuilds
that table from token_usage with the same sums."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from daemon import migrations

BEFORE = "0010"
AFTER = "0013"
RESPONSES = """
INSERT INTO token_usage (message_id, request_id, claude_session_id, model, input_tokens,
    output_tokens, cache_read_tokens, occurred_at, cwd) VALUES
 ('m1', 'r1', 's1', 'claude-opus-5-5', 1000, 10, 5, '2026-11-01 10:15Z', '/a'),
 ('m2', 'r2', 's2', 'claude-opus-5-5', 2000, 20, 0, '2026-11-01 10:45Z', '/b'),
 ('m3', 'r3', 's1', 'claude-sonnet-6', 3000, 30, 0, '2026-11-01 23:59Z', '/a'),
 ('m4', 'r4', 's3', NULL, 4000, 40, 0, NULL, NULL),
 ('m5', 'r5', 's3', 'claude-haiku-4-5-20251001', 5000, 50, 0, '2026-11-02 00:00Z', '/a')
"""
DAILY = "SELECT to_jsonb(d) FROM daily_costs d ORDER BY day_utc NULLS FIRST, model NULLS FIRST"
HOURLY = "SELECT to_jsonb(h) FROM token_usage_hourly h WHERE responses <> 0 ORDER BY hour_utc, model"


def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_usage_rollup_migration_keeps_every_answer(empty_db_url: str) -> None:
    """daily_costs and token_usage_hourly answer the same before 0013, after it, after a price
    change (re-priced through usage_hourly), and after the downgrade rebuilt the table."""
    url = empty_db_url
    migrations.upgrade(url, BEFORE)
    with psycopg.connect(url) as conn:
        conn.execute(RESPONSES)
    daily, hourly = fetch(url, DAILY), fetch(url, HOURLY)
    assert len(daily) == 4  # three dated models' days and the response without a time

    migrations.upgrade(url, AFTER)
    assert [("v",)] == fetch(
        url, "SELECT relkind::text FROM pg_class WHERE relname = 'token_usage_hourly'"
    )
    assert (daily, hourly) == (fetch(url, DAILY), fetch(url, HOURLY))
    with psycopg.connect(url) as conn:  # a price for the unpriced model re-prices its response
        conn.execute(
            "INSERT INTO prices (model_prefix, effective_from, input_usd_per_mtok,"
            " output_usd_per_mtok, cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok,"
            " cache_read_usd_per_mtok, note) VALUES ('claude-sonnet-6', '-infinity', 1, 1, 1, 1, 1, 'mine')"
        )
    repriced = fetch(url, DAILY)
    assert [(Decimal("0.00303"), 0)] == fetch(  # 3,000 in + 30 out at 1 USD/Mtok
        url,
        "SELECT cost_usd, unpriced_responses FROM daily_costs WHERE model = 'claude-sonnet-6'",
    )

    migrations.downgrade(url, BEFORE)
    assert [("r",)] == fetch(
        url, "SELECT relkind::text FROM pg_class WHERE relname = 'token_usage_hourly'"
    )
    assert repriced == fetch(url, DAILY)
