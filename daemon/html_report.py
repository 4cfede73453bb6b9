"""`session-db report html FILE`: one self-contained page of charts that works offline.

The chart library is plotly.js, read at run time from the installed `plotly` Python package
(extra `charts`) and embedded in the page, so opening it fetches nothing. Every figure comes from
daemon/reports.py (the same queries as `session-db report`) and the tool_stats view. Each chart's
div id is a contract the browser test reads: cost-by-day, usage-blocks, tool-durations,
top-sessions, project-branches.
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg

from daemon import db, reports
from daemon.errors import ConfigError

TOP_SESSIONS = 15  # sessions in the most-expensive chart
CHART_HEIGHT_PX = 380
BLOCK_MS = 5 * 3600 * 1000  # a usage block's width on the time axis
BLOCK_AXIS_MARGIN = timedelta(hours=6)  # room left and right of the blocks


def plotly_js() -> str:
    """plotly.min.js from the installed plotly package (no network)."""
    import importlib

    try:
        offline = importlib.import_module("plotly.offline")  # untyped package: only this call is used
    except ImportError as exc:
        raise ConfigError(
            "report html needs the plotly package for its embedded chart library: "
            "pip install 'session-db[charts]' (or pip install plotly)"
        ) from exc
    return str(offline.get_plotlyjs())


def _num(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


def figures(conn: psycopg.Connection[Any], f: reports.Filters) -> dict[str, dict[str, Any]]:
    """Plotly figure specs (data + layout) by div id."""
    daily = reports.build(conn, "daily", _with(f, breakdown=True))
    by_model: dict[str, dict[str, float]] = defaultdict(dict)
    for r in daily["rows"]:
        by_model[r["model"]][str(r["period"])] = float(r["priced_cost_usd"])
    days = sorted({str(r["period"]) for r in daily["rows"]})
    cost_by_day = {
        "data": [
            {"type": "bar", "name": m, "x": days, "y": [v.get(d, 0.0) for d in days]}
            for m, v in sorted(by_model.items())
        ],
        "layout": {"title": {"text": f"Cost per day by model (USD, {f.tz})"}, "barmode": "stack",
                   "xaxis": {"type": "category"}, "showlegend": True},
    }
    blocks = reports.build(conn, "blocks", f)["rows"]
    usage_blocks = {
        "data": [{
            "type": "bar", "name": "cost USD", "x": [_num(b["start_at"]) for b in blocks],
            "width": [BLOCK_MS] * len(blocks), "offset": 0,
            "y": [_num(b["priced_cost_usd"]) for b in blocks],
            "customdata": [_num(b["total_tokens"]) for b in blocks],
            "hovertemplate": "%{x}<br>%{y:.4f} USD<br>%{customdata:,} tokens<extra></extra>",
        }],
        "layout": {"title": {"text": "5-hour usage blocks: cost at block start"},
                   "xaxis": {"type": "date", "range": _block_range(blocks)}},
    }
    with conn.cursor() as cur:
        cur.execute(db.SELECT_TOOL_STATS)
        tools = cur.fetchall()
    tool_durations = {
        "data": [
            {"type": "bar", "name": "p50 ms", "x": [t[0] for t in tools], "y": [_num(t[2]) for t in tools]},
            {"type": "bar", "name": "p95 ms", "x": [t[0] for t in tools], "y": [_num(t[3]) for t in tools]},
        ],
        "layout": {"title": {"text": "Tool durations (ms, finished calls)"}, "barmode": "group"},
    }
    sessions = sorted(reports.build(conn, "session", f)["rows"], key=lambda r: r["priced_cost_usd"],
                      reverse=True)[:TOP_SESSIONS]  # fmt: skip
    top_sessions = {
        "data": [{
            "type": "bar", "orientation": "h",
            "y": [(r["title"] or str(r["session"])[:8]) for r in reversed(sessions)],
            "x": [_num(r["priced_cost_usd"]) for r in reversed(sessions)],
            "customdata": [str(r["session"]) for r in reversed(sessions)],
            "hovertemplate": "%{customdata}<br>%{x:.4f} USD<extra></extra>",
        }],
        "layout": {"title": {"text": f"Most expensive sessions (top {TOP_SESSIONS}, USD)"},
                   "margin": {"l": 160}},
    }
    projects = reports.build(conn, "projects", _with(f, branches=True))["rows"]
    by_branch: dict[str, dict[str, float]] = defaultdict(dict)
    for r in projects:
        by_branch[r["git_branch"]][r["project"]] = float(r["priced_cost_usd"])
    names = sorted({r["project"] for r in projects})
    project_branches = {
        "data": [
            {"type": "bar", "name": b, "x": names, "y": [v.get(p, 0.0) for p in names]}
            for b, v in sorted(by_branch.items())
        ],
        "layout": {"title": {"text": "Cost by project and git branch (USD)"}, "barmode": "stack",
                   "showlegend": True, "legend": {"title": {"text": "branch"}}},
    }
    return {
        "cost-by-day": cost_by_day,
        "usage-blocks": usage_blocks,
        "tool-durations": tool_durations,
        "top-sessions": top_sessions,
        "project-branches": project_branches,
    }


def _block_range(blocks: list[dict[str, Any]]) -> list[str] | None:
    if not blocks:
        return None
    return [(blocks[0]["start_at"] - BLOCK_AXIS_MARGIN).isoformat(),
            (blocks[-1]["end_at"] + BLOCK_AXIS_MARGIN).isoformat()]  # fmt: skip


def _with(f: reports.Filters, **changes: Any) -> reports.Filters:
    from dataclasses import replace

    return replace(f, **changes)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:">
<title>session-db report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
h1 {{ font-size: 1.4rem; margin-bottom: .2rem; }}
.meta {{ color: #666; margin-bottom: 1rem; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 1rem; }}
.chart {{ height: {height}px; border: 1px solid #ddd; border-radius: 6px; }}
table {{ border-collapse: collapse; margin-top: .5rem; }}
td, th {{ padding: .15rem .6rem; text-align: right; }} td:first-child, th:first-child {{ text-align: left; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>session-db report</h1>
<div class="meta">{meta}</div>
<table><tr><th></th><th>Responses</th><th>Tokens</th><th>Cost USD</th><th>Cache saved USD</th></tr>
<tr><td>Total</td><td id="total-responses">{responses}</td><td>{tokens}</td><td id="total-cost">{cost}</td><td>{saved}</td></tr></table>
<div class="grid">
{divs}
</div>
<script>
const FIGURES = {figures};
for (const [id, fig] of Object.entries(FIGURES)) {{
  Plotly.newPlot(id, fig.data, Object.assign({{margin: {{t: 40}}}}, fig.layout), {{displaylogo: false, responsive: true}});
}}
</script>
</body></html>
"""  # noqa: E501 - the page template keeps each HTML element on one line


def render(conn: psycopg.Connection[Any], f: reports.Filters) -> str:
    figs = figures(conn, f)
    totals = reports.build(conn, "daily", f)["totals"]
    divs = "\n".join(f'<div id="{i}" class="chart"></div>' for i in figs)
    filters = ", ".join(f"{k}={v}" for k, v in (("since", f.since), ("until", f.until), ("project", f.project),
                                                 ("host", f.host)) if v)  # fmt: skip
    meta = f"Generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, time zone {f.tz}" + (
        f"; {filters}" if filters else ""
    )
    return PAGE.format(
        height=CHART_HEIGHT_PX,
        plotly=plotly_js().replace("</script", "<\\/script"),
        meta=html.escape(meta),
        responses=f"{totals.get('responses', 0):,}",
        tokens=f"{totals.get('total_tokens', 0):,}",
        cost=f"{totals.get('priced_cost_usd', 0):,.4f}",
        saved=f"{totals.get('cache_savings_usd', 0):,.4f}",
        divs=divs,
        figures=orjson.dumps(figs, default=_num).decode().replace("</", "<\\/"),
    )


def write(conn: psycopg.Connection[Any], f: reports.Filters, path: Path) -> int:
    page = render(conn, f)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return len(page.encode())
