"""`prices set` values from the command line: checked in daemon.prices, never by argparse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from daemon import db, prices
from daemon.commands import prices as prices_command
from daemon.errors import EX_USAGE, UsageError


def test_price_flags_cover_every_price_column() -> None:
    """Every column of the prices table has exactly one `prices set` flag, and the five token
    prices have the flags the messages of daemon.prices name."""
    columns = [col for _, col in prices_command.PRICE_FLAGS]
    assert sorted(db.PRICE_COLUMNS) == sorted(columns)
    assert len(columns) == len(set(columns))
    flags = {col: flag for flag, col in prices_command.PRICE_FLAGS}
    assert [flags[c] for c in prices.REQUIRED_FOR_NEW_MODEL] == [
        prices.token_price_flag(c) for c in prices.REQUIRED_FOR_NEW_MODEL
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", Decimal(3)), ("0.30", Decimal("0.30")), (" 1e-1 ", Decimal("0.1")), ("0", Decimal(0))],
)
def test_parse_amount_accepts_finite_non_negative_numbers(text: str, expected: Decimal) -> None:
    """Plain, decimal and exponent notation (surrounding blanks ignored) give the exact Decimal."""
    assert expected == prices.parse_amount("--input", text)


@pytest.mark.parametrize(
    "text", ["abc", "", "-1", "-0.01", "NaN", "nan", "sNaN", "Infinity", "-inf", "1,5", "0x10"]
)
def test_parse_amount_refuses_with_a_usage_error_naming_the_flag(text: str) -> None:
    """Anything but a finite number >= 0 is a UsageError (exit 64) whose message starts with the flag."""
    with pytest.raises(UsageError) as caught:
        prices.parse_amount("--cache-read", text)
    assert EX_USAGE == caught.value.exit_code
    assert str(caught.value).startswith("--cache-read: ")


@pytest.mark.parametrize("text", ["1.5", "-1", "abc", "1e5"])
def test_parse_tokens_refuses_non_whole_numbers(text: str) -> None:
    """A token threshold is a whole number >= 0."""
    with pytest.raises(UsageError, match=r"^--long-context-threshold: "):
        prices.parse_tokens("--long-context-threshold", text)


def test_parse_time_defaults_to_utc_and_keeps_infinity() -> None:
    """A time without a zone is UTC, one with a zone keeps it, and '-infinity' passes through."""
    assert datetime(2026, 10, 7, tzinfo=UTC) == prices.parse_time("--effective-from", "2026-10-07")
    plus2 = timezone(timedelta(hours=2))
    assert datetime(2026, 10, 7, 2, tzinfo=plus2) == prices.parse_time(
        "--effective-from", "2026-10-07T02:00:00+02:00"
    )
    assert "-infinity" == prices.parse_time("--effective-from", "-infinity")
    with pytest.raises(UsageError, match=r"^--effective-from: "):
        prices.parse_time("--effective-from", "next tuesday")


def test_parse_values_leaves_unset_columns_none() -> None:
    """Only the flags given become values; the first bad one raises naming its flag."""
    values = prices.parse_values(
        {"input_usd_per_mtok": ("--input", "4"), "fast_multiplier": ("--fast-multiplier", None)}
    )
    assert {**dict.fromkeys(db.PRICE_COLUMNS), "input_usd_per_mtok": Decimal(4)} == values
    with pytest.raises(UsageError, match=r"^--output: "):
        prices.parse_values({"output_usd_per_mtok": ("--output", "-3")})
