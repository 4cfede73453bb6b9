"""`session-db report`, `projects` and `budget` through the real command line."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Env, cli
from tests.conftest import FIXTURES


def query(env: Env, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(env.db_url) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def backfilled(env: Env, tmp_path: Path) -> Env:
    """The fixture transcripts imported with `session-db backfill`."""
    dest = tmp_path / "projects"
    shutil.copytree(FIXTURES / "transcripts", dest)
    done = cli(env, "migrate")
    assert 0 == done.returncode, done.stderr[-2000:]
    done = cli(env, "backfill", str(dest))
    assert 0 == done.returncode, done.stderr[-2000:]
    return env


def logged(stderr: str, event: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                out.append(record)
    return out


def test_report_cli_json_has_the_documented_schema_and_view_totals(backfilled: Env) -> None:
    """report daily --json: schema_version 1, the documented keys, totals equal to token_usage_costs."""
    done = cli(backfilled, "report", "daily", "--tz", "UTC", "--json")
    assert 0 == done.returncode, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert 1 == doc["schema_version"]
    assert {"schema_version", "report", "generated_at", "tz", "filters", "columns", "rows", "totals",
            "budgets"} == doc.keys()  # fmt: skip
    assert "daily" == doc["report"]
    assert all(doc["columns"] == list(r) for r in doc["rows"])
    ((n, cost),) = query(backfilled, "SELECT count(*), sum(cost_usd) FROM token_usage_costs")
    assert n == doc["totals"]["responses"]
    assert round(cost, 6) == Decimal(str(doc["totals"]["cost_usd"]))


def test_report_cli_table_fits_columns_and_csv_parses(backfilled: Env) -> None:
    """The table honours the terminal width ($COLUMNS) and has a Total line; --csv is one row per line."""
    backfilled.extra["COLUMNS"] = "72"
    done = cli(backfilled, "report", "session", "--tz", "UTC", "--breakdown")
    assert 0 == done.returncode, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("Total") for line in lines)
    assert all(len(line) <= 72 for line in lines)
    csv_out = cli(backfilled, "report", "models", "--csv")
    assert 0 == csv_out.returncode
    header, *rows = csv_out.stdout.splitlines()
    assert header.startswith("model,responses,")
    assert rows


def test_projects_alias_groups_directories_in_reports(backfilled: Env) -> None:
    """projects alias PATH NAME: both directories count as NAME in report projects; rm undoes it."""
    dirs = [
        d
        for (d,) in query(
            backfilled, "SELECT DISTINCT cwd FROM token_usage WHERE cwd IS NOT NULL ORDER BY 1"
        )
    ]
    for d in dirs[:2]:
        done = cli(backfilled, "projects", "alias", d + "/", "demo")
        assert 0 == done.returncode, done.stderr[-2000:]
    listing = cli(backfilled, "projects", "list").stdout
    assert dirs[0] in listing
    assert "demo" in listing
    doc = json.loads(cli(backfilled, "report", "projects", "--json").stdout)
    ((n,),) = query(backfilled, "SELECT count(*) FROM token_usage WHERE cwd = ANY(%s)", dirs[:2])
    assert {"demo": n} == {
        r["project"]: r["responses"] for r in doc["rows"] if r["project"] == "demo"
    }
    assert 0 == cli(backfilled, "projects", "rm", dirs[0]).returncode
    assert 1 == cli(backfilled, "projects", "rm", "/no/such/dir").returncode
    doc = json.loads(cli(backfilled, "report", "projects", "--json").stdout)
    assert dirs[0] in {r["project"] for r in doc["rows"]}


def test_budget_exceeded_is_logged_once_per_period(backfilled: Env) -> None:
    """A daily budget below today's spend: the first ingest pass logs budget_exceeded (warning),
    the next does not; status and report show the spend against the limit."""
    with psycopg.connect(backfilled.db_url) as conn:
        conn.execute(
            "INSERT INTO token_usage (message_id, request_id, model, input_tokens, output_tokens, occurred_at)"
            " VALUES ('today', 'r', 'claude-sonnet-4-5', 100000, 10000, now())"
        )
    done = cli(backfilled, "budget", "set", "--daily", "0.25", "--tz", "UTC")
    assert 0 == done.returncode, done.stderr[-2000:]
    assert "daily" in done.stdout
    assert "EXCEEDED" in done.stdout  # 0.30 + 0.15 USD spent today
    first = cli(backfilled, "ingest", "--once")
    assert 0 == first.returncode, first.stderr[-2000:]
    (alert,) = logged(first.stderr, "budget_exceeded")
    assert "warning" == alert["level"]
    assert ("daily", "0.25", "0.450000") == (
        alert["period"],
        alert["limit_usd"],
        alert["spent_usd"],
    )
    second = cli(backfilled, "ingest", "--once")
    assert [] == logged(second.stderr, "budget_exceeded")
    status = cli(backfilled, "status")
    assert "0.45 of 0.25 USD" in status.stdout
    report = cli(backfilled, "report", "daily")
    assert "0.45 of 0.25 USD" in report.stdout
    assert 0 == cli(backfilled, "budget", "rm", "--daily").returncode
    assert 1 == cli(backfilled, "budget", "rm", "--daily").returncode
