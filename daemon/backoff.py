"""Full-jitter exponential backoff, for database reconnects and watcher restarts."""

from __future__ import annotations

import random

from daemon.config import BACKOFF_BASE_S, BACKOFF_CAP_S

MAX_EXPONENT = 30  # 2**30 · base is far past any cap; bounds the float


class Backoff:
    """Delays drawn uniformly from [0, min(cap, base·2^n)] after the n-th failure in a row.

    The caller waits the whole delay whatever else happens (a new spool file, a state change):
    only a stop request ends the wait early (worker.Service._wait with hold=True).
    """

    def __init__(self, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def ceiling_s(self) -> float:
        """The largest delay the next failure can draw."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.failures + 1, MAX_EXPONENT))

    def next_delay(self) -> float:
        ceiling = self.ceiling_s()
        self.failures += 1
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.failures = 0
