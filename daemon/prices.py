"""The price table: list it, set an effective-dated row, export and import it (`session-db prices`).

A row is keyed by (model_prefix, effective_from): `set` and `import` add a row or update the
one at that key, so running either twice changes nothing. Values from the command line are
checked here (`parse_amount`, `parse_tokens`, `parse_time`) and refused with a `UsageError`
naming the flag; a file that cannot be imported is refused with an `InputDataError` naming the
entry, before anything is written.

Export format (`EXPORT_FORMAT`, version `EXPORT_VERSION`), JSON::

    {"format": "session-db-prices", "version": 1,
     "prices": [{"model_prefix": "claude-sonnet-4-5", "effective_from": "-infinity",
                 "input_usd_per_mtok": "3", ..., "note": null}, ...]}

Rows are ordered by model_prefix, then effective_from; keys in table column order; every
amount is a decimal string (exact, no binary float), `long_context_threshold_tokens` an
integer or null; effective_from is ISO 8601 in UTC or "-infinity". Import also accepts JSON
numbers, and an entry that leaves out an optional column gets the column's default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg

from daemon import db
from daemon.errors import ConfigError, InputDataError, UsageError

EXPORT_FORMAT = "session-db-prices"
EXPORT_VERSION = 1
INFINITE_TIMES = ("-infinity", "infinity")
FOOTER = (
    "USD per million tokens; a key prices the model id equal to it, and its dated and"
    " provider forms (docs/costs.md).\n"
)

REQUIRED_FOR_NEW_MODEL = db.PRICE_COLUMNS[:5]  # the five token prices
# What an unset optional column is for a model's first row (the table's column defaults).
OPTIONAL_DEFAULTS: dict[str, Decimal | int | None] = {
    "long_context_threshold_tokens": None,
    "web_search_usd_per_1k": Decimal(10),
}
OPTIONAL_DEFAULT_MULTIPLIER = Decimal(1)

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
    return "\n".join(lines) + "\n" + FOOTER


@dataclass
class ImportSummary:
    """What `import_prices` did (or, with dry_run, would do), by (model_prefix, effective_from)."""

    added: list[tuple[str, str]] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)

    def render(self, source: str, *, dry_run: bool) -> str:
        verb = "would import" if dry_run else "imported"
        lines = [
            f"{verb} {source}: {len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged"
        ]
        for what, keys in (("added", self.added), ("updated", self.updated)):
            lines += [f"  {what:<8} {prefix}  from {when}" for prefix, when in keys]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Values from the command line


def token_price_flag(column: str) -> str:
    """The `prices set` flag of a token price column: input_usd_per_mtok -> --input."""
    return "--" + column.removesuffix("_usd_per_mtok").replace("_", "-")


def parse_amount(flag: str, text: str) -> Decimal:
    """A price or multiplier: a finite decimal number >= 0, else a UsageError naming `flag`."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise UsageError(f"{flag}: {text!r} is not a number (give e.g. 3 or 0.30)") from None
    if not value.is_finite():
        raise UsageError(f"{flag}: {text!r} is not a finite number")
    if value < 0:
        raise UsageError(f"{flag}: {text!r} is negative; prices and multipliers are >= 0")
    return value


def parse_tokens(flag: str, text: str) -> int:
    """A token count: a whole number >= 0, else a UsageError naming `flag`."""
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a whole number of tokens") from None
    if value < 0:
        raise UsageError(f"{flag}: {text!r} is negative")
    return value


