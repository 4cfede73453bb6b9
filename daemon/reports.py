"""`session-db report`: everyday answers (cost per day, week, month, session, block, project,
model) read from the views, as aligned tables, CSV or JSON.

The JSON document (REPORT_SCHEMA_VERSION) is a contract; docs/reports.md describes it:
  {"schema_version": 1, "report": KIND, "generated_at": ISO-8601, "tz": ZONE,
   "filters": {"since", "until", "project", "host", "breakdown", "branches", "active"},
   "columns": [NAME, ...], "rows": [{NAME: VALUE}, ...], "totals": {NAME: VALUE},
   "budgets": [{"period", "project", "limit_usd", "spent_usd", ...}]}
Costs are numbers in USD (rounded to 1e-6), tokens integers, times ISO-8601 in tz, dates
YYYY-MM-DD; cost_usd is null where a response has no price (priced_cost_usd sums the rest).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from daemon import db
from daemon.errors import ConfigError

REPORT_SCHEMA_VERSION = 1
PERIOD_UNITS = {"daily": "day", "weekly": "week", "monthly": "month"}
KINDS = (*PERIOD_UNITS, "session", "blocks", "projects", "models")
DEFAULT_TERMINAL_COLUMNS = 100  # characters, when stdout is not a terminal
MIN_NOTE_WIDTH = 40  # characters: the note on hidden columns wraps at the width, not below this
COST_DECIMALS = 6  # USD digits kept in JSON and CSV
ZONEINFO_MARKER = "zoneinfo/"
FALLBACK_TZ = "UTC"
ROLLUP_ZONE_CHECK_FROM_YEAR = 2020  # zones are checked for non-hour offsets from this year on
ZONE_CHECK_STEP = timedelta(days=14)  # offsets change at most a few times a year

# Columns that are summed into the totals row.
SUMMED = (
    "responses",
    "input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "total_tokens",
    "priced_cost_usd",
    "cache_savings_usd",
)

# Table columns: (name, heading, priority). When a table is wider than the terminal, the
# columns with the highest priority number go first.
TABLE_COLUMNS: dict[str, tuple[str, int]] = {
    "period": ("Date", 0),
    "session": ("Session", 0),
    "title": ("Title", 4),
    "project": ("Project", 1),
    "git_branch": ("Branch", 1),
    "model": ("Model", 1),
    "start_at": ("Block start", 0),
    "end_at": ("Block end", 5),
    "active": ("Active", 1),
    "first_response_at": ("First", 6),
    "last_response_at": ("Last", 3),
    "responses": ("Responses", 5),
    "sessions": ("Sessions", 4),
    "input_tokens": ("Input", 3),
    "output_tokens": ("Output", 3),
    "cache_write_tokens": ("Cache write", 4),
    "cache_read_tokens": ("Cache read", 4),
    "total_tokens": ("Total tokens", 2),
    "cost_usd": ("Cost USD", 0),
    "priced_cost_usd": ("Priced USD", 7),
    "cache_savings_usd": ("Cache saved", 3),
    "models": ("Models", 6),
    "tokens_per_minute": ("Tokens/min", 2),
    "usd_per_hour": ("USD/h", 2),
    "remaining_minutes": ("Min left", 3),
    "projected_tokens": ("Proj. tokens", 4),
    "projected_cost_usd": ("Proj. USD", 2),
}


@dataclass(frozen=True, slots=True)
class Filters:
    since: date | None = None
    until: date | None = None
    tz: str = FALLBACK_TZ
    project: str | None = None
    host: str | None = None
    breakdown: bool = False  # one row per model within each group
    branches: bool = False  # projects: one row per git branch
    active: bool = False  # blocks: only the active block


def local_zone() -> str:
    """The IANA name of this machine's time zone ($TZ, /etc/localtime, /etc/timezone), else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and not tz.startswith("/"):
        return tz
    link = tz or "/etc/localtime"
    try:
        target = os.path.realpath(link)
        if ZONEINFO_MARKER in target:
            return target.split(ZONEINFO_MARKER, 1)[1]
    except OSError:
        pass
    try:
        name = Path("/etc/timezone").read_text().strip()
    except OSError:
        name = ""
    return name or FALLBACK_TZ


def check_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin or UTC") from exc
    return tz


