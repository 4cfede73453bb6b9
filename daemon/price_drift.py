"""Price drift: models in token_usage without a price, or priced unlike Claude Code prices them.

Claude Code writes its own running cost into every transcript (`cost-state` lines, stored in
cost_states / cost_state_models); the view cost_check lists each session × model where our cost
differs from it by more than 1e-6 USD. A model is drifting when it has unpriced responses or a
row in cost_check. `session-db prices check`, `doctor`, `status` and the daemon (a `price_drift`
warning once per model per run) all report the list made here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import psycopg
import structlog

from daemon import db

log = structlog.get_logger("session_db.price_drift")

CHECK_INTERVAL_S = 300.0  # how often the daemon looks for drift (the query scans cost_states)
SET_PRICE_HINT = (
    "session-db prices set {key} --input USD --output USD --cache-write-5m USD --cache-write-1h USD"
    " --cache-read USD --effective-from YYYY-MM-DD"
)


@dataclass(frozen=True)
class Drift:
    """One drifting model."""

    model: str | None
    price_key: str | None  # the key a new price row for this model should carry
    unpriced_responses: int
    sessions_differing: int
    max_difference_usd: Decimal | None
    reasons: list[str]

    @property
    def fix(self) -> str:
        if self.model is None:
            return "responses without a model cannot be priced (nothing to set)"
        if self.unpriced_responses == 0 and self.reasons and "unpriced" not in self.reasons:
            known = ", ".join(self.reasons)
            return f"known cause ({known}); if the price itself is wrong: " + SET_PRICE_HINT.format(
                key=self.price_key
            )
        return SET_PRICE_HINT.format(key=self.price_key)

    def describe(self) -> str:
        parts = []
        if self.unpriced_responses:
            parts.append(f"{self.unpriced_responses} responses have no price")
        if self.sessions_differing:
            parts.append(
                f"differs from Claude Code's own cost in {self.sessions_differing} sessions"
                f" (up to {self.max_difference_usd} USD)"
            )
        return f"model {self.model!r}: " + "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["max_difference_usd"] = (
            None if self.max_difference_usd is None else str(self.max_difference_usd)
        )
        out["fix"] = self.fix
        return out


def find(conn: psycopg.Connection[Any]) -> list[Drift]:
    """Every drifting model (db.SELECT_PRICE_DRIFT), in model order."""
    with db.transaction(conn) as cur:
        cur.execute(db.SELECT_PRICE_DRIFT)
        rows: list[Any] = cur.fetchall()
    return [
        Drift(
            model=r[0],
            price_key=r[1],
            unpriced_responses=int(r[2]),
            sessions_differing=int(r[3]),
            max_difference_usd=r[4],
            reasons=list(r[5]),
        )
        for r in rows
    ]


def render(drifts: list[Drift]) -> str:
    if not drifts:
        return "prices check: every model seen is priced and agrees with Claude Code's own cost\n"
    lines = [f"prices check: {len(drifts)} models drift"]
    for d in drifts:
        lines.append(f"  {d.describe()}")
        lines.append(f"    run: {d.fix}")
    return "\n".join(lines) + "\n"


class DriftWatch:
    """The daemon's watch: logs `price_drift` once per model per run (the worker's scheduler
    runs `check` every CHECK_INTERVAL_S)."""

    def __init__(self) -> None:
        self.reported: set[str | None] = set()

    def check(self, conn: psycopg.Connection[Any]) -> list[Drift]:
        """Look now; log and return the models not reported before."""
        new = [d for d in find(conn) if d.model not in self.reported]
        for d in new:
            self.reported.add(d.model)
            log.warning(
                "price_drift",
                model=d.model,
                unpriced_responses=d.unpriced_responses,
                sessions_differing=d.sessions_differing,
                max_difference_usd=None
                if d.max_difference_usd is None
                else str(d.max_difference_usd),
                reasons=d.reasons,
                fix=d.fix,
            )
        return new
