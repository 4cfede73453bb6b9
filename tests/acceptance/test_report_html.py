"""`session-db report html` rendered in Debian's headless chromium (Playwright, system browser)."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Env, cli
from tests.acceptance.test_costs_cli import ingest_scenarios
from tests.conftest import REPO

SCREENSHOT = REPO / "docs" / "img" / "report.png"  # rewritten with SESSION_DB_UPDATE_DOCS=1 only
UPDATE_DOCS = os.environ.get("SESSION_DB_UPDATE_DOCS") == "1"
CHARTS = ("cost-by-day", "usage-blocks", "tool-durations", "top-sessions", "project-branches")
TOLERANCE = 1e-9


def query(env: Env, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(env.db_url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def page_file(env: Env, tmp_path: Path) -> Path:
    """Fixture hook events and transcripts ingested, then `report html` written."""
    ingest_scenarios(env, ("main", "perm", "extras", "tui"))
    out = tmp_path / "report.html"
    done = cli(env, "report", "html", str(out), "--tz", "UTC")
    assert 0 == done.returncode, done.stderr[-3000:]
    return out


def test_report_html_renders_offline_with_the_fixture_numbers(env: Env, page_file: Path) -> None:
    """In headless chromium the page draws all five charts with no console error and no request
    beyond the file itself; the charts carry the database's numbers."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run .ci/bootstrap"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        page.wait_for_function(
            "ids => ids.every(id => document.querySelector('#' + id + ' .main-svg'))",
            arg=list(CHARTS),
        )
        data = page.evaluate(
            "ids => Object.fromEntries(ids.map(id => [id, document.getElementById(id).data"
            ".map(t => ({name: t.name, x: t.x, y: t.y}))]))",
            list(CHARTS),
        )
        bars = page.evaluate("document.querySelectorAll('.main-svg .bars path').length")
        shot = SCREENSHOT if UPDATE_DOCS else page_file.with_suffix(".png")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert [] == errors
    assert [page_file.as_uri()] == requests
    assert bars > 0
    assert shot.stat().st_size > 0
    ((total,),) = query(env, "SELECT sum(coalesce(cost_usd, 0)) FROM token_usage_costs")
    assert total > 0
    for chart, axis in (("cost-by-day", "y"), ("usage-blocks", "y"), ("project-branches", "y"),
                        ("top-sessions", "x")):  # fmt: skip
        drawn = sum(sum(trace[axis]) for trace in data[chart])
        assert abs(float(total) - drawn) < TOLERANCE, chart
    sessions = query(
        env, "SELECT priced_cost_usd FROM claude_session_costs WHERE responses > 0 ORDER BY 1"
    )
    assert [float(c) for (c,) in sessions] == data["top-sessions"][0]["x"]
    tools = query(
        env,
        "SELECT tool_name, p50_ms, p95_ms FROM tool_stats WHERE p50_ms IS NOT NULL ORDER BY p95_ms DESC, 1",
    )
    assert tools
    p50, p95 = data["tool-durations"]
    assert [t for t, _, _ in tools] == p50["x"]
    assert [float(v) for _, v, _ in tools] == p50["y"]
    assert [float(v) for _, _, v in tools] == p95["y"]
    assert Decimal(0) < total
