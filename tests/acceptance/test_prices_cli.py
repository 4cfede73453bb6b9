"""`session-db prices set/export/import` through the real command: no tracebacks, upserts by
(model_prefix, effective_from), a table that moves between two databases unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Env, cli
from tests.conftest import fresh_database

EX_USAGE = 64
EX_DATAERR = 65
PRICE_ROWS = (
    "SELECT model_prefix, effective_from::text, input_usd_per_mtok, output_usd_per_mtok,"
    " cache_write_5m_usd_per_mtok, cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok,"
    " long_context_threshold_tokens, long_context_input_multiplier, long_context_output_multiplier,"
    " fast_multiplier, data_residency_multiplier, web_search_usd_per_1k, note"
    " FROM prices ORDER BY model_prefix, effective_from"
)


def prices(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(PRICE_ROWS).fetchall()


@pytest.fixture
def other_env(tmp_path: Path, postgresql_proc: Any) -> Iterator[Env]:
    """A second installation on its own database: the host a table is moved to."""
    with fresh_database(postgresql_proc, "o") as url:
        yield Env(tmp_path / "other", url)


def test_prices_set_same_effective_from_updates_the_row(env: Env) -> None:
    """A second `prices set` at the same --effective-from updates that row (no UniqueViolation):
    given fields change, the others keep the row's values, and an identical set changes nothing."""
    first = cli(
        env,
        "prices",
        "set",
        "claude-test-1",
        "--input", "1", "--output", "5", "--cache-write-5m", "1.25",
        "--cache-write-1h", "2", "--cache-read", "0.1",
        "--effective-from", "2027-01-01", "--note", "first",
    )  # fmt: skip
    assert (0, "claude-test-1: added") == (first.returncode, first.stderr.strip()), first.stderr
    second = cli(
        env, "prices", "set", "claude-test-1", "--output", "6", "--effective-from", "2027-01-01"
    )
    assert (0, "claude-test-1: updated") == (second.returncode, second.stderr.strip())
    third = cli(
        env,
        "prices",
        "set",
        "claude-test-1",
        "--output",
        "6.00",
        "--effective-from",
        "2027-01-01T00:00:00+00:00",
    )
    assert (0, "claude-test-1: unchanged") == (third.returncode, third.stderr.strip())
    rows = [r for r in prices(env.db_url) if r[0] == "claude-test-1"]
    assert [
        (
            "claude-test-1",
            "2027-01-01 00:00:00+00",
            Decimal(1),
            Decimal(6),
            Decimal("1.25"),
            Decimal(2),
            Decimal("0.1"),
            None,
            Decimal(1),
            Decimal(1),
            Decimal(1),
            Decimal(1),
            Decimal(10),
            "first",
        )
    ] == rows
    assert "claude-test-1" in third.stdout  # the table is listed after a set


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--input", "abc"], "--input"),
        (["--output", "-1"], "--output"),
        (["--cache-read", "NaN"], "--cache-read"),
        (["--cache-write-1h", "Infinity"], "--cache-write-1h"),
        (["--fast-multiplier", ""], "--fast-multiplier"),
        (["--long-context-threshold", "1.5"], "--long-context-threshold"),
        (["--input", "4", "--effective-from", "next tuesday"], "--effective-from"),
    ],
)
def test_prices_set_bad_value_is_a_usage_error(env: Env, args: list[str], flag: str) -> None:
    """A bad number or time exits 64 with one line naming the flag; no traceback, no row."""
    before = prices(env.db_url)
    done = cli(env, "prices", "set", "claude-sonnet-4-5", *args)
    assert EX_USAGE == done.returncode, done.stderr
    assert done.stderr.startswith(f"session-db: {flag}: "), done.stderr
    assert 1 == len(done.stderr.strip().splitlines()), done.stderr
    assert "Traceback" not in done.stderr
    assert before == prices(env.db_url)


def test_prices_export_is_stable_json_on_stdout(env: Env, tmp_path: Path) -> None:
    """`prices export` writes the documented JSON to stdout; a second export is byte-identical and
    equals the file `prices export FILE` writes; amounts are decimal strings."""
    first = cli(env, "prices", "export")
    second = cli(env, "prices", "export")
    target = tmp_path / "prices.json"
    to_file = cli(env, "prices", "export", str(target))
    assert (0, 0, 0) == (first.returncode, second.returncode, to_file.returncode), first.stderr
    assert first.stdout == second.stdout == target.read_text()
    doc = json.loads(first.stdout)
    assert ("session-db-prices", 1) == (doc["format"], doc["version"])
    rows = prices(env.db_url)
    assert [(r[0], r[1]) for r in rows] == [
        (e["model_prefix"], e["effective_from"].replace("T", " ").replace("+00:00", "+00"))
        for e in doc["prices"]
    ]
    [sonnet] = [e for e in doc["prices"] if e["model_prefix"] == "claude-sonnet-4-5"]
    assert {
        "model_prefix": "claude-sonnet-4-5",
        "effective_from": "-infinity",
        "input_usd_per_mtok": "3",
        "output_usd_per_mtok": "15",
        "cache_write_5m_usd_per_mtok": "3.75",
        "cache_write_1h_usd_per_mtok": "6",
        "cache_read_usd_per_mtok": "0.3",
        "long_context_threshold_tokens": 200000,
    } == {k: sonnet[k] for k in list(sonnet)[:8]}


