"""Benchmark the embedded cluster's lifecycle: init, start, stop (real PostgreSQL processes).

Run from the repository root:

    .venv/bin/python tests/bench/bench_cluster.py [--runs N] [--state-root DIR]

Each run uses a fresh state directory and goes through
``ensure_started`` (initdb + first start + CREATE DATABASE), ``ensure_started`` again (reuse),
``stop``, ``ensure_started`` (start of an existing cluster) and ``stop``. Phase durations come
from the module's own structlog events (``duration_ms``), so they measure exactly what the
daemon logs; ``*_wall`` rows are the wall-clock time of the public call around them.

Prints a table and then one JSON line (medians in ms) for machines.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.cluster import EmbeddedCluster, find_binaries

PHASES = (
    "init",  # initdb
    "first_start",  # pg_ctl start right after initdb
    "create_db",  # CREATE DATABASE session_db
    "ensure_started_fresh_wall",  # the whole first ensure_started()
    "reuse_wall",  # ensure_started() while running
    "stop",  # pg_ctl stop -m fast
    "start",  # pg_ctl start of an existing cluster
    "ensure_started_existing_wall",
    "stop_wall",
)


def _timed(fn: Callable[[], object]) -> tuple[float, list[MutableMapping[str, Any]]]:
    with capture_logs() as events:
        start = time.monotonic()
        fn()
        elapsed = (time.monotonic() - start) * 1000
    return elapsed, events


def _duration(events: list[MutableMapping[str, Any]], name: str) -> float:
    return float(next(e["duration_ms"] for e in events if e["event"] == name))


def one_run(state_root: Path) -> dict[str, float]:
    state_dir = Path(tempfile.mkdtemp(prefix="sdb-bench-", dir=state_root))
    cluster = EmbeddedCluster(state_dir, find_binaries())
    try:
        wall, events = _timed(cluster.ensure_started)
        row = {
            "init": _duration(events, "cluster_initialised"),
            "first_start": _duration(events, "cluster_started"),
            "create_db": _duration(events, "cluster_database_created"),
            "ensure_started_fresh_wall": wall,
        }
        row["reuse_wall"], _ = _timed(cluster.ensure_started)
        _, events = _timed(cluster.stop)
        row["stop"] = _duration(events, "cluster_stopped")
        row["ensure_started_existing_wall"], events = _timed(cluster.ensure_started)
        row["start"] = _duration(events, "cluster_started")
        row["stop_wall"], _ = _timed(cluster.stop)
        return row
    finally:
        cluster.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        if not cluster.socket_dir.is_relative_to(state_dir):
            shutil.rmtree(cluster.socket_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--state-root", type=Path, default=Path("/tmp"), help="where state dirs are made"
    )
    args = parser.parse_args(argv)

    binaries = find_binaries()
    rows = [one_run(args.state_root) for _ in range(args.runs)]

    print(f"embedded cluster: PostgreSQL {binaries.major} from {binaries.bindir}, {args.runs} runs")
    print(f"{'phase':<30} {'median_ms':>10} {'min_ms':>10} {'max_ms':>10}")
    summary: dict[str, float] = {}
    for phase in PHASES:
        values = [row[phase] for row in rows]
        summary[phase] = round(statistics.median(values), 1)
        print(f"{phase:<30} {summary[phase]:>10.1f} {min(values):>10.1f} {max(values):>10.1f}")
    print(
        json.dumps(
            {
                "bench": "cluster",
                "pg_major": binaries.major,
                "runs": args.runs,
                "init_ms": summary["init"],
                "start_ms": summary["start"],
                "stop_ms": summary["stop"],
                "median_ms": summary,
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