def whole_hour_zone(tz: str) -> bool:
    """Whether every UTC offset tz has had since ROLLUP_ZONE_CHECK_FROM is a whole number of hours
    (then its days begin on UTC hour boundaries and the hourly rollup answers exactly)."""
    zone = ZoneInfo(tz)
    start = datetime(ROLLUP_ZONE_CHECK_FROM_YEAR, 1, 1, tzinfo=UTC)
    end = datetime.now(UTC) + timedelta(days=366)
    t = start
    while t < end:
        offset = t.astimezone(zone).utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return False
        t += ZONE_CHECK_STEP
    return True


def _params(f: Filters) -> dict[str, Any]:
    p = asdict(f)
    p["unit"] = None
    return p


def _fetch(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _localize(rows: list[dict[str, Any]], tz: str) -> None:
    zone = ZoneInfo(tz)
    for r in rows:
        for k, v in r.items():
            if isinstance(v, datetime):
                r[k] = v.astimezone(zone)


def build(conn: psycopg.Connection[Any], kind: str, f: Filters) -> dict[str, Any]:
    """The report as a JSON-ready document (module docstring)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown report {kind!r}: one of {', '.join(KINDS)}")
    check_zone(f.tz)
    params = _params(f)
    source = "rollup" if whole_hour_zone(f.tz) else "responses"
    if kind in PERIOD_UNITS:
        params["unit"] = PERIOD_UNITS[kind]
        rows = _fetch(conn, db.REPORT_QUERIES["periods", source], params)
        keys = ["period", *(["model"] if f.breakdown else [])]
    elif kind == "session":
        rows = _fetch(conn, db.REPORT_QUERIES["session", source], params)
        keys = ["session", "title", "project", "first_response_at", "last_response_at",
                *(["model"] if f.breakdown else [])]  # fmt: skip
    elif kind == "projects":
        rows = _fetch(conn, db.REPORT_QUERIES["projects", source], params)
        keys = ["project", *(["git_branch"] if f.branches else []),
                *(["model"] if f.breakdown else [])]  # fmt: skip
    elif kind == "models":
        rows = _fetch(conn, db.REPORT_QUERIES["models", source], params)
        keys = ["model"]
    else:
        rows = _fetch(conn, db.REPORT_BLOCKS, params)
        keys = ["start_at", "end_at", "active", "first_response_at", "last_response_at", "models"]
    _localize(rows, f.tz)
    if kind == "blocks":
        columns = [*keys, "responses", "sessions", "input_tokens", "output_tokens",
                   "cache_write_tokens", "cache_read_tokens", "total_tokens", "cost_usd",
                   "priced_cost_usd", "tokens_per_minute", "usd_per_hour", "remaining_minutes",
                   "projected_tokens", "projected_cost_usd"]  # fmt: skip
    else:
        columns = [*keys, "responses", "sessions", "input_tokens", "output_tokens",
                   "cache_write_tokens", "cache_read_tokens", "total_tokens", "cost_usd",
                   "priced_cost_usd", "cache_savings_usd"]  # fmt: skip
    rows = [{c: r.get(c) for c in columns} for r in rows]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "report": kind,
        "generated_at": datetime.now(ZoneInfo(f.tz)),
        "tz": f.tz,
        "filters": {k: v for k, v in asdict(f).items() if k != "tz"},
        "columns": columns,
        "rows": rows,
        "totals": totals(rows),
        "budgets": budget_rows(conn, f.project),
    }


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sums of the summed columns; cost_usd is None when any row's is (an unpriced response)."""
    out: dict[str, Any] = {}
    if not rows:
        return out
    for c in (*SUMMED, "cost_usd", "projected_cost_usd"):
        if c not in rows[0]:
            continue
        values = [r[c] for r in rows]
        if c == "cost_usd":
            out[c] = None if any(v is None for v in values) else sum(values, Decimal(0))
        elif c == "projected_cost_usd":
            continue
        else:
            out[c] = sum((v or 0 for v in values), Decimal(0) if c.endswith("_usd") else 0)
    return out


def budget_rows(conn: psycopg.Connection[Any], project: str | None) -> list[dict[str, Any]]:
    rows = _fetch(conn, db.SELECT_BUDGET_STATUS, {"project": project})
    for r in rows:
        r["period_start"] = r["period_start"].astimezone(ZoneInfo(r["tz"]))
        r["period_end"] = r["period_end"].astimezone(ZoneInfo(r["tz"]))
    return rows


# --- output ------------------------------------------------------------------------------


def json_value(v: Any) -> Any:
    """orjson default: Decimal to a number rounded to COST_DECIMALS, anything else to str."""
    if isinstance(v, Decimal):
        q = round(v, COST_DECIMALS)
        return int(q) if q == q.to_integral_value() and v == v.to_integral_value() else float(q)
    return str(v)


def cell(column: str, v: Any) -> str:  # noqa: PLR0911 - one return per value type reads best
    if v is None:
        return "-" if column != "cost_usd" else "n/a"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    if column.endswith("_usd") or column == "usd_per_hour":
        return f"{Decimal(v):,.2f}"
    if isinstance(v, Decimal | float):
        return f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _fit(columns: list[str], table: list[list[str]], width: int) -> list[int]:
    """Indexes of the columns that fit in `width`, dropping the least important first."""
    keep = list(range(len(columns)))
    widths = [max(len(row[i]) for row in table) for i in keep]

    def total(k: list[int]) -> int:
        return sum(widths[i] for i in k) + 2 * (len(k) - 1)

    while total(keep) > width and len(keep) > 1:
        worst = max(keep, key=lambda i: (TABLE_COLUMNS.get(columns[i], ("", 9))[1], i))
        if TABLE_COLUMNS.get(columns[worst], ("", 9))[1] == 0:
            break
        keep.remove(worst)
    return keep


def render_table(report: dict[str, Any], width: int | None = None) -> str:
    """Aligned columns (numbers right-aligned) with a totals line, fitted to `width`."""
    if width is None:
        width = shutil.get_terminal_size((DEFAULT_TERMINAL_COLUMNS, 24)).columns
    columns: list[str] = report["columns"]
    title = f"session-db report {report['report']}  (time zone {report['tz']})"
    lines = [title]
    if not report["rows"]:
        lines.append("no usage in this range")
    else:
        head = [TABLE_COLUMNS.get(c, (c, 9))[0] for c in columns]
        body = [[cell(c, r[c]) for c in columns] for r in report["rows"]]
        tot = report["totals"]
        total_row = [cell(c, tot[c]) if c in tot else "" for c in columns]
        total_row[0] = "Total"
        table = [head, *body, total_row]
        keep = _fit(columns, table, width)
        widths = {i: max(len(row[i]) for row in table) for i in keep}
        numeric = {i for i in keep if any(isinstance(r[columns[i]], int | float | Decimal)
                                          and not isinstance(r[columns[i]], bool)
                                          for r in report["rows"])}  # fmt: skip

        def line(row: list[str]) -> str:
            return "  ".join(
                row[i].rjust(widths[i]) if i in numeric else row[i].ljust(widths[i]) for i in keep
            ).rstrip()

        rule = "  ".join("-" * widths[i] for i in keep)
        lines += [line(head), rule, *(line(b) for b in body), rule, line(total_row)]
        dropped = [TABLE_COLUMNS.get(columns[i], (columns[i], 9))[0]
                   for i in range(len(columns)) if i not in keep]  # fmt: skip
        if dropped:
            note = f"(not shown, too narrow: {', '.join(dropped)}; --json or --csv has them)"
            lines += textwrap.wrap(note, width=max(width, MIN_NOTE_WIDTH))
    lines += budget_lines(report["budgets"])
    return "\n".join(lines) + "\n"


def budget_lines(budgets: Sequence[dict[str, Any]]) -> list[str]:
    if not budgets:
        return []
    out = ["", "Budgets:"]
    for b in budgets:
        scope = b["project"] or "all projects"
        flag = "  EXCEEDED" if b["exceeded"] else ""
        out.append(
            f"  {b['period']:<8} {scope}: {b['spent_usd']:,.2f} of {b['limit_usd']:,.2f} USD "
            f"({b['used_fraction'] * 100:.0f}%), projected {b['projected_usd']:,.2f} by "
            f"{b['period_end'].strftime('%Y-%m-%d %H:%M')}{flag}"
        )
    return out


def render_csv(report: dict[str, Any]) -> str:
    """One header line of column names, one line per row (no totals): for spreadsheets."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(report["columns"])
    for r in report["rows"]:
        w.writerow(["" if r[c] is None else _csv_value(r[c]) for c in report["columns"]])
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return json_value(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return v