def parse_time(flag: str, text: str) -> datetime | str:
    """An ISO 8601 time (UTC when it names no zone), or '-infinity' (since always)."""
    if text.strip() in INFINITE_TIMES:
        return text.strip()
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{flag}: {text!r} is not an ISO 8601 time (e.g. 2026-10-07 or 2026-10-07T00:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_values(raw: Mapping[str, tuple[str, str | None]]) -> dict[str, Decimal | int | None]:
    """The price columns given on the command line (column -> (flag, text or None)), checked
    and converted; a column left out is None."""
    out: dict[str, Decimal | int | None] = dict.fromkeys(db.PRICE_COLUMNS)
    for col, (flag, text) in raw.items():
        if col not in out:
            raise ValueError(f"not a price column: {col}")
        if text is None:
            continue
        out[col] = parse_tokens(flag, text) if col.endswith("_tokens") else parse_amount(flag, text)
    return out


# ---------------------------------------------------------------------------------------
# set


def _default(col: str) -> Decimal | int | None:
    return OPTIONAL_DEFAULTS.get(col, OPTIONAL_DEFAULT_MULTIPLIER)


def set_price(
    conn: psycopg.Connection[Any], model_prefix: str, values: Mapping[str, Decimal | int | None],
    effective_from: datetime | str | None, note: str | None,
) -> str:  # fmt: skip
    """Add or update the row at (model_prefix, effective_from); 'added', 'updated' or 'unchanged'.

    effective_from defaults to now. Fields left out keep the values of the row at that time
    when it exists, else copy the prefix's latest row; a model's first row needs the five
    token prices.
    """
    when = effective_from if effective_from is not None else datetime.now(UTC)
    base = conn.execute(db.SELECT_PRICE_AT, (model_prefix, when)).fetchone()
    if base is None:
        latest = conn.execute(db.SELECT_LATEST_PRICE, (model_prefix,)).fetchone()
        base = None if latest is None else (*latest, None)  # a new row gets only its own note
    params: dict[str, Any] = {}
    for i, col in enumerate(db.PRICE_COLUMNS):
        given = values.get(col)
        if given is not None:
            params[col] = given
        elif base is not None:
            params[col] = base[i]
        elif col in REQUIRED_FOR_NEW_MODEL:
            raise ConfigError(
                f"{model_prefix!r} has no price yet: give {token_price_flag(col)} (and the other token prices)"
            )
        else:
            params[col] = _default(col)
    kept_note = base[len(db.PRICE_COLUMNS)] if base is not None else None
    params.update(
        model_prefix=model_prefix, effective_from=when, note=note if note is not None else kept_note
    )
    with db.transaction(conn) as cur:
        cur.execute(db.UPSERT_PRICE, params)
        row = cur.fetchone()
    if row is None:
        return "unchanged"
    return "added" if row[0] else "updated"


# ---------------------------------------------------------------------------------------
# export and import


def _amount_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _time_text(utc_text: str) -> str:
    """'2027-01-01 00:00:00' (UTC, from PostgreSQL) as '2027-01-01T00:00:00+00:00'."""
    if utc_text in INFINITE_TIMES:
        return utc_text
    return datetime.fromisoformat(utc_text).replace(tzinfo=UTC).isoformat()


def export_document(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The whole price table as the export document (see the module docstring)."""
    rows = []
    for r in conn.execute(db.SELECT_PRICES_FOR_EXPORT).fetchall():
        entry: dict[str, Any] = {"model_prefix": r[0], "effective_from": _time_text(r[1])}
        for col, value in zip(db.PRICE_COLUMNS, r[2:-1], strict=True):
            entry[col] = _amount_text(value) if isinstance(value, Decimal) else value
        entry["note"] = r[-1]
        rows.append(entry)
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "prices": rows}


def dump_document(doc: Mapping[str, Any]) -> str:
    """The export document as JSON text: indented, key order fixed, one trailing newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _entry(source: str, n: int, raw: object) -> dict[str, Any]:
    """One checked import entry: every price column set (defaults filled in), times parsed."""
    where = f"{source}: prices[{n}]"
    if not isinstance(raw, dict):
        raise InputDataError(f"{where} is not an object")
    known = {"model_prefix", "effective_from", "note", *db.PRICE_COLUMNS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputDataError(
            f"{where} has unknown field(s) {', '.join(unknown)} (written by a newer session-db? "
            "upgrade this one first); nothing was imported"
        )
    prefix = raw.get("model_prefix")
    if not isinstance(prefix, str) or not prefix.strip():
        raise InputDataError(f"{where}.model_prefix must be a non-empty string")
    when_raw = raw.get("effective_from")
    if not isinstance(when_raw, str):
        raise InputDataError(f"{where}.effective_from must be an ISO 8601 time or '-infinity'")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise InputDataError(f"{where}.note must be a string or null")
    entry: dict[str, Any] = {"model_prefix": prefix, "note": note}
    try:
        when = parse_time("effective_from", when_raw)
        entry["effective_from"] = when if isinstance(when, str) else when.isoformat()
        for col in db.PRICE_COLUMNS:
            value = raw.get(col)
            if value is None:
                if col in REQUIRED_FOR_NEW_MODEL:
                    raise UsageError(f"{col}: missing (every entry needs the five token prices)")
                entry[col] = _default(col)
            elif isinstance(value, bool) or not isinstance(value, str | int | Decimal):
                raise UsageError(f"{col}: {value!r} is not a number")
            elif col.endswith("_tokens"):
                entry[col] = parse_tokens(col, str(value))
            else:
                entry[col] = parse_amount(col, str(value))
    except UsageError as exc:
        raise InputDataError(f"{where} ({prefix}): {exc}; nothing was imported") from None
    return entry


def read_import_file(path: Path) -> list[dict[str, Any]]:
    """The checked entries of an export file; InputDataError names what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read {path}: {exc}") from exc
    try:
        doc = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise InputDataError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise InputDataError(
            f'{path} is not a price export: expected an object with "format": "{EXPORT_FORMAT}" '
            "(written by `session-db prices export`)"
        )
    if doc.get("version") != EXPORT_VERSION:
        raise InputDataError(
            f"{path} is price export version {doc.get('version')!r}; this session-db reads "
            f"version {EXPORT_VERSION}"
        )
    entries = doc.get("prices")
    if not isinstance(entries, list):
        raise InputDataError(f'{path}: "prices" must be a list')
    checked = [_entry(str(path), n, raw) for n, raw in enumerate(entries)]
    seen: set[tuple[str, str]] = set()
    for e in checked:
        key = (e["model_prefix"], e["effective_from"])
        if key in seen:
            raise InputDataError(
                f"{path}: {key[0]} from {key[1]} appears twice; nothing was imported"
            )
        seen.add(key)
    return checked


def import_prices(
    conn: psycopg.Connection[Any], entries: Iterable[Mapping[str, Any]], *, dry_run: bool
) -> ImportSummary:
    """Upsert every entry in one transaction (rolled back with dry_run); what changed."""
    summary = ImportSummary()
    try:
        with conn.cursor() as cur:
            for e in entries:
                cur.execute(db.UPSERT_PRICE, dict(e))
                row = cur.fetchone()
                key = (str(e["model_prefix"]), str(e["effective_from"]))
                if row is None:
                    summary.unchanged.append(key)
                elif row[0]:
                    summary.added.append(key)
                else:
                    summary.updated.append(key)
    except BaseException:
        conn.rollback()
        raise
    if dry_run:
        conn.rollback()
    else:
        conn.commit()
    return summary
