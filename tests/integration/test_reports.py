"""`session-db report` numbers equal queries of the views, on Claude Code 2.1.330's transcripts."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from daemon import reports
from daemon.errors import ConfigError

FIVE_HOURS = timedelta(hours=5)
FAR_EAST = "Pacific/Kiritimati"  # UTC+14: moves every fixture response to another date
HALF_HOUR = "Asia/Kolkata"  # UTC+5:30: days do not begin on a UTC hour
ROLLUP_VS_RESPONSES = """
SELECT 'rollup', hour_utc, claude_session_id, model, project, git_branch, sum(responses), sum(total_tokens),
    sum(priced_cost_usd), sum(unpriced_responses), sum(cache_savings_usd), min(first_at), max(last_at)
FROM usage_rollup GROUP BY 2, 3, 4, 5, 6
EXCEPT
SELECT 'rollup', date_trunc('hour', coalesce(occurred_at, '-infinity'), 'UTC'), claude_session_id, model, project,
    git_branch, count(*), sum(total_tokens), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE unpriced),
    coalesce(sum(cache_savings_usd), 0), min(occurred_at), max(occurred_at)
FROM usage_attribution GROUP BY 2, 3, 4, 5, 6
"""


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def loaded(all_transcripts_read: str) -> str:
    """Every fixture transcript read into token_usage; returns the database URL."""
    assert query(all_transcripts_read, "SELECT count(*) FROM token_usage")[0][0] > 10
    return all_transcripts_read


def build(url: str, kind: str, **filters: Any) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return reports.build(conn, kind, reports.Filters(**filters))


def as_decimal(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def test_reports_daily_utc_equals_daily_costs(loaded: str) -> None:
    """report daily --tz UTC has, per day, daily_costs' responses, tokens and cost summed over models."""
    expected = query(
        loaded,
        "SELECT day_utc, sum(responses), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
        " CASE WHEN bool_or(cost_usd IS NULL) THEN NULL ELSE sum(cost_usd) END"
        " FROM daily_costs WHERE day_utc IS NOT NULL GROUP BY 1 ORDER BY 1",
    )
    rows = build(loaded, "daily", tz="UTC")["rows"]
    actual = [
        (r["period"], r["responses"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
         as_decimal(r["cost_usd"]))
        for r in rows
    ]  # fmt: skip
    assert expected == actual
    assert len(expected) >= 1


def test_reports_daily_breakdown_equals_daily_costs_per_model(loaded: str) -> None:
    """--breakdown gives one row per (day, model), each equal to its daily_costs row."""
    with psycopg.connect(loaded) as conn:  # the fixture has one model: add a second one
        conn.execute(
            "INSERT INTO token_usage (message_id, request_id, model, input_tokens, output_tokens, occurred_at)"
            " SELECT message_id || ':haiku', request_id, 'claude-haiku-4-5', input_tokens, output_tokens,"
            " occurred_at FROM token_usage WHERE occurred_at IS NOT NULL"
        )
    expected = query(
        loaded,
        "SELECT day_utc, coalesce(model, '(unknown)'), responses, total, cost_usd FROM ("
        " SELECT *, input_tokens + output_tokens + cache_write_5m_tokens + cache_write_1h_tokens"
        " + cache_read_tokens AS total FROM daily_costs) d WHERE day_utc IS NOT NULL ORDER BY 1, 2",
    )
    rows = build(loaded, "daily", tz="UTC", breakdown=True)["rows"]
    actual = [
        (r["period"], r["model"], r["responses"], r["total_tokens"], as_decimal(r["cost_usd"]))
        for r in rows
    ]
    assert expected == actual
    assert len({m for _, m, *_ in expected}) > 1


@pytest.mark.parametrize(
    ("kind", "unit", "zone"),
    [("daily", "day", FAR_EAST), ("weekly", "week", FAR_EAST), ("monthly", "month", FAR_EAST),
     ("daily", "day", HALF_HOUR)],
)  # fmt: skip
def test_reports_periods_in_a_time_zone_equal_token_usage_costs(
    loaded: str, kind: str, unit: str, zone: str
) -> None:
    """Days, ISO weeks and months are cut in --tz (from the hourly rollup, or per response in a
    zone with half-hour offsets): each equals token_usage_costs grouped the same way."""
    expected = query(
        loaded,
        "SELECT date_trunc(%s, occurred_at AT TIME ZONE %s)::date, count(*), sum(coalesce(cost_usd, 0))"
        " FROM token_usage_costs WHERE occurred_at IS NOT NULL GROUP BY 1 ORDER BY 1",
        unit,
        zone,
    )
    assert reports.whole_hour_zone(zone) == (zone != HALF_HOUR)
    rows = build(loaded, kind, tz=zone)["rows"]
    assert expected == [(r["period"], r["responses"], r["priced_cost_usd"]) for r in rows]
    if zone == FAR_EAST and kind == "daily":
        utc_days = {r["period"] for r in build(loaded, "daily", tz="UTC")["rows"]}
        assert utc_days != {d for d, *_ in expected}  # the zone really moved the dates


def test_reports_since_until_are_inclusive_days(loaded: str) -> None:
    """--since/--until keep exactly the days between them, both included."""
    days = [r["period"] for r in build(loaded, "daily", tz="UTC")["rows"]]
    first = days[0]
    only = build(loaded, "daily", tz="UTC", since=first, until=first)["rows"]
    assert [first] == [r["period"] for r in only]
    none = build(loaded, "daily", tz="UTC", since=days[-1] + timedelta(days=1))["rows"]
    assert [] == none


def test_reports_totals_equal_the_sum_over_token_usage_costs(loaded: str) -> None:
    """The totals line of every report kind equals one SUM over token_usage_costs."""
    ((responses, priced, tokens),) = query(
        loaded,
        "SELECT count(*), sum(coalesce(cost_usd, 0)), sum(input_tokens + output_tokens"
        " + cache_write_5m_tokens + cache_write_1h_tokens + cache_read_tokens)"
        " FROM token_usage_costs WHERE occurred_at IS NOT NULL",
    )
    for kind in ("daily", "weekly", "monthly", "session", "projects", "models", "blocks"):
        t = build(loaded, kind, tz="UTC")["totals"]
        assert (responses, priced, tokens) == (t["responses"], t["priced_cost_usd"], t["total_tokens"]), kind


def test_reports_session_equals_claude_session_costs(loaded: str) -> None:
    """report session has claude_session_costs' cost, responses and tokens per Claude session."""
    expected = {
        sid: (n, inp, out, read, as_decimal(cost))
        for sid, n, inp, out, read, cost in query(
            loaded,
            "SELECT claude_session_id, responses, input_tokens, output_tokens, cache_read_tokens, cost_usd"
            " FROM claude_session_costs WHERE responses > 0",
        )
    }
    rows = build(loaded, "session", tz="UTC")["rows"]
    actual = {
        r["session"]: (r["responses"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                       as_decimal(r["cost_usd"]))
        for r in rows
    }  # fmt: skip
    assert expected == actual


def test_reports_models_equal_daily_costs_by_model(loaded: str) -> None:
    """report models: per model, the responses and cost of daily_costs summed over days."""
    expected = {
        m: (int(n), as_decimal(c))
        for m, n, c in query(
            loaded,
            "SELECT coalesce(model, '(unknown)'), sum(responses),"
            " CASE WHEN bool_or(cost_usd IS NULL) THEN NULL ELSE sum(cost_usd) END"
            " FROM daily_costs WHERE day_utc IS NOT NULL GROUP BY 1",
        )
    }
    rows = build(loaded, "models", tz="UTC")["rows"]
    assert expected == {r["model"]: (r["responses"], as_decimal(r["cost_usd"])) for r in rows}


def test_reports_projects_follow_aliases_and_equal_project_costs(loaded: str) -> None:
    """Two directories aliased to one name are one project row, equal to project_costs."""
    dirs = [d for (d,) in query(loaded, "SELECT DISTINCT cwd FROM token_usage WHERE cwd IS NOT NULL ORDER BY 1")]
    assert len(dirs) >= 2
    with psycopg.connect(loaded) as conn:
        conn.execute(
            "INSERT INTO project_aliases (path, name) VALUES (%s, 'both'), (%s, 'both')", (dirs[0], dirs[1])
        )
    expected = {
        p: (n, Decimal(c)) for p, n, c in query(loaded, "SELECT project, responses, priced_cost_usd FROM project_costs")
    }
    rows = build(loaded, "projects", tz="UTC")["rows"]
    assert expected == {r["project"]: (r["responses"], r["priced_cost_usd"]) for r in rows}
    ((n_both,),) = query(loaded, "SELECT count(*) FROM token_usage WHERE cwd IN (%s, %s)", dirs[0], dirs[1])
    assert n_both == expected["both"][0]
    only = build(loaded, "daily", tz="UTC", project="both")["totals"]
    assert n_both == only["responses"]


def test_reports_project_branches_equal_branch_costs(loaded: str) -> None:
    """projects --branches: one row per (project, git branch), equal to branch_costs."""
    expected = {
        (p, b or "(none)"): (n, Decimal(c))
        for p, b, n, c in query(loaded, "SELECT project, git_branch, responses, priced_cost_usd FROM branch_costs")
    }
    rows = build(loaded, "projects", tz="UTC", branches=True)["rows"]
    assert expected == {(r["project"], r["git_branch"]): (r["responses"], r["priced_cost_usd"]) for r in rows}
    assert any(b != "(none)" for _, b in expected)


def ccusage_blocks(times: list[datetime]) -> list[tuple[datetime, datetime]]:
    """ccusage's rule, written out: (start, last response) per block."""
    blocks: list[list[datetime]] = []
    for t in sorted(times):
        if not blocks or t - blocks[-1][0] > FIVE_HOURS or t - blocks[-1][2] > FIVE_HOURS:
            blocks.append([t.replace(minute=0, second=0, microsecond=0), t, t])
        blocks[-1][2] = t
    return [(b[0], b[2]) for b in blocks]


def test_reports_blocks_follow_the_five_hour_rule(loaded: str) -> None:
    """usage_blocks starts a block at the hour of the first response after a 5 h gap or block end;
    each block's cost equals token_usage_costs summed over its span."""
    times = [t for (t,) in query(loaded, "SELECT occurred_at FROM token_usage WHERE occurred_at IS NOT NULL")]
    # A second block: the same responses shifted by a day, under new keys.
    with psycopg.connect(loaded) as conn:
        conn.execute(
            "INSERT INTO token_usage (message_id, request_id, model, input_tokens, output_tokens, occurred_at)"
            " SELECT message_id || ':later', request_id, model, input_tokens, output_tokens,"
            " occurred_at + interval '1 day 7 hours' FROM token_usage WHERE occurred_at IS NOT NULL"
        )
    times += [t + timedelta(days=1, hours=7) for t in times]
    expected = ccusage_blocks(times)
    rows = build(loaded, "blocks", tz="UTC")["rows"]
    assert expected == [(r["start_at"], r["last_response_at"]) for r in rows]
    assert len(rows) >= 2
    for r in rows:
        ((cost,),) = query(
            loaded,
            "SELECT sum(coalesce(cost_usd, 0)) FROM token_usage_costs WHERE occurred_at BETWEEN %s AND %s",
            r["start_at"],
            r["last_response_at"],
        )
        assert cost == r["priced_cost_usd"]
        assert r["end_at"] - r["start_at"] == FIVE_HOURS
        assert r["active"] is False  # the fixture is in the past


def test_reports_active_block_has_burn_rate_and_projection(loaded: str) -> None:
    """A block with responses in the last hour is active: tokens/min over first..last response and
    a projection to the block end = now + rate × minutes left."""
    with psycopg.connect(loaded) as conn:
        conn.execute(
            "INSERT INTO token_usage (message_id, request_id, model, input_tokens, output_tokens, occurred_at)"
            " VALUES ('now-1', 'r', 'claude-sonnet-4-5', 1000, 200, now() - interval '20 minutes'),"
            " ('now-2', 'r', 'claude-sonnet-4-5', 3000, 800, now() - interval '10 minutes')"
        )
    (r,) = build(loaded, "blocks", tz="UTC", active=True)["rows"]
    assert r["active"] is True
    assert 5000 == r["total_tokens"]
    assert Decimal(500) == round(r["tokens_per_minute"], 6)  # 5000 tokens over 10 minutes
    expected_projection = 5000 + r["tokens_per_minute"] * r["remaining_minutes"]
    assert abs(expected_projection - r["projected_tokens"]) < Decimal("0.001")
    usd_per_hour = r["priced_cost_usd"] * 6  # over 10 minutes
    assert abs(usd_per_hour - r["usd_per_hour"]) < Decimal("0.000001")


def test_reports_table_fits_the_width_and_ends_with_totals(loaded: str) -> None:
    """The text table never exceeds the width it is given and carries a Total line."""
    report = build(loaded, "session", tz="UTC", breakdown=True)
    for width in (60, 80, 200):
        text = reports.render_table(report, width)
        table = text.split("\n\nBudgets:")[0].splitlines()
        assert all(len(line) <= width for line in table[1:]), width
        assert any(line.startswith("Total") for line in table)


def test_reports_csv_has_one_line_per_row(loaded: str) -> None:
    """--csv: a header of the JSON column names and one line per row."""
    report = build(loaded, "daily", tz="UTC", breakdown=True)
    lines = reports.render_csv(report).splitlines()
    assert ",".join(report["columns"]) == lines[0]
    assert len(report["rows"]) == len(lines) - 1


def test_reports_unknown_zone_is_a_config_error(loaded: str) -> None:
    """A misspelt --tz is refused with the fix, before any query."""
    with pytest.raises(ConfigError, match="IANA"):
        build(loaded, "daily", tz="Mars/Olympus")


def test_reports_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default zone is $TZ when set, else /etc/localtime's zone name."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert "Asia/Tokyo" == reports.local_zone()
    monkeypatch.delenv("TZ")
    assert reports.check_zone(reports.local_zone())
    assert isinstance(date.today(), date)


def test_reports_subagent_share_is_its_part_of_the_session(loaded: str) -> None:
    """subagent_shares.share = the subagent's priced cost / its session's priced cost (agent_costs)."""
    rows = query(
        loaded,
        "SELECT s.share, a.priced_cost_usd, c.priced_cost_usd FROM subagent_shares s"
        " JOIN agent_costs a USING (agent_id) JOIN claude_session_costs c ON c.claude_session_id = s.claude_session_id",
    )
    assert rows
    for share, part, whole in rows:
        assert abs(share - part / whole) < Decimal("1e-12")
        assert 0 < share < 1


def test_reports_cache_savings_price_reads_as_plain_input(loaded: str) -> None:
    """cache_savings: cache reads × (input price − cache-read price); Sonnet 4.5 is 3.00 − 0.30 USD/Mtok."""
    ((reads, saved),) = query(
        loaded, "SELECT cache_read_tokens, cache_savings_usd FROM cache_savings WHERE model LIKE 'claude-sonnet-4-5%%'"
    )
    assert reads > 0
    assert Decimal(reads) * Decimal("2.70") / 1_000_000 == saved
    totals = build(loaded, "models", tz="UTC")["totals"]
    assert saved == totals["cache_savings_usd"]


def test_reports_session_title_comes_from_user_prompt_submit(loaded: str) -> None:
    """The latest UserPromptSubmit session_title names the session in session_title_costs and the report."""
    ((sid, first),) = query(
        loaded,
        "SELECT claude_session_id, min(occurred_at) FROM token_usage GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    with psycopg.connect(loaded) as conn:
        for i, title in enumerate(("first title", "fix the parser")):
            conn.execute(
                "INSERT INTO agent_logs (event_uid, host, claude_session_id, event_category, event_type,"
                " occurred_at, payload) VALUES (%s, 'h', %s, 'hook', 'UserPromptSubmit', %s, %s)",
                (f"t{i}", sid, first + timedelta(seconds=i), json.dumps({"session_title": title})),
            )
    assert [("fix the parser",)] == query(
        loaded, "SELECT title FROM session_title_costs WHERE claude_session_id = %s", sid
    )
    rows = build(loaded, "session", tz="UTC")["rows"]
    assert {"fix the parser"} == {r["title"] for r in rows if r["session"] == sid}


def test_reports_rollup_stays_equal_to_the_responses(loaded: str) -> None:
    """usage_hourly (via usage_rollup) equals usage_attribution grouped by hour after inserts,
    upserts that grow a response, a re-priced model and a new unpriced model; after a delete the
    sums still agree (first_at/last_at may stay wider: documented)."""
    savings = "SELECT sum(cache_savings_usd) FROM usage_rollup"
    assert [] == query(loaded, ROLLUP_VS_RESPONSES)
    ((before,),) = query(loaded, savings)
    with psycopg.connect(loaded) as conn:
        conn.execute("UPDATE token_usage SET output_tokens = output_tokens + 7 WHERE id % 2 = 0")
        conn.execute(
            "UPDATE prices SET input_usd_per_mtok = input_usd_per_mtok + 1"
            " WHERE model_prefix LIKE 'claude-sonnet-4-5%'"
        )
        conn.execute(
            "INSERT INTO token_usage (message_id, request_id, model, input_tokens, occurred_at)"
            " VALUES ('x1', 'r', 'claude-unknown-9', 10, now()), ('x2', 'r', NULL, 5, NULL)"
        )
    assert [] == query(loaded, ROLLUP_VS_RESPONSES)
    ((after,),) = query(loaded, savings)
    assert after > before  # the dearer input price raised the savings, in the rollup too
    with psycopg.connect(loaded) as conn:
        conn.execute("DELETE FROM token_usage WHERE id = (SELECT max(id) FROM token_usage WHERE cost_usd > 0)")
    sums_only = ROLLUP_VS_RESPONSES.replace(", min(first_at), max(last_at)", "").replace(
        ", min(occurred_at), max(occurred_at)", ""
    )
    assert [] == query(loaded, sums_only)


def test_reports_host_filter_keeps_that_hosts_usage(loaded: str) -> None:
    """--host keeps only responses read on that host, in the rollup and per-response paths alike."""
    ((n,),) = query(loaded, "SELECT count(*) FROM token_usage WHERE host = 'test-host'")
    assert n > 0
    for zone in ("UTC", HALF_HOUR):
        assert n == build(loaded, "daily", tz=zone, host="test-host")["totals"]["responses"]
        assert [] == build(loaded, "models", tz=zone, host="elsewhere")["rows"]
