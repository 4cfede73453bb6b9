"""Daemon memory while draining large payloads: K spool files of ~1 MB, then two of 50 MB.

Target (issue 7): daemon RSS <= 150 MB while draining 1 MB payloads. Prints numbers, asserts
no timing or size; exits 1 if the daemon crashed, a file was quarantined, a row is missing, or
the field cap did not truncate what it should have.

    .venv/bin/python tests/bench/bench_rss.py [--files 500] [--payload-mb 1] [--huge-mb 50]

Scenarios (each with a fresh `session-db run` process, default settings, so VmHWM is that
scenario's own peak; one private embedded cluster for all, given as SESSION_DB_URL):

* under_cap: payloads of --payload-mb MiB in three shapes, taken in turn: four big strings of
  250,000 bytes each (just under the default field cap, 256 KiB); 250 mid-size strings of
  4 KiB in a list; 200 nested levels holding a 5 KiB string each. Nothing is truncated.
* over_cap: the same sizes, every payload over the cap: one string of the whole size; 250
  mid-size strings plus one of 300 KiB; 200 nested levels with a 300 KiB string at the
  bottom. Every row is truncated (re-encoded) and its original hard-linked into originals/.
* huge: --huge-count payloads of --huge-mb MiB: one single string (truncated), then 4 KiB
  strings (stored whole: a --huge-mb row).

Nesting stays at 200 levels: the capped re-encoding fails above 255 (see the final report of
issue 7). Strings are half base64 of random bytes, half repeated `ls -l` text, so that the
database's compression has realistic work.

Per scenario the files are written first into a staging folder on the spool's filesystem;
the daemon is started and idles until its first pass (`database_up`); then the files are
renamed into new/ and the drain is timed until new/ is empty. VmRSS is sampled every
--sample-ms; VmHWM (the kernel's peak RSS) is read before the files arrive and at the end
(the peak shown is the larger of VmHWM and the highest sample).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench._common import (
    BenchError,
    CpuMeter,
    Daemon,
    TreeCpu,
    bench_env,
    database,
    emit_json,
    log_events,
    mib,
    postmaster_pid,
    print_table,
    status_field,
)
from tests.support.spoolwriter import encode, spool_name

MiB = 2**20
KiB = 1024
FIELD_CAP = 256 * KiB  # daemon/config.py FIELD_CAP_BYTES, the default
LS_LINE = "drwxr-xr-x 2 user user 4096 Nov 23 12:14 some-directory-name/and/a/file.py\n"


def text(n: int) -> str:
    """n bytes of text: half random base64, half repeated directory listing."""
    half = n // 2
    rnd = base64.b64encode(os.urandom(half * 3 // 4 + 3)).decode()[:half]
    rest = n - half
    return rnd + (LS_LINE * (rest // len(LS_LINE) + 1))[:rest]


def envelope(session: str, response: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": session,
        "cwd": "/tmp/bench/project",
        "permission_mode": "default",
        "hook_event_name": "PostToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": "/tmp/bench/project/big.txt"},
        "tool_response": response,
        "tool_use_id": "toolu_bench",
    }


def nested(levels: int, each: int, bottom: int) -> dict[str, Any]:
    node: dict[str, Any] = {"level": levels, "text": text(bottom)}
    for i in range(levels - 1, 0, -1):
        node = {"level": i, "text": text(each), "child": node}
    return node


def shape_big(size: int, under_cap: bool) -> dict[str, Any]:
    if under_cap:
        n = max(1, size // 250_000)
        return {f"part{i}": text(250_000) for i in range(n)}
    return {"stdout": text(size), "stderr": "", "interrupted": False}


def shape_many(size: int, under_cap: bool) -> dict[str, Any]:
    extra = 0 if under_cap else 300 * KiB
    n = max(1, (size - extra) // (4 * KiB + 60))
    files = [
        {"path": f"/tmp/bench/project/src/module_{i}.py", "content": text(4 * KiB)}
        for i in range(n)
    ]
    out: dict[str, Any] = {"files": files}
    if not under_cap:
        out["summary"] = text(300 * KiB)
    return out


def shape_nested(size: int, under_cap: bool) -> dict[str, Any]:
    levels = 200
    bottom = 5 * KiB if under_cap else 300 * KiB
    each = max(64, (size - bottom) // levels - 40)
    return {"tree": nested(levels, each, bottom)}


SHAPES: dict[str, Callable[[int, bool], dict[str, Any]]] = {
    "big": shape_big,
    "many": shape_many,
    "nested": shape_nested,
}


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append((time.monotonic(), status_field(self.pid, "VmRSS")))
            self.stopping.wait(self.interval_s)


def stage(folder: Path, payloads: list[bytes], host: str) -> list[str]:
    folder.mkdir(parents=True)
    names = []
    for body in payloads:
        now = time.time_ns()
        name = spool_name(host, now)
        (folder / name).write_bytes(encode(body, event="PostToolUse", received_ns=now, host=host))
        names.append(name)
    return names


def scenario_payloads(
    name: str, files: int, size: int, huge: int, huge_count: int
) -> tuple[list[bytes], int]:
    """(payloads, how many must come out truncated)."""
    if name == "huge":
        out = []
        for i in range(huge_count):
            shape = "big" if i % 2 == 0 else "many"
            out.append(
                orjson.dumps(envelope(f"rss-huge-{i}", SHAPES[shape](huge, shape == "many")))
            )
        return out, sum(1 for i in range(huge_count) if i % 2 == 0)
    under = name == "under_cap"
    kinds = list(SHAPES)
    payloads = [
        orjson.dumps(envelope(f"rss-{name}-{i // 50}", SHAPES[kinds[i % 3]](size, under)))
        for i in range(files)
    ]
    return payloads, 0 if under else files


def run_scenario(
    name: str, args: argparse.Namespace, url: str, tmp: Path, postmaster: int | None
) -> dict[str, Any]:
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    size = int(args.payload_mb * MiB)
    payloads, want_truncated = scenario_payloads(
        name, args.files, size, int(args.huge_mb * MiB), args.huge_count
    )
    state = tmp / name / "state"
    spool = state / "spool"
    staging = state / "staging"
    names = stage(staging, payloads, host)
    total_bytes = sum(len(p) for p in payloads)
    del payloads
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE agent_logs")

    daemon = Daemon(bench_env(state, SESSION_DB_URL=url), tmp / name / "daemon.log")
    daemon.start()
    try:
        time.sleep(0.5)
        rss_idle = status_field(daemon.pid, "VmRSS")
        hwm_idle = status_field(daemon.pid, "VmHWM")
        sampler = Sampler(daemon.pid, args.sample_ms / 1000)
        sampler.start()
        pg_cpu = TreeCpu(postmaster)
        pg_cpu.start()
        daemon_cpu = CpuMeter([daemon.pid])
        t0 = time.monotonic()
        for n in names:
            os.rename(staging / n, spool / "new" / n)
        deadline = t0 + args.timeout_s
        while os.listdir(spool / "new"):
            if not daemon.alive():
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: not drained after {args.timeout_s:g} s")
            time.sleep(0.01)
        drain_s = time.monotonic() - t0
        daemon_cpu_s, pg_cpu_s = daemon_cpu.seconds(), pg_cpu.stop()
        time.sleep(1.0)
        sampler.stopping.set()
        sampler.join()
        crashed = not daemon.alive()
        hwm = status_field(daemon.pid, "VmHWM")
        rss_after = status_field(daemon.pid, "VmRSS")
    finally:
        rc = daemon.stop()
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(daemon.log, args.keep_logs / f"rss-{name}.log")
    with psycopg.connect(url) as conn:
        rows, truncated = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE 'truncated' = ANY(transforms)) FROM agent_logs"
        ).fetchone()  # type: ignore[misc]
    quarantined = len(
        [n for n in os.listdir(spool / "quarantine") if not n.endswith(".reason.json")]
    )
    originals = len(os.listdir(spool / "originals"))
    during = [r for t, r in sampler.samples if t0 <= t <= t0 + drain_s]
    batches = [e for e in log_events(daemon.log) if e.get("event") == "batch_committed"]
    problems = []
    if crashed or rc != 0:
        problems.append(
            f"daemon crashed or exited {rc}: {daemon.crash_lines() or daemon.tail(1500)}"
        )
    if rows != len(names) or quarantined:
        problems.append(f"{rows} rows and {quarantined} quarantined for {len(names)} files")
    if truncated != want_truncated or originals != want_truncated:
        problems.append(
            f"{truncated} truncated rows, {originals} originals kept; expected {want_truncated}"
        )
    return {
        "scenario": name,
        "files": len(names),
        "mb": round(total_bytes / 1e6, 1),
        "drain_s": round(drain_s, 2),
        "mb_per_s": round(total_bytes / 1e6 / drain_s, 1),
        "daemon_cpu_s": round(daemon_cpu_s, 1),
        "postgres_cpu_s": round(pg_cpu_s, 1),
        "rss_idle_mib": mib(rss_idle),
        "hwm_before_mib": mib(hwm_idle),
        "rss_median_drain_mib": mib(statistics.median(during)) if during else None,
        "rss_max_sampled_mib": mib(max(r for _, r in sampler.samples)) if sampler.samples else None,
        "hwm_mib": mib(max(hwm, max((r for _, r in sampler.samples), default=0))),
        "rss_after_mib": mib(rss_after),
        "batches": len(batches),
        "rows": rows,
        "truncated": truncated,
        "originals": originals,
        "quarantined": quarantined,
        "daemon_exit": rc,
        "problems": problems,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=500, help="files per ~1 MB scenario (default 500)")
    ap.add_argument("--payload-mb", type=float, default=1.0, help="payload size in MiB (default 1)")
    ap.add_argument(
        "--huge-mb", type=float, default=50.0, help="size of the huge payloads in MiB (default 50)"
    )
    ap.add_argument("--huge-count", type=int, default=2, help="how many huge payloads (default 2)")
    ap.add_argument("--scenarios", default="under_cap,over_cap,huge", help="comma-separated subset")
    ap.add_argument(
        "--sample-ms", type=float, default=50.0, help="VmRSS sampling interval (default 50)"
    )
    ap.add_argument(
        "--timeout-s", type=float, default=600.0, help="longest drain per scenario (default 600)"
    )
    ap.add_argument(
        "--tmp-dir", type=Path, default=Path("/tmp"), help="where state and spool go (default /tmp)"
    )
    ap.add_argument("--keep-logs", type=Path, help="copy each daemon log into this folder")
    ap.add_argument(
        "--url",
        help="a migrated database to use instead of a private cluster (agent_logs is TRUNCATEd)",
    )
    args = ap.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - {"under_cap", "over_cap", "huge"}
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    results = []
    with (
        tempfile.TemporaryDirectory(prefix="sdb-rss-", dir=args.tmp_dir) as tmp_s,
        database(Path(tmp_s) / "pg-state", args.url) as (url, data_dir),
    ):
        postmaster = postmaster_pid(data_dir) if data_dir else None
        for name in scenarios:
            results.append(run_scenario(name, args, url, Path(tmp_s), postmaster))
            if results[-1]["problems"] and "crashed" in results[-1]["problems"][0]:
                break

    print(
        f"daemon RSS while draining (field cap {FIELD_CAP // KiB} KiB, default settings); target <= 150 MB"
    )
    print_table(
        ["scenario", "files", "MB", "drain s", "MB/s", "daemon CPU s", "pg CPU s", "idle MiB", "median MiB",
         "peak VmHWM MiB", "after MiB"],
        [
            (r["scenario"], r["files"], r["mb"], r["drain_s"], r["mb_per_s"], r["daemon_cpu_s"], r["postgres_cpu_s"],
             r["rss_idle_mib"], r["rss_median_drain_mib"], r["hwm_mib"], r["rss_after_mib"])
            for r in results
        ],
    )  # fmt: skip
    emit_json({"bench": "rss", "field_cap_bytes": FIELD_CAP, "results": results})
    failed = [p for r in results for p in r["problems"]]
    for p in failed:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
