"""Reconnect backoff: full jitter within a doubling, capped ceiling; held whatever wakes the loop."""

from __future__ import annotations

import pytest

from daemon.backoff import Backoff
from daemon.worker import Service

DRAWS = 200  # delays drawn per failure count


def test_backoff_delays_stay_within_the_doubling_capped_ceiling() -> None:
    """The n-th failure in a row draws from [0, min(cap, base·2^n)]; never negative, never past
    the cap however many failures."""
    for n in range(1, 40):
        ceilings = set()
        for _ in range(DRAWS):
            b = Backoff(base_s=0.5, cap_s=60.0)
            b.failures = n - 1
            ceilings.add(b.ceiling_s())
            delay = b.next_delay()
            assert 0.0 <= delay <= min(60.0, 0.5 * 2**n)
            assert n == b.failures
        assert {min(60.0, 0.5 * 2**n)} == ceilings


def test_backoff_reset_returns_to_the_first_ceiling() -> None:
    """After a success (reset) the next failure draws from the first, smallest range again."""
    b = Backoff(base_s=0.5, cap_s=60.0)
    for _ in range(10):
        b.next_delay()
    assert 60.0 == b.ceiling_s()
    b.reset()
    assert 0 == b.failures
    assert 1.0 == b.ceiling_s()


@pytest.fixture
def service(offline_service: Service) -> Service:
    return offline_service


def test_service_wait_with_hold_ignores_wakeups_until_the_delay_ends(service: Service) -> None:
    """During a backoff (hold) a new spool file or state change does not end the wait early:
    the wait runs to its deadline (returns False) and the wake-ups are consumed."""
    for _ in range(50):
        service.wake(False)
    assert service._wait(0.3, hold=True) is False
    assert service._wait(0, hold=False) is False  # nothing left pending


def test_service_wait_without_hold_returns_on_a_wakeup(service: Service) -> None:
    """Outside a backoff a wake-up ends the wait at once (returns True)."""
    service.wake(True)
    assert service._wait(60, hold=False) is True


def test_service_wait_with_hold_still_ends_on_stop(service: Service) -> None:
    """A stop request ends even a held wait."""
    service.request_stop()
    assert service._wait(60, hold=True) is True
