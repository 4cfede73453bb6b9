"""Month arithmetic and names of agent_logs partitions (UTC calendar months)."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon import partitions


def test_partition_months_add_crosses_years_both_ways() -> None:
    """add_months steps over December/January and returns the first instant of the month, UTC."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert datetime(2027, 2, 1, tzinfo=UTC) == partitions.add_months(start, 3)
    assert datetime(2025, 11, 1, tzinfo=UTC) == partitions.add_months(start, -12)
    assert datetime(2026, 12, 1, tzinfo=UTC) == partitions.add_months(start, 1)


def test_partition_months_names_and_bounds_are_zero_padded_utc() -> None:
    """Names sort by time (zero-padded year and month); bounds are UTC whatever the session zone."""
    month = datetime(500, 6, 1, tzinfo=UTC)
    assert "agent_logs_0500_06" == partitions.partition_name(month)
    assert "0500-06-01 00:00:00+00" == partitions.bound_literal(month)


def test_partition_overlap_ignores_default_and_touching_ranges() -> None:
    """A partition overlaps a month when their ranges share an instant; DEFAULT overlaps nothing."""
    nov = datetime(2026, 11, 1, tzinfo=UTC)
    dec = datetime(2026, 12, 1, tzinfo=UTC)
    jan = datetime(2027, 1, 1, tzinfo=UTC)
    part = partitions.Partition("agent_logs_2026_11", False, nov, dec)
    assert part.overlaps(nov, dec)
    assert not part.overlaps(dec, jan)
    assert not partitions.Partition("agent_logs_default", True, None, None).overlaps(nov, dec)
