"""dashboards/session-db.json: every panel's SQL runs against the real schema with Grafana's
PostgreSQL macros expanded the way Grafana expands them, and the cost panels carry the views' totals."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO

DASHBOARD = REPO / "dashboards" / "session-db.json"
FROM = datetime(2026, 11, 1, tzinfo=UTC)  # around the fixture's responses (2026-11-23)
TO = datetime(2026, 12, 1, tzinfo=UTC)
INTERVAL = "1h"  # what Grafana would pick for $__interval on a month at this width
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(interval: str) -> int:
    m = re.fullmatch(r"'?(\d+)([smhdw])'?", interval.strip())
    assert m, interval
    return int(m.group(1)) * UNITS_S[m.group(2)]


def expand(sql: str, start: datetime, end: datetime, interval: str) -> str:
    """Grafana's PostgreSQL macros (grafana-postgresql-datasource macros.go), over [start, end]."""
    def ts(t: datetime) -> str:
        return "'" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    def group(m: re.Match[str], alias: bool) -> str:
        col, every = (a.strip() for a in m.group(1).split(",")[:2])
        s = seconds(every)
        return f"floor(extract(epoch from {col})/{s})*{s}" + (' AS "time"' if alias else "")

    sql = sql.replace("$__interval", interval)
    sql = re.sub(r"\$__timeGroupAlias\(([^)]*)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^)]*)\)", lambda m: group(m, False), sql)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", lambda m: f"{m.group(1)} BETWEEN {ts(start)} AND {ts(end)}", sql)
    sql = re.sub(r"\$__timeEpoch\(([^)]*)\)", lambda m: f'extract(epoch from {m.group(1)}) AS "time"', sql)
    sql = re.sub(r"\$__time\(([^)]*)\)", lambda m: f'{m.group(1)} AS "time"', sql)
    sql = sql.replace("$__timeFrom()", ts(start)).replace("$__timeTo()", ts(end))
    assert "$__" not in sql, sql
    return sql


def panels() -> list[dict[str, Any]]:
    return list(json.loads(DASHBOARD.read_text())["panels"])


@pytest.fixture
def loaded(all_transcripts_read: str) -> str:
    with psycopg.connect(all_transcripts_read) as conn:
        conn.execute("INSERT INTO budgets (period, limit_usd) VALUES ('monthly', 100)")
    return all_transcripts_read


def run(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(expand(sql, FROM, TO, INTERVAL)).fetchall()


def test_grafana_dashboard_every_panel_query_runs(loaded: str) -> None:
    """Each panel's rawSql, macros expanded, runs on the migrated schema; the dashboard imports
    through a PostgreSQL datasource input."""
    doc = json.loads(DASHBOARD.read_text())
    assert "grafana-postgresql-datasource" == doc["__inputs"][0]["pluginId"]
    ran = 0
    for p in doc["panels"]:
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_SESSION_DB}"
            run(loaded, t["rawSql"])
            ran += 1
    assert len(doc["panels"]) == ran >= 10


def test_grafana_dashboard_cost_panels_carry_the_view_totals(loaded: str) -> None:
    """Cost in range and cost per day by model add up to token_usage_costs over the range;
    the usage blocks panel to usage_blocks; nothing outside the range is counted."""
    ((total,),) = run(
        loaded, "SELECT sum(coalesce(cost_usd, 0)) FROM token_usage_costs WHERE $__timeFilter(occurred_at)"
    )
    assert total > 0
    by_title = {p["title"]: p["targets"][0]["rawSql"] for p in panels()}
    ((in_range,),) = run(loaded, by_title["Cost in range (USD)"])
    assert total == in_range
    per_day = run(loaded, by_title["Cost per day by model"])
    assert total == sum((v for _, _, v in per_day), Decimal(0))
    assert all(t % 86400 == 0 for t, _, _ in per_day)
    blocks = run(loaded, by_title["Usage blocks"])
    assert total == sum((c for _, c, _ in blocks), Decimal(0))
    before = expand(by_title["Cost in range (USD)"], datetime(2020, 1, 1, tzinfo=UTC), FROM, INTERVAL)
    with psycopg.connect(loaded) as conn:
        assert [(None,)] == conn.execute(before).fetchall()
    (budget,) = run(loaded, by_title["Budgets"])
    assert ("monthly", "(all)") == budget[:2]
