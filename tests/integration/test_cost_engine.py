"""The cost engine over real PostgreSQL: prices matched by model identity, the Claude Code
2.1.332 catalog priced to the CLI's formula, write-time costs re-priced on `prices set`, the
hourly rollup, cost-state lines stored and compared in cost_check, price drift."""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from structlog.testing import capture_logs

from daemon import price_drift, prices
from daemon.sink import PostgresSink
from daemon.transcripts import TranscriptReader
from tests.conftest import FIXTURES
from tests.integration.conftest import read_transcripts
from tests.support.price_catalog import CATALOG, FAST, TIERS

TRANSCRIPTS = FIXTURES / "transcripts"
TOLERANCE = Decimal("0.000001")
MTOK = Decimal(1_000_000)

NOW = datetime(2026, 12, 1, tzinfo=UTC)  # after the Sonnet 5.5 change
TOKENS = {"input": 1234, "output": 567, "w5": 2000, "w1": 3000, "read": 45678, "search": 2}


def provider_ids(first_party: str) -> list[str]:
    """The ids Claude Code sends through Bedrock (any region) and Vertex for a first-party id."""
    base = first_party
    vertex = (
        base[:-9] + "@" + base[-8:]
        if base[-9:-8] == "-" and base[-8:].isdigit()
        else base + "@20250101"
    )
    return [
        f"us.anthropic.{base}-v1:0",
        f"us.anthropic.{base}",
        f"eu.anthropic.{base}-v1:0",
        f"apac.anthropic.{base}-v1:0",
        f"global.anthropic.{base}-v1:0",
        f"anthropic.{base}-v1:0",
        vertex,
        base + "[1m]",
    ]


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def cli_cost(
    tier: str, *, fast: tuple[str, str] | None = None, t: dict[str, int] = TOKENS
) -> Decimal:
    """What Claude Code charges (§17): tokens × tier price, fast mode scaling every category by
    its input ratio, web searches at $0.01."""
    inp, out, w5, w1, rd = (Decimal(x) for x in TIERS[tier])
    scale = Decimal(1) if fast is None else Decimal(fast[0]) / inp
    tokens = (
        t["input"] * inp + t["output"] * out + t["w5"] * w5 + t["w1"] * w1 + t["read"] * rd
    ) / MTOK
    return tokens * scale + t["search"] * Decimal("0.01")


_ids = itertools.count()


def insert_usage(url: str, model: str, *, at: datetime = NOW, speed: str | None = None,
                 t: dict[str, int] = TOKENS, session: str = "s-engine") -> Decimal | None:  # fmt: skip
    """One response as the daemon stores it; returns the cost the database gave it."""
    n = next(_ids)
    rows = query(
        url,
        "INSERT INTO token_usage (message_id, request_id, claude_session_id, model, input_tokens,"
        " output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens,"
        " web_search_requests, speed, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING cost_usd",
        f"msg_{n}", f"req_{n}", session, model, t["input"], t["output"], t["w5"], t["w1"], t["read"],
        t["search"], speed, at,
    )  # fmt: skip
    return rows[0][0]


def test_price_lookup_matches_every_catalog_and_provider_id(db_url: str) -> None:
    """Every catalog id, first-party id and provider form resolves to a price row of its own
    model (same tier prices); a longer model id never takes a shorter model's price."""
    checked = 0
    with psycopg.connect(db_url) as conn:
        for catalog_id, first_party, tier in CATALOG:
            want = tuple(Decimal(x) for x in TIERS[tier])
            for model in [catalog_id, first_party, *provider_ids(first_party)]:
                row = conn.execute(
                    "SELECT (p).input_usd_per_mtok, (p).output_usd_per_mtok,"
                    " (p).cache_write_5m_usd_per_mtok, (p).cache_write_1h_usd_per_mtok,"
                    " (p).cache_read_usd_per_mtok, (p).model_prefix FROM price_for(%s, %s) p",
                    (model, NOW),
                ).fetchone()
                assert row is not None
                assert want == tuple(row[:5]), (model, row)
                assert row[5] in (catalog_id, first_party.rsplit("-", 1)[0], first_party), (
                    model,
                    row,
                )
                checked += 1
        for model, must_not in [
            ("claude-opus-5-5", "claude-opus-5"),
            ("claude-fable-5-1", "claude-fable-5"),
            ("claude-mythos-5-2", "claude-mythos-5"),
            ("claude-sonnet-5-5", "claude-sonnet-5"),
            ("claude-opus-4-1-20250805", "claude-opus-4"),
        ]:
            (key,) = conn.execute(
                "SELECT (price_for(%s, %s)).model_prefix", (model, NOW)
            ).fetchone()  # type: ignore[misc]
            assert must_not != key, model
        for unknown in ["claude-opus-5-9", "claude-fable-6", "claude-opus-5x", "gpt-4"]:
            (key,) = conn.execute(
                "SELECT (price_for(%s, %s)).model_prefix", (unknown, NOW)
            ).fetchone()  # type: ignore[misc]
            assert key is None, unknown
    assert checked == len(CATALOG) * 10


