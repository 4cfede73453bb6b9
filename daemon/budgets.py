"""Budgets (`session-db budget`): a USD limit per day, ISO week or month, for all usage or one
project; the daemon logs `budget_exceeded` once per budget and period (budget_alerts)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, cast

import psycopg
import structlog

from daemon import db
from daemon.errors import ConfigError
from daemon.schema import BUDGET_PERIODS

log = structlog.get_logger("session_db.budgets")

CHECK_INTERVAL_S = 60.0  # how often the daemon compares spend with the budgets
ALL_PROJECTS = ""  # budgets.project for a budget over all usage


def parse_usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ConfigError(f"not an amount in USD: {text!r}") from exc
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"a budget must be a positive amount in USD: {text!r}")
    return value


def set_budget(
    conn: psycopg.Connection[Any], period: str, usd: Decimal, project: str | None, tz: str
) -> None:
    if period not in BUDGET_PERIODS:
        raise ConfigError(f"budget period must be one of {', '.join(BUDGET_PERIODS)}: {period!r}")
    with db.transaction(conn) as cur:
        cur.execute(db.UPSERT_BUDGET, (period, project or ALL_PROJECTS, usd, tz))


def remove_budget(conn: psycopg.Connection[Any], period: str, project: str | None) -> bool:
    with db.transaction(conn) as cur:
        cur.execute(db.DELETE_BUDGET, (period, project or ALL_PROJECTS))
        return cur.rowcount > 0


def check(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Record and log every budget newly over its limit in its current period (once each)."""
    with db.transaction(conn) as cur:
        cur.execute(db.INSERT_BUDGET_ALERTS)
        rows = cast(list[tuple[Any, ...]], cur.fetchall())
    exceeded = []
    for bid, period, project, limit, tz, start, spent in rows:
        item = {"budget_id": bid, "period": period, "project": project or None,
                "limit_usd": limit, "spent_usd": spent, "period_start": start, "tz": tz}  # fmt: skip
        log.warning(
            "budget_exceeded",
            budget_id=bid,
            period=period,
            project=project or "(all)",
            limit_usd=str(limit),
            spent_usd=str(round(spent, 6)),
            period_start=start.isoformat(),
        )
        exceeded.append(item)
    return exceeded
