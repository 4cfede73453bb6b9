"""daemon.cost_states: cost-state and compact_boundary lines, read in the usage pass."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson

from daemon.cost_states import CostState, cost_state_from_line
from daemon.transcript_lines import parse_lines

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "tests/fixtures/claude-code-2.1.330/transcripts/compact/05e00ce7-caef-4c5c-93ef-fa0df076b5b2.jsonl"
)


def state_line(duration: int, cost: float, sid: str = "s1") -> dict[str, object]:
    return {
        "type": "cost-state", "sessionId": sid, "totalCostUSD": cost, "totalAPIDuration": 12.5,
        "totalAPIDurationWithoutRetries": 10, "totalToolDuration": 7, "totalLinesAdded": 4,
        "totalLinesRemoved": 1, "totalDuration": duration, "startTime": 1795430352200,
        "modelUsage": {"claude-opus-5": {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokens": 1,
                                         "cacheCreationEphemeral1hInputTokens": 9, "costUSD": cost}},
        "hasUnknownModelCost": True,
    }  # fmt: skip


def test_cost_state_line_fields_are_exact() -> None:
    """Every field is kept; dollar figures are exact decimals of the JSON text; startTime is UTC."""
    st = cost_state_from_line(state_line(100, 0.1088352), "p")
    assert st is not None
    assert (Decimal("0.1088352"), Decimal("12.5"), Decimal(10), Decimal(7), Decimal(100), 4, 1, True) == (
        st.total_cost_usd, st.total_api_duration_ms, st.total_api_duration_without_retries_ms,
        st.total_tool_duration_ms, st.total_duration_ms, st.lines_added, st.lines_removed,
        st.has_unknown_model_cost,
    )  # fmt: skip
    assert datetime(2026, 11, 23, 10, 39, 12, 200000, tzinfo=UTC) == st.started_at
    m = st.models["claude-opus-5"]
    assert (3, 2, 1, 9, Decimal("0.1088352")) == (
        m.input_tokens, m.output_tokens, m.cache_read_tokens, m.cache_write_1h_tokens, m.cost_usd
    )  # fmt: skip
    assert cost_state_from_line({"type": "assistant", "sessionId": "s1"}, "p") is None


def test_cost_state_latest_is_the_largest_duration_in_any_order() -> None:
    """Of several states of a session the one with the largest (totalDuration, totalCostUSD) is
    kept whatever order the lines come in; a compaction anywhere is remembered."""
    lines = [state_line(100, 0.5), {"type": "system", "subtype": "compact_boundary", "sessionId": "s1"},
             state_line(300, 0.9), state_line(200, 0.7), state_line(50, 0.1, sid="s2")]  # fmt: skip
    for order in (lines, list(reversed(lines))):
        data = b"".join(orjson.dumps(x) + b"\n" for x in order)
        states: dict[str, CostState] = {}
        assert ({}, None, 0) == parse_lines(data, len(data), None, "p", states)
        assert (Decimal(300), Decimal("0.9"), True) == (
            states["s1"].total_duration_ms,
            states["s1"].total_cost_usd,
            states["s1"].compacted,
        )
        assert (Decimal(50), False) == (states["s2"].total_duration_ms, states["s2"].compacted)


def test_cost_state_fixture_compact_transcript() -> None:
    """The compact fixture: the last of its two cost-state lines (the compaction included) wins."""
    data = FIXTURE.read_bytes()
    states: dict[str, CostState] = {}
    parse_lines(data, len(data), None, str(FIXTURE), states)
    (st,) = states.values()
    assert (Decimal("0.1088352"), Decimal(1963), True) == (
        st.total_cost_usd,
        st.total_duration_ms,
        st.compacted,
    )
