"""The soak script's short variant (docs/design/spool.md §7 row 25), run as CI runs it: a subprocess.

60 s of 8 writers, kill -9 of the daemon every 8–15 s and a PostgreSQL restart every 25 s; the
script checks the §5 oracle (docs/design/spool.md) itself and reports it in its last stdout line (one JSON object).
The long soak is `tests/chaos/soak.py` with its defaults (600 s), run by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a soak: minutes of load

SOAK = Path(__file__).resolve().parent / "soak.py"
SHORT = ["--duration-s", "60", "--kill-every-s", "8:15", "--pg-restart-every-s", "25"]


@pytest.mark.timeout(240)
def test_soak_short_oracle_holds() -> None:
    """Kills and database restarts under load lose nothing, double nothing, and drain fully."""
    proc = subprocess.Popen(
        [sys.executable, str(SOAK), *SHORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its writers and daemon can be killed as a group
    )
    try:
        stdout, stderr = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        proc.terminate()  # soak.py cleans up on SIGTERM: writers, daemon, cluster
        try:
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert lines, (
        f"no JSON summary; exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    report = json.loads(lines[-1])
    summary = {k: v for k, v in report.items() if k != "details"}
    assert 0 == done.returncode, (
        f"soak failed: {summary}\n{report.get('details')}\n{done.stderr[-3000:]}"
    )
    assert report["ok"] is True
    assert report["oracle_ok"] is True
    assert all(report["oracle"].values()), report["oracle"]
    assert all(report["checks"].values()), report["checks"]
    assert report["accepted"] > 0
    assert report["accepted"] == report["rows"] + report["quarantined"]
    assert 0 == report["duplicate_rows"]
    assert 0 == report["pending_new"]
    assert report["daemon_kills"] >= 3  # 60 s at one kill per 8–15 s
    assert report["pg_restarts"] >= 2  # 60 s at one restart per 25 s
    assert 0 == report["daemon_final_exit"]
