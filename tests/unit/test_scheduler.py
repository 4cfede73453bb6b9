"""The worker loop's scheduler: named jobs run when due, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from daemon.scheduler import Scheduler
from daemon.worker import Service


def _recording(
    ran: list[tuple[str, float]], name: str, delay: float | None = None
) -> Callable[[float], float | None]:
    def action(now: float) -> float | None:
        ran.append((name, now))
        return delay

    return action


def test_scheduler_runs_every_job_at_the_first_pass_in_order() -> None:
    """A new job is due at once; a pass runs due jobs in the order they were added."""
    ran: list[tuple[str, float]] = []
    jobs = Scheduler()
    jobs.add("b", 10.0, _recording(ran, "b"))
    jobs.add("a", 60.0, _recording(ran, "a"))
    assert jobs.due(1000.0) == ["b", "a"]
    assert jobs.run_due(1000.0) == ["b", "a"]
    assert ran == [("b", 1000.0), ("a", 1000.0)]


def test_scheduler_runs_a_job_again_only_after_its_interval() -> None:
    """After running at t, a job with interval i is not due before t + i and is due at t + i."""
    ran: list[tuple[str, float]] = []
    jobs = Scheduler()
    jobs.add("scan", 10.0, _recording(ran, "scan"))
    jobs.add("budgets", 60.0, _recording(ran, "budgets"))
    jobs.run_due(0.0)
    assert jobs.run_due(9.999) == []
    assert jobs.run_due(10.0) == ["scan"]
    assert jobs.due(19.0) == []
    assert jobs.run_due(60.0) == ["scan", "budgets"]
    assert jobs.run_due(65.0) == []
    assert [n for n, _ in ran] == ["scan", "budgets", "scan", "scan", "budgets"]


def test_scheduler_action_delay_overrides_the_interval_once() -> None:
    """An action returning a delay sets its next run that far away; math.inf stops it."""
    delays = iter([5.0, math.inf])
    ran: list[float] = []

    def action(now: float) -> float:
        ran.append(now)
        return next(delays)

    jobs = Scheduler()
    jobs.add("partitions", 100.0, action)
    jobs.run_due(0.0)
    assert jobs.due(4.0) == []
    assert jobs.run_due(5.0) == ["partitions"]
    assert jobs.run_due(1e12) == []
    assert ran == [0.0, 5.0]


def test_scheduler_force_runs_forced_jobs_only() -> None:
    """A forced pass (`ingest --once`) runs every job marked forced, due or not, and no other."""
    ran: list[tuple[str, float]] = []
    jobs = Scheduler()
    jobs.add("heartbeat", 10.0, _recording(ran, "heartbeat"))
    jobs.add("price_drift", 300.0, _recording(ran, "price_drift"), forced=False)
    jobs.run_due(0.0)
    assert jobs.run_due(1.0, force=True) == ["heartbeat"]
    assert jobs.run_due(1.0) == []


def test_scheduler_request_makes_a_job_due_and_suspend_stops_it() -> None:
    """request() makes a job due at the next pass; suspend() keeps it from ever running again."""
    ran: list[tuple[str, float]] = []
    jobs = Scheduler()
    jobs.add("state_files", 10.0, _recording(ran, "state_files"))
    jobs.add("partitions", 10.0, _recording(ran, "partitions"), forced=False)
    jobs.run_due(0.0)
    jobs.request("state_files")
    jobs.suspend("partitions")
    assert jobs.run_due(1.0) == ["state_files"]
    assert jobs.run_due(1e12) == ["state_files"]


def test_scheduler_rejects_two_jobs_with_one_name() -> None:
    """Job names are unique: they are how request() and suspend() find a job."""
    jobs = Scheduler()
    jobs.add("x", 1.0, lambda _now: None)
    with pytest.raises(ValueError, match="already scheduled"):
        jobs.add("x", 2.0, lambda _now: None)


def test_worker_schedules_the_documented_jobs(offline_service: Service) -> None:
    """The daemon's pass runs these jobs in this order; partitions and price drift are not
    forced by `ingest --once` (as before the scheduler)."""
    service = offline_service
    assert list(service.jobs.jobs) == [
        "state_files",
        "heartbeat",
        "partitions",
        "transcripts",
        "budgets",
        "price_drift",
        "orphans",
    ]
    assert service.jobs.due(0.0, force=True) == list(service.jobs.jobs)
    unforced = [j.name for j in service.jobs.jobs.values() if not j.forced]
    assert unforced == ["partitions", "price_drift"]
