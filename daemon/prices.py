"""The price table: list it, add an effective-dated row (`session-db prices`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from daemon import db
from daemon.errors import ConfigError

REQUIRED_FOR_NEW_MODEL = db.PRICE_COLUMNS[:5]  # the five token prices
SHORT_NAMES = {
    "input_usd_per_mtok": "input",
    "output_usd_per_mtok": "output",
    "cache_write_5m_usd_per_mtok": "cw5m",
    "cache_write_1h_usd_per_mtok": "cw1h",
    "cache_read_usd_per_mtok": "read",
    "long_context_threshold_tokens": "lc_over",
    "long_context_input_multiplier": "lc_in×",
    "long_context_output_multiplier": "lc_out×",
    "fast_multiplier": "fast×",
    "data_residency_multiplier": "geo×",
    "web_search_usd_per_1k": "search/1k",
}


def list_prices(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(db.SELECT_PRICES).fetchall()
    names = ["model_prefix", "effective_from", *db.PRICE_COLUMNS, "note"]
    return [dict(zip(names, r, strict=True)) for r in rows]


def render(rows: list[dict[str, Any]]) -> str:
    cols = ["model_prefix", "effective_from", *db.PRICE_COLUMNS]
    head = [SHORT_NAMES.get(c, c) for c in cols]
    table = [head]
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, Decimal):
                v = format(v.normalize(), "f")
            cells.append("" if v is None else str(v))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return (
        "\n".join(lines)
        + "\nUSD per million tokens; a key prices the model id equal to it, and its dated and"
        " provider forms (docs/costs.md).\n"
    )


def set_price(
    conn: psycopg.Connection[Any], model_prefix: str, values: dict[str, Decimal | int | None],
    effective_from: datetime | None, note: str | None,
) -> int:  # fmt: skip
    """Add a price row from `effective_from` (default now). Unset fields copy the latest row of the prefix."""
    latest = conn.execute(db.SELECT_LATEST_PRICE, (model_prefix,)).fetchone()
    params: dict[str, Any] = {}
    for i, col in enumerate(db.PRICE_COLUMNS):
        given = values.get(col)
        if given is not None:
            params[col] = given
        elif latest is not None:
            params[col] = latest[i]
        elif col in REQUIRED_FOR_NEW_MODEL:
            raise ConfigError(
                f"{model_prefix!r} has no price yet: give --{SHORT_NAMES[col]} (and the other token prices)"
            )
        else:
            params[col] = {
                "long_context_threshold_tokens": None,
                "web_search_usd_per_1k": Decimal(10),
            }.get(col, Decimal(1))
    params.update(
        model_prefix=model_prefix, effective_from=effective_from or datetime.now(UTC), note=note
    )
    with db.transaction(conn) as cur:
        cur.execute(db.INSERT_PRICE, params)
        row = cur.fetchone()
    assert row is not None
    assert isinstance(row[0], int)
    return row[0]