def test_prices_import_moves_a_table_between_hosts(
    env: Env, other_env: Env, tmp_path: Path
) -> None:
    """Export on one host, import on another: the second table equals the first (added and
    updated counted); importing again changes nothing; rows only the target has are kept."""
    for args in (
        ["claude-sonnet-4-5", "--cache-read", "0.25", "--effective-from", "2026-11-01T12:30:00Z"],
        ["claude-sonnet-4-5", "--input", "3.5"],  # effective now: a new row
        ["claude-opus-5", "--output", "26", "--effective-from=-infinity", "--note", "fixed"],
    ):
        done = cli(env, "prices", "set", *args)
        assert 0 == done.returncode, done.stderr
    local = cli(
        other_env,
        "prices",
        "set",
        "claude-local-only",
        "--input", "1", "--output", "2", "--cache-write-5m", "1", "--cache-write-1h", "1",
        "--cache-read", "0.1", "--effective-from", "2027-02-02",
    )  # fmt: skip
    assert 0 == local.returncode, local.stderr
    exported = tmp_path / "prices.json"
    assert 0 == cli(env, "prices", "export", str(exported)).returncode

    dry = cli(other_env, "prices", "import", "--dry-run", str(exported))
    before = prices(other_env.db_url)
    done = cli(other_env, "prices", "import", str(exported))
    again = cli(other_env, "prices", "import", str(exported))

    assert (0, 0, 0) == (dry.returncode, done.returncode, again.returncode), done.stderr
    source = prices(env.db_url)
    assert len(source) > 15
    assert dry.stdout.replace("would import", "imported") == done.stdout
    assert done.stdout.startswith(
        f"imported {exported}: 2 added, 1 updated, {len(source) - 3} unchanged"
    ), done.stdout
    assert "  updated  claude-opus-5  from -infinity" in done.stdout
    assert again.stdout.startswith(
        f"imported {exported}: 0 added, 0 updated, {len(source)} unchanged"
    )
    assert source == [r for r in prices(other_env.db_url) if r[0] != "claude-local-only"]
    assert 1 == sum(r[0] == "claude-local-only" for r in prices(other_env.db_url))
    assert len(before) == len(source) - 2 + 1  # the dry run wrote nothing


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["prices"][1].update(input_usd_per_mtok="abc"), "prices[1]"),
        (lambda d: d["prices"][2].update(output_usd_per_mtok="-2"), "prices[2]"),
        (lambda d: d["prices"][0].pop("cache_read_usd_per_mtok"), "prices[0]"),
        (lambda d: d["prices"][3].update(speed_tier="fast"), "speed_tier"),
        (lambda d: d["prices"].append(dict(d["prices"][0])), "appears twice"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(format="other"), "not a price export"),
    ],
)
def test_prices_import_bad_file_imports_nothing(
    env: Env, tmp_path: Path, change: Any, named: str
) -> None:
    """A bad entry anywhere in the file exits 65 naming it, and no row of the file is written."""
    exported = cli(env, "prices", "export")
    doc = json.loads(exported.stdout)
    for entry in doc["prices"]:
        entry["web_search_usd_per_1k"] = "11"  # every row would change on import
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    before = prices(env.db_url)
    done = cli(env, "prices", "import", str(path))
    assert EX_DATAERR == done.returncode, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert before == prices(env.db_url)


def test_prices_import_missing_file_is_a_data_error(env: Env, tmp_path: Path) -> None:
    """A file that does not exist or is not JSON exits 65 with its name, no traceback."""
    missing = cli(env, "prices", "import", str(tmp_path / "nope.json"))
    (tmp_path / "junk.json").write_text("{not json")
    junk = cli(env, "prices", "import", str(tmp_path / "junk.json"))
    assert (EX_DATAERR, EX_DATAERR) == (missing.returncode, junk.returncode)
    assert "nope.json" in missing.stderr
    assert "junk.json" in junk.stderr
    assert "Traceback" not in missing.stderr + junk.stderr
