"""`session-db prices check`, `status` and `doctor` report price drift through the real commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from tests.acceptance.conftest import Env, cli
from tests.conftest import FIXTURES


def test_prices_check_exit_codes_json_and_advice(env: Env, tmp_path: Path) -> None:
    """Exit 0 when every model agrees with Claude Code; exit 1 with the model, the numbers and
    the command to run once a price is wrong; --json carries the same; status and doctor show it."""
    shutil.copytree(FIXTURES / "transcripts" / "extras", tmp_path / "extras")
    done = cli(env, "backfill", str(tmp_path / "extras"))
    assert 0 == done.returncode, done.stderr[-3000:]
    clean = cli(env, "prices", "check")
    assert (0, "") == (clean.returncode, clean.stderr), clean.stderr[-2000:]
    assert "every model seen is priced" in clean.stdout
    assert [] == json.loads(cli(env, "prices", "check", "--json").stdout)

    with psycopg.connect(env.db_url) as conn:
        conn.execute(
            "UPDATE prices SET output_usd_per_mtok = 16 WHERE model_prefix = 'claude-sonnet-4-5'"
        )
    drift = cli(env, "prices", "check")
    assert 1 == drift.returncode, drift.stderr[-2000:]
    assert "claude-sonnet-4-5-20250929" in drift.stdout
    assert "run: session-db prices set claude-sonnet-4-5 --input" in drift.stdout
    as_json = cli(env, "prices", "check", "--json")
    assert 1 == as_json.returncode
    (row,) = json.loads(as_json.stdout)
    assert ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 0, 1, "0.001498") == (
        row["model"], row["price_key"], row["unpriced_responses"], row["sessions_differing"],
        row["max_difference_usd"].rstrip("0"),
    )  # fmt: skip
    status = json.loads(cli(env, "status", "--json").stdout)
    assert ["claude-sonnet-4-5-20250929"] == [p["model"] for p in status["price_drift"]]
    doctor = cli(env, "doctor")
    assert "price drift: model 'claude-sonnet-4-5-20250929'" in doctor.stdout
