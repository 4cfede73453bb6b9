"""Named periodic jobs for the worker loop: each runs when its interval has passed.

The scheduler keeps no clock of its own: the caller passes `now` (time.monotonic() in the
daemon, a plain number in tests), so every rule here is tested without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# A job's action may return the delay until its next run (seconds), overriding its interval
# once: math.inf stops the job for this run; None keeps the interval.
Action = Callable[[float], float | None]


@dataclass
class Job:
    """One periodic job: `action(now)` every `interval_s` seconds, first at once."""

    name: str
    interval_s: float
    action: Action
    forced: bool = True  # also runs on a forced pass (`ingest --once`)
    next_at: float = -math.inf  # due at the first pass

    def due(self, now: float) -> bool:
        return now >= self.next_at


class Scheduler:
    """Jobs in the order they run within a pass."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, name: str, interval_s: float, action: Action, *, forced: bool = True) -> Job:
        if name in self.jobs:
            raise ValueError(f"job {name!r} is already scheduled")
        job = Job(name, interval_s, action, forced=forced)
        self.jobs[name] = job
        return job

    def due(self, now: float, *, force: bool = False) -> list[str]:
        """The names of the jobs a pass at `now` runs, in order."""
        return [j.name for j in self.jobs.values() if j.due(now) or (force and j.forced)]

    def run_due(self, now: float, *, force: bool = False) -> list[str]:
        """Run every due job (every forced one too with `force`); returns the names run."""
        ran = []
        for name in self.due(now, force=force):
            job = self.jobs[name]
            delay = job.action(now)
            job.next_at = now + (job.interval_s if delay is None else delay)
            ran.append(name)
        return ran

    def request(self, name: str) -> None:
        """Make a job due at the next pass (e.g. a state file changed)."""
        self.jobs[name].next_at = -math.inf

    def suspend(self, name: str) -> None:
        """Never run a job again in this run (e.g. a newer schema that another version maintains)."""
        self.jobs[name].next_at = math.inf