@pytest.mark.parametrize(("catalog_id", "first_party", "tier"), CATALOG)
def test_price_catalog_model_costs_what_the_cli_charges(
    db_url: str, catalog_id: str, first_party: str, tier: str
) -> None:
    """A response of every catalog model costs what §17's formula gives (Decimal, to 1e-12)."""
    want = cli_cost(tier)
    got = insert_usage(db_url, first_party)
    assert got is not None
    assert abs(want - got) < Decimal("1e-12"), (first_party, want, got)
    bedrock = insert_usage(db_url, f"us.anthropic.{first_party}-v1:0")
    assert bedrock == got


@pytest.mark.parametrize("model", sorted(FAST))
def test_price_fast_mode_per_model(db_url: str, model: str) -> None:
    """speed=fast charges the model's fast prices (§17) on every category; others ignore it."""
    tier = next(t for _, fp, t in CATALOG if fp == model)
    got = insert_usage(db_url, model, speed="fast")
    assert got == cli_cost(tier, fast=FAST[model])
    assert insert_usage(db_url, "claude-sonnet-4-6", speed="fast") == cli_cost("tier_3_15")


def test_price_haiku_55_long_prompt_tier_boundary(db_url: str) -> None:
    """Haiku 5.5: at 100,000 prompt tokens the base tier, above it the whole request ×5."""
    at_limit = {"input": 40_000, "output": 1000, "w5": 10_000, "w1": 0, "read": 50_000, "search": 0}
    above = {**at_limit, "read": 50_001}
    assert insert_usage(db_url, "claude-haiku-5-5", t=at_limit) == cli_cost("haiku_55", t=at_limit)
    assert insert_usage(db_url, "claude-haiku-5-5", t=above) == cli_cost("haiku_55_long", t=above)


def test_price_sonnet_55_cache_read_changes_on_2026_10_07(db_url: str) -> None:
    """Sonnet 5.5's cache read is 0.20 before 2026-10-07 00:00 UTC and 0.10 from then on."""
    before = datetime(2026, 10, 6, 23, 59, 59, tzinfo=UTC)
    after = datetime(2026, 10, 7, tzinfo=UTC)
    t = {"input": 0, "output": 0, "w5": 0, "w1": 0, "read": 1_000_000, "search": 0}
    assert Decimal("0.2") == insert_usage(db_url, "claude-sonnet-5-5", at=before, t=t)
    assert Decimal("0.1") == insert_usage(db_url, "claude-sonnet-5-5", at=after, t=t)


