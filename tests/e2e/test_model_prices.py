"""Every model of Claude Code 2.1.332's price catalog, priced by the real CLI and by session-db.

One `claude -p` session per catalog model (its first-party id, docs/design/claude-code.md §17) on
the newest pinned CLI, plus sessions for the catalog's special rules: a Haiku 5.5 request above
100k prompt tokens (the whole request at 5×) and fast-mode responses (`usage.speed = "fast"`).
For each session three figures must agree: the catalog price of the usage the fake API reported
(this file's own copy of §17), the CLI's `total_cost_usd`, and `claude_session_costs.cost_usd`;
and `cost_check` must have no row for the session.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, Lab
from tests.e2e.fake_api import Reply, Text, ToolUse, Usage, total
from tests.support.price_catalog import (
    CATALOG,
    FAST,
    HAIKU_55_LONG_FACTOR,
    HAIKU_55_LONG_PROMPT_TOKENS,
    TIERS,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TEST_TIMEOUT_S)]

TOLERANCE = Decimal("0.000001")
MTOK = 1_000_000
WEB_SEARCH_USD = Decimal("0.01")  # per search, every model (§17); the fake API reports none

# first-party id -> tier (§17 catalog, in its order)
CATALOG_TIERS: dict[str, str] = {first_party: tier for _, first_party, tier in CATALOG}


# `claude --model X` that sends its requests for another model: 2.1.332 asks for the retired
# Opus 4 and 4.1 as Opus 5.5, and prices the session as Opus 5.5 (measured: 0.0218304 USD, the
# Opus 5.5 price of the usage, not the 0.0893805 of Opus 4). The fake API answers with the model
# asked for, as the real one does, so these sessions check Opus 5.5; the Opus 4/4.1 rows
# (transcripts of older CLIs) cannot be reached through this CLI.
REQUESTED_AS = {
    "claude-opus-4-20250514": "claude-opus-5-5",
    "claude-opus-4-1-20250805": "claude-opus-5-5",
}


def catalog_cost(model: str, usage: Usage) -> Decimal:
    """What the §17 catalog says one response costs."""
    p_in, p_out, p_5m, p_1h, p_read = (Decimal(x) for x in TIERS[CATALOG_TIERS[model]])
    factor = Decimal(1)
    if usage.speed == "fast":
        fast_in, fast_out = (Decimal(x) for x in FAST[model])
        factor = fast_in / p_in
        assert fast_out / p_out == factor, f"{model}: fast input and output scale alike"
    if CATALOG_TIERS[model] == "haiku_55" and usage.prompt_tokens > HAIKU_55_LONG_PROMPT_TOKENS:
        factor *= HAIKU_55_LONG_FACTOR
    return (
        factor
        * (
            usage.input_tokens * p_in
            + usage.output_tokens * p_out
            + usage.cache_write_5m * p_5m
            + usage.cache_write_1h * p_1h
            + usage.cache_read * p_read
        )
        / MTOK
    )


@dataclass(frozen=True)
class Session:
    """One scripted `claude -p` session: the model and the usage of its two responses."""

    name: str
    model: str
    first: Usage
    second: Usage


def standard(n: int) -> tuple[Usage, Usage]:
    """Two responses with every token category, distinct per session."""
    return (
        Usage(
            input_tokens=1000 + n,
            cache_write_5m=2000 + n,
            cache_write_1h=300 + n,
            cache_read=4000 + n,
            output_tokens=50 + n,
        ),
        Usage(
            input_tokens=200 + n,
            cache_write_5m=100 + n,
            cache_write_1h=0,
            cache_read=6000 + n,
            output_tokens=20 + n,
        ),
    )


SESSIONS: list[Session] = [
    Session(f"model-{model}", model, *standard(i)) for i, model in enumerate(CATALOG_TIERS, start=1)
]
SESSIONS += [
    # 20,001 + 30,000 + 10,000 + 60,000 = 120,001 prompt tokens: above the 100k tier; the second
    # response (6,400) is below it.
    Session(
        "haiku-5-5-above-100k",
        "claude-haiku-5-5",
        Usage(20_001, 30_000, 10_000, 60_000, 700),
        Usage(100, 200, 0, 6_100, 30),
    ),
    # Exactly 100k is not above it.
    Session(
        "haiku-5-5-at-100k",
        "claude-haiku-5-5",
        Usage(10_000, 40_000, 0, 50_000, 300),
        Usage(100, 200, 0, 6_100, 30),
    ),
]
SESSIONS += [
    Session(
        f"fast-{model}",
        model,
        Usage(1500 + i, 800, 0, 3000, 90, speed="fast"),
        Usage(400, 100, 200, 5000 + i, 40, speed="fast"),
    )
    for i, model in enumerate(("claude-opus-4-6", "claude-opus-5-5", "claude-fable-5-2"))
]


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s.name)
def test_cost_equals_cli_total_for_every_catalog_model(newest_lab: Lab, session: Session) -> None:
    """For every catalog model (and the Haiku 5.5 long-prompt and fast-mode rules), the stored
    cost equals the CLI's total_cost_usd within 1e-6, both equal the catalog price of the usage
    the API reported, and cost_check has nothing to say about the session."""
    lab = newest_lab
    p = lab.project(session.name)
    lab.api.script(
        session.name,
        {
            "main": [
                Reply(
                    (
                        Text(f"Checking {session.model}."),
                        ToolUse(
                            "toolu_e2e_price_echo",
                            "Bash",
                            {"command": "echo priced", "description": "Run echo"},
                        ),
                    ),
                    session.first,
                ),
                Reply((Text("Priced."),), session.second),
            ]
        },
    )
    run = lab.run(p, session.name, f"E2E-PRICE: {session.name}", model=session.model)
    assert (0, False) == (run.returncode, run.result["is_error"]), run.stderr
    lab.settle(p, run.session_id)

    records = lab.api.records(session.name)
    requested = REQUESTED_AS.get(session.model, session.model)
    assert [("main", requested)] * 2 == [(r.role, r.model) for r in records]
    assert [] == [r for r in lab.api.records() if r.role in ("egress", "other") or r.unscripted]

    catalog = catalog_cost(requested, session.first) + catalog_cost(requested, session.second)
    cli = Decimal(str(run.result["total_cost_usd"]))
    [(ours, cli_stored, responses, input_tokens, output_tokens)] = lab.query(
        "SELECT cost_usd, cli_cost_usd, responses, input_tokens, output_tokens"
        " FROM claude_session_costs WHERE claude_session_id = %s",
        run.session_id,
    )
    told = total([session.first, session.second])
    sys.stdout.write(
        f"e2e-price {session.name} model={session.model} requested={requested} cli={cli} ours={ours} "
        f"catalog={catalog} cli_cost_state={cli_stored} "
        f"diff={None if ours is None else Decimal(ours) - cli}\n"
    )
    assert (2, told.input_tokens, told.output_tokens) == (responses, input_tokens, output_tokens)
    assert abs(catalog - cli) < TOLERANCE, ("the CLI prices by the §17 catalog", catalog, cli)
    assert ours is not None, f"{session.model} is unpriced (CLI: {cli})"
    assert abs(Decimal(ours) - cli) < TOLERANCE, (session.model, "ours", ours, "cli", cli)
    # cost_check compares with the CLI's own cost-state figures: they must have been read.
    assert cli_stored is not None, "no cost-state line read for the session"
    assert abs(Decimal(cli_stored) - cli) < TOLERANCE, ("cost-state total", cli_stored, cli)
    assert [] == lab.query("SELECT * FROM cost_check WHERE claude_session_id = %s", run.session_id)
