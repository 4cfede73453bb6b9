"""`prices`: list the price table, or add an effective-dated price."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from daemon import config
from daemon.database import migrated_sink
from daemon.errors import EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pr = sub.add_parser("prices", help="list the price table, or add an effective-dated price")
    psub = pr.add_subparsers(dest="prices_command", metavar="ACTION")
    psub.add_parser("list", help="every price row (default)")
    ps_check = psub.add_parser(
        "check",
        help="list models with no price or priced unlike Claude Code (exit 1 when any)",
        description="Every model seen in token_usage that has no price, or whose cost differs from "
        "Claude Code's own (its cost-state transcript lines) by more than 1e-6 USD, with the command "
        "that fixes it.",
    )
    ps_check.add_argument("--json", action="store_true", help="machine-readable output")
    ps_set = psub.add_parser(
        "set",
        help="add a price row for a model prefix from a date on (history before it keeps the old price)",
        description="Fields you leave out are copied from the prefix's latest row. USD per million tokens.",
    )
    ps_set.add_argument(
        "model_prefix", help="e.g. claude-sonnet-4-5 (prices that id, its dated and provider forms)"
    )
    for flag, col in (
        ("--input", "input_usd_per_mtok"),
        ("--output", "output_usd_per_mtok"),
        ("--cache-write-5m", "cache_write_5m_usd_per_mtok"),
        ("--cache-write-1h", "cache_write_1h_usd_per_mtok"),
        ("--cache-read", "cache_read_usd_per_mtok"),
        ("--long-context-input-multiplier", "long_context_input_multiplier"),
        ("--long-context-output-multiplier", "long_context_output_multiplier"),
        ("--fast-multiplier", "fast_multiplier"),
        ("--data-residency-multiplier", "data_residency_multiplier"),
        ("--web-search-per-1k", "web_search_usd_per_1k"),
    ):
        ps_set.add_argument(flag, dest=col, type=Decimal, metavar="N")
    ps_set.add_argument(
        "--long-context-threshold", dest="long_context_threshold_tokens", type=int, metavar="TOKENS"
    )
    ps_set.add_argument(
        "--effective-from",
        type=datetime.fromisoformat,
        metavar="ISO-TIME",
        help="default: now (UTC)",
    )
    ps_set.add_argument("--note", help="where the price comes from")
    pr.set_defaults(handler=cmd_prices)


def cmd_prices(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import db, prices

    if args.prices_command == "check":
        from daemon import price_drift
        from daemon.errors import EX_PRICE_DRIFT

        with migrated_sink(settings) as sink:
            drifts = price_drift.find(sink.connection())
        if args.json:
            rows = [d.as_json() for d in drifts]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(price_drift.render(drifts))
        return EX_PRICE_DRIFT if drifts else EX_OK
    with migrated_sink(settings) as sink:
        conn = sink.connection()
        if args.prices_command == "set":
            values = {c: getattr(args, c) for c in db.PRICE_COLUMNS}
            when = args.effective_from
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            prices.set_price(conn, args.model_prefix, values, when, args.note)
        sys.stdout.write(prices.render(prices.list_prices(conn)))
    return EX_OK
