"""`prices`: list, set, check, export or import the price table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from daemon import config
from daemon.database import migrated_sink
from daemon.errors import EX_OK

# `prices set` flag -> prices column (values are checked by prices.parse_values, not argparse,
# so that a bad one is a usage error naming the flag).
PRICE_FLAGS = (
    ("--input", "input_usd_per_mtok"),
    ("--output", "output_usd_per_mtok"),
    ("--cache-write-5m", "cache_write_5m_usd_per_mtok"),
    ("--cache-write-1h", "cache_write_1h_usd_per_mtok"),
    ("--cache-read", "cache_read_usd_per_mtok"),
    ("--long-context-threshold", "long_context_threshold_tokens"),
    ("--long-context-input-multiplier", "long_context_input_multiplier"),
    ("--long-context-output-multiplier", "long_context_output_multiplier"),
    ("--fast-multiplier", "fast_multiplier"),
    ("--data-residency-multiplier", "data_residency_multiplier"),
    ("--web-search-per-1k", "web_search_usd_per_1k"),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pr = sub.add_parser(
        "prices", help="list, set, check, export or import the price table (USD per million tokens)"
    )
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
        help="add (or update) a model's price row from a date on; history before it keeps the old price",
        description="Fields you leave out keep the row's values when one exists at --effective-from, else "
        "are copied from the model's latest row. USD per million tokens; values are numbers >= 0. "
        "A row at --effective-from=-infinity applies to all history.",
    )
    ps_set.add_argument(
        "model_prefix",
        help="the model's key: its id without a date, e.g. claude-sonnet-4-5 (prices "
        "claude-sonnet-4-5-20250929 and its Bedrock/Vertex ids, never claude-sonnet-4-5-1)",
    )
    for flag, col in PRICE_FLAGS:
        metavar = "TOKENS" if col.endswith("_tokens") else "N"
        ps_set.add_argument(flag, dest=col, metavar=metavar)
    ps_set.add_argument(
        "--effective-from", metavar="ISO-TIME", help="default: now; UTC unless it names a zone"
    )
    ps_set.add_argument("--note", help="where the price comes from")
    ps_exp = psub.add_parser(
        "export",
        help="write the whole table as JSON (for `prices import` on another host)",
        description="JSON {format, version, prices: [...]}, rows ordered by model prefix and date, "
        "amounts as decimal strings; see docs/costs-selfcheck.md.",
    )
    ps_exp.add_argument("file", nargs="?", type=Path, metavar="FILE", help="default: stdout")
    ps_imp = psub.add_parser(
        "import",
        help="add or update rows from a `prices export` file, by (model prefix, effective-from)",
        description="Rows of the file are added, or update the row with the same model prefix and "
        "effective-from; rows not in the file are kept. All or nothing: a bad entry imports none.",
    )
    ps_imp.add_argument("file", type=Path, metavar="FILE")
    ps_imp.add_argument(
        "--dry-run", action="store_true", help="report what would change, write nothing"
    )
    pr.set_defaults(handler=cmd_prices)


def cmd_prices(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import prices

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
    action = args.prices_command or "list"
    if action == "set":  # check the values before touching the database
        values = prices.parse_values({col: (flag, getattr(args, col)) for flag, col in PRICE_FLAGS})
        when = None
        if args.effective_from is not None:
            when = prices.parse_time("--effective-from", args.effective_from)
    entries = prices.read_import_file(args.file) if action == "import" else []
    with migrated_sink(settings) as sink:
        conn = sink.connection()
        if action == "export":
            doc = prices.export_document(conn)
            if args.file is None:
                sys.stdout.write(prices.dump_document(doc))
            else:
                args.file.write_text(prices.dump_document(doc), encoding="utf-8")
                print(f"exported {len(doc['prices'])} price rows to {args.file}", file=sys.stderr)
            return EX_OK
        if action == "import":
            summary = prices.import_prices(conn, entries, dry_run=args.dry_run)
            sys.stdout.write(summary.render(str(args.file), dry_run=args.dry_run))
            return EX_OK
        if action == "set":
            outcome = prices.set_price(conn, args.model_prefix, values, when, args.note)
            print(f"{args.model_prefix}: {outcome}", file=sys.stderr)
        sys.stdout.write(prices.render(prices.list_prices(conn)))
    return EX_OK
