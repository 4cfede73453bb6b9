"""Hook-to-row latency of an idle daemon: write one spool file, time until its row is visible.

Runs `session-db run` with a private embedded cluster in a temporary state directory, delivers
N events one at a time (spaced, so the daemon is idle each time) and prints p50/p95/p99 in ms,
then one JSON line. Not a test: it asserts nothing.

    .venv/bin/python tests/bench/bench_latency.py [--n 50] [--gap-ms 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench._common import summary_ms
from tests.support.spoolwriter import write_event

PAYLOAD = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "claude-code-2.1.330"
    / "hooks"
    / "PostToolUse.json"
).read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=50, help="events to time (default 50)")
    ap.add_argument(
        "--gap-ms", type=float, default=300.0, help="idle time between events (default 300)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdb-lat-", dir="/tmp") as tmp:
        state = Path(tmp) / "s"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SESSION_DB_")},
            "SESSION_DB_STATE_DIR": str(state),
            "SESSION_DB_LOG_FORMAT": "json",
            "XDG_CONFIG_HOME": str(Path(tmp) / "cfg"),
        }
        log = Path(tmp) / "daemon.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "daemon", "run"], env=env, stderr=sink)
        try:
            deadline = time.monotonic() + 60
            while b'"database_up"' not in log.read_bytes():
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit(f"daemon did not come up; log: {log.read_text()[-2000:]}")
                time.sleep(0.05)
            url = next(
                json.loads(line)["url"]
                for line in log.read_text().splitlines()
                if "embedded_cluster_ready" in line
            )
            spool = state / "spool"
            samples = []
            with psycopg.connect(url, autocommit=True) as conn:
                for _ in range(args.n):
                    time.sleep(args.gap_ms / 1000)
                    t0 = time.perf_counter()
                    uid = write_event(spool, PAYLOAD, event="PostToolUse")
                    while (
                        conn.execute(
                            "SELECT 1 FROM agent_logs WHERE event_uid = %s", (uid,)
                        ).fetchone()
                        is None
                    ):
                        time.sleep(0.002)
                    samples.append((time.perf_counter() - t0) * 1000)
        finally:
            proc.terminate()
            proc.wait(30)
    result = {"bench": "latency_idle", "n": args.n, **summary_ms(samples)}
    print(f"{'metric':<8} {'ms':>8}")
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        print(f"{key:<8} {result[key]:>8}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
