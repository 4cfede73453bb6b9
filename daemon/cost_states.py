"""Claude Code's own cost figures on transcript lines: `cost-state` lines (running session
totals, per model `costUSD`) and `compact_boundary` system lines (a compaction call, whose usage
only cost-state counts).

The latest state of a session is the one with the largest (totalDuration, totalCostUSD): both
only grow within a session, across resumes too, so the choice does not depend on the order files
or chunks are read in, and a re-read changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.line_fields import nonempty_str, positive_int


@dataclass(slots=True)
class ModelCost:
    """One model's entry in a cost-state line's modelUsage."""

    input_tokens: int
    output_tokens: int
    thinking_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    web_search_requests: int
    cost_usd: Decimal | None


@dataclass(slots=True)
class CostState:
    """Claude Code's running totals for a session (a `cost-state` line), or only the news that
    the session was compacted (`compact_boundary`: total_cost_usd None)."""

    claude_session_id: str
    transcript_path: str
    total_cost_usd: Decimal | None = None
    total_api_duration_ms: Decimal | None = None
    total_api_duration_without_retries_ms: Decimal | None = None
    total_tool_duration_ms: Decimal | None = None
    total_duration_ms: Decimal | None = None
    lines_added: int | None = None
    lines_removed: int | None = None
    started_at: datetime | None = None
    has_unknown_model_cost: bool | None = None
    models: dict[str, ModelCost] = field(default_factory=dict)
    compacted: bool = False

    @property
    def rank(self) -> tuple[Decimal, Decimal]:
        """What "latest" means (module docstring): larger is later."""
        return (self.total_duration_ms or Decimal(-1), self.total_cost_usd or Decimal(-1))

    def merge(self, other: CostState) -> None:
        """Keep the later state of the two; a compaction seen in either stays seen."""
        compacted = self.compacted or other.compacted
        if other.total_cost_usd is not None and other.rank >= self.rank:
            for f in fields(CostState):
                setattr(self, f.name, getattr(other, f.name))
        self.compacted = compacted


def _decimal(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal (a float by its shortest repr: 0.0893169 stays that)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def cost_state_from_line(entry: dict[str, Any], path: str) -> CostState | None:
    """A `cost-state` line's totals, a `compact_boundary` line as a compaction, else None."""
    sid = nonempty_str(entry.get("sessionId"))
    if sid is None:
        return None
    kind = entry.get("type")
    if kind == "system" and entry.get("subtype") == "compact_boundary":
        return CostState(sid, path, compacted=True)
    if kind != "cost-state":
        return None
    models: dict[str, ModelCost] = {}
    raw = entry.get("modelUsage")
    for model, u in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(u, dict) or not isinstance(model, str):
            continue
        models[model] = ModelCost(
            input_tokens=positive_int(u.get("inputTokens")),
            output_tokens=positive_int(u.get("outputTokens")),
            thinking_tokens=positive_int(u.get("thinkingTokens")),
            cache_read_tokens=positive_int(u.get("cacheReadInputTokens")),
            cache_write_tokens=positive_int(u.get("cacheCreationInputTokens")),
            cache_write_5m_tokens=positive_int(u.get("cacheCreationEphemeral5mInputTokens")),
            cache_write_1h_tokens=positive_int(u.get("cacheCreationEphemeral1hInputTokens")),
            web_search_requests=positive_int(u.get("webSearchRequests")),
            cost_usd=_decimal(u.get("costUSD")),
        )
    start = _decimal(entry.get("startTime"))
    lines_added, lines_removed = entry.get("totalLinesAdded"), entry.get("totalLinesRemoved")
    return CostState(
        claude_session_id=sid,
        transcript_path=path,
        total_cost_usd=_decimal(entry.get("totalCostUSD")) or Decimal(0),
        total_api_duration_ms=_decimal(entry.get("totalAPIDuration")),
        total_api_duration_without_retries_ms=_decimal(entry.get("totalAPIDurationWithoutRetries")),
        total_tool_duration_ms=_decimal(entry.get("totalToolDuration")),
        total_duration_ms=_decimal(entry.get("totalDuration")),
        lines_added=lines_added if isinstance(lines_added, int) else None,
        lines_removed=lines_removed if isinstance(lines_removed, int) else None,
        started_at=datetime.fromtimestamp(float(start) / 1000, UTC) if start is not None else None,
        has_unknown_model_cost=bool(entry.get("hasUnknownModelCost")),
        models=models,
    )