def rollup_matches_rows(url: str) -> None:
    got = query(
        url,
        "SELECT day_utc, model, responses, input_tokens, cache_read_tokens, priced_cost_usd,"
        " unpriced_responses FROM daily_costs ORDER BY 1, 2",
    )
    want = query(
        url,
        "SELECT (occurred_at AT TIME ZONE 'UTC')::date, model, count(*), sum(input_tokens),"
        " sum(cache_read_tokens), coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE unpriced)"
        " FROM token_usage_costs GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert want == got


def test_price_set_reprices_history_and_the_rollup(db_url: str, sink: PostgresSink) -> None:
    """`prices set` for a key re-prices the stored responses of that model (and no other) from
    its date on; the hourly rollup behind daily_costs stays equal to the rows, through inserts,
    updates, deletes and re-pricing."""
    old = insert_usage(db_url, "claude-opus-5-5", at=datetime(2026, 11, 1, tzinfo=UTC))
    new = insert_usage(db_url, "claude-opus-5-5", at=datetime(2026, 11, 20, tzinfo=UTC))
    other = insert_usage(db_url, "claude-opus-5", at=datetime(2026, 11, 20, tzinfo=UTC))
    insert_usage(db_url, "claude-unknown-1", at=datetime(2026, 11, 20, tzinfo=UTC))
    rollup_matches_rows(db_url)
    prices.set_price(
        sink.connection(), "claude-opus-5-5", {"input_usd_per_mtok": Decimal(8)},
        datetime(2026, 11, 10, tzinfo=UTC), "test",
    )  # fmt: skip
    costs = dict(
        query(
            db_url,
            "SELECT occurred_at, cost_usd FROM token_usage WHERE model LIKE 'claude-opus-5%%'",
        )
    )
    assert old == costs[datetime(2026, 11, 1, tzinfo=UTC)]
    assert new is not None
    assert new + TOKENS["input"] * Decimal(4) / MTOK == query(
        db_url, "SELECT cost_usd FROM token_usage WHERE model = 'claude-opus-5-5' ORDER BY occurred_at DESC LIMIT 1"
    )[0][0]  # fmt: skip
    assert (
        other
        == query(db_url, "SELECT cost_usd FROM token_usage WHERE model = 'claude-opus-5'")[0][0]
    )
    rollup_matches_rows(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE token_usage SET occurred_at = occurred_at - interval '3 days', input_tokens = 1"
        )
        conn.execute("DELETE FROM token_usage WHERE model = 'claude-opus-5'")
        conn.execute("DELETE FROM prices WHERE model_prefix = 'claude-opus-5-5'")
    rollup_matches_rows(db_url)
    assert [(None,)] * 2 == query(
        db_url, "SELECT cost_usd FROM token_usage WHERE model = 'claude-opus-5-5'"
    )


@pytest.fixture
def reader(sink: PostgresSink) -> TranscriptReader:
    # The fixture copies live below the temporary directory, not a Claude projects/ folder.
    return TranscriptReader(sink, "test-host", allowed_roots=[Path(tempfile.gettempdir())])






SCENARIOS = {  # scenario → (session id, the CLI's total from the last cost-state line)
    "main": ("05e00ce7-caef-4c5c-93ef-fa0df076b5b2", Decimal("0.0893169")),
    "perm": ("d35abfa5-5a48-43db-adde-fb67d1ceab70", Decimal("0.0893169")),
    "extras": ("38b9ad1c-e901-49a9-ab9e-39bf1ad26c9c", Decimal("0.0752724")),
    "expand": ("7c5fa6d1-d3a0-4b97-b883-a6ced3c36ed0", Decimal("0.009768")),
    "model": ("4645e1f0-9b69-4e5d-a270-822b5c194f79", Decimal(0)),
    "error": ("120513a0-395a-41b8-be5c-14234bf83781", Decimal(0)),
    "tui": ("754e99ea-7fc4-4338-9331-feeacf5871ea", Decimal("0.10703715")),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_cost_state_stored_equals_our_cost_and_cost_check_is_empty(
    reader: TranscriptReader, copies: Path, db_url: str, scenario: str
) -> None:
    """The fixture's latest cost-state is stored; its total equals our cost; cost_check is empty."""
    read_transcripts(reader, copies / scenario)
    sid, total = SCENARIOS[scenario]
    rows = query(
        db_url,
        "SELECT s.total_cost_usd, c.cost_usd, c.cli_cost_usd FROM cost_states s"
        " LEFT JOIN claude_session_costs c USING (claude_session_id) WHERE s.claude_session_id = %s",
        sid,
    )
    assert 1 == len(rows)
    stored, ours, cli = rows[0]
    assert total == stored == cli
    assert abs(total - (ours or Decimal(0))) < TOLERANCE
    assert [] == query(db_url, "SELECT * FROM cost_check")


def test_cost_state_latest_wins_in_any_read_order(
    reader: TranscriptReader, copies: Path, db_url: str
) -> None:
    """The compacted (resumed) session's later state wins whether its file is read before or
    after the earlier copy of the same session, and reading again changes nothing; the
    difference it shows is the compaction call, with that reason."""
    read_transcripts(reader, copies / "compact")
    read_transcripts(reader, copies / "main")  # the same session's earlier state, in another file
    sid = SCENARIOS["main"][0]
    state = query(
        db_url,
        "SELECT total_cost_usd, total_duration_ms, lines_added, compacted FROM cost_states"
        " WHERE claude_session_id = %s",
        sid,
    )
    assert [(Decimal("0.1088352"), Decimal(1963), 3, True)] == state
    check = query(
        db_url, "SELECT model, cost_usd, cli_cost_usd, difference_usd, reason FROM cost_check"
    )
    assert [
        ("claude-sonnet-4-5-20250929", Decimal("0.0893169"), Decimal("0.1088352"), Decimal("-0.0195183"),
         "compaction call")
    ] == [(m, round(o, 10), c, round(d, 10), r) for m, o, c, d, r in check]  # fmt: skip
    timing = query(
        db_url,
        "SELECT lines_added, api_duration_ms, tool_duration_ms FROM agent_timings"
        " WHERE sdk_session_id = %s AND claude_agent_id IS NULL",
        sid,
    )
    assert [(3, Decimal(281), Decimal(392))] == timing


def test_cost_check_shows_planted_wrong_and_missing_prices(
    reader: TranscriptReader, copies: Path, db_url: str, sink: PostgresSink
) -> None:
    """A wrong price gives a cost_check row (no known reason) and price drift naming the model;
    a removed price gives reason 'unpriced'."""
    read_transcripts(reader, copies / "extras")
    sid, total = SCENARIOS["extras"]
    prices.set_price(sink.connection(), "claude-sonnet-4-5", {"input_usd_per_mtok": Decimal(4)},
                     datetime(2026, 1, 1, tzinfo=UTC), "planted")  # fmt: skip
    rows = query(
        db_url,
        "SELECT claude_session_id, model, cli_cost_usd, difference_usd, reason FROM cost_check",
    )
    assert [(sid, "claude-sonnet-4-5-20250929", total, Decimal("0.014728"), None)] == [
        (s, m, c, round(d, 10), r) for s, m, c, d, r in rows
    ]
    drifts = price_drift.find(sink.connection())
    assert ["claude-sonnet-4-5-20250929"] == [d.model for d in drifts]
    assert "session-db prices set claude-sonnet-4-5 " in drifts[0].fix
    with psycopg.connect(db_url) as conn:
        conn.execute("DELETE FROM prices WHERE model_prefix = 'claude-sonnet-4-5'")
    rows = query(db_url, "SELECT cost_usd, cli_cost_usd, reason FROM cost_check")
    assert [(None, total, "unpriced")] == rows
    (d,) = price_drift.find(sink.connection())
    assert (d.model, d.unpriced_responses, d.reasons) == (
        "claude-sonnet-4-5-20250929",
        7,
        ["unpriced"],
    )


def test_price_drift_logged_once_per_model(db_url: str, sink: PostgresSink) -> None:
    """The daemon's watch logs one price_drift warning per model, however often it checks."""
    insert_usage(db_url, "claude-future-1")
    watch = price_drift.DriftWatch()
    with capture_logs() as logs:
        watch.check(sink.connection())
        watch.check(sink.connection())
        insert_usage(db_url, "claude-future-2")
        watch.check(sink.connection())
    assert [("price_drift", "claude-future-1"), ("price_drift", "claude-future-2")] == [
        (e["event"], e["model"]) for e in logs
    ]


def test_session_title_and_unpriced_columns(db_url: str) -> None:
    """claude_session_costs.session_title is the latest UserPromptSubmit title of the session;
    session_costs and daily_costs count unpriced responses."""
    with psycopg.connect(db_url) as conn:
        for n, (title, at) in enumerate(
            [("first", "2026-11-01T10:00Z"), ("second", "2026-11-01T11:00Z")]
        ):
            conn.execute(
                "INSERT INTO agent_logs (event_uid, host, claude_session_id, event_category, event_type,"
                " occurred_at, payload) VALUES (%s, 'h', 's-title', 'hook', 'UserPromptSubmit', %s, %s)",
                (f"e{n}", at, orjson.dumps({"session_title": title}).decode()),
            )
    insert_usage(db_url, "claude-future-1", session="s-title")
    assert [("second", None, 1)] == query(
        db_url,
        "SELECT session_title, cost_usd, unpriced_responses FROM claude_session_costs"
        " WHERE claude_session_id = 's-title'",
    )
    assert [(1, None)] == query(
        db_url,
        "SELECT unpriced_responses, cost_usd FROM daily_costs WHERE model = 'claude-future-1'",
    )


def test_cost_check_reason_resumed(
    reader: TranscriptReader, copies: Path, db_url: str, sink: PostgresSink
) -> None:
    """A differing session that was resumed (SessionStart source 'resume') carries reason 'resumed'."""
    read_transcripts(reader, copies / "expand")
    sid, _ = SCENARIOS["expand"]
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO agent_logs (event_uid, host, claude_session_id, event_category, event_type,"
            " occurred_at, payload) VALUES ('r1', 'h', %s, 'hook', 'SessionStart', now(), %s)",
            (sid, orjson.dumps({"source": "resume"}).decode()),
        )
    assert [] == query(db_url, "SELECT * FROM cost_check")
    prices.set_price(sink.connection(), "claude-sonnet-4-5", {"output_usd_per_mtok": Decimal(16)},
                     datetime(2026, 1, 1, tzinfo=UTC), "planted")  # fmt: skip
    assert [(sid, "resumed")] == query(db_url, "SELECT claude_session_id, reason FROM cost_check")
