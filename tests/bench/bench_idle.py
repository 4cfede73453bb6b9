"""Idle cost of the daemon: CPU, wake-ups and RSS of `session-db run` with nothing to do.

Target (issue 7): idle daemon CPU < 1 % over 60 s. Prints numbers, asserts no timing; exits 1
only if the daemon crashed or did not come up.

    .venv/bin/python tests/bench/bench_idle.py [--seconds 60]

Starts `session-db run` as bench_latency does (private embedded cluster in a temporary state
directory, empty spool, no watched projects), waits for its first pass (`database_up` in its
log) plus --settle-s, then reads /proc at the start and the end of the window:

* CPU: utime + stime of the daemon process (all its threads) and of any child it has, and,
  separately, of the embedded cluster's processes (postmaster and its children: the
  daemon's backend, checkpointer, walwriter, autovacuum launcher, ...), in % of one core.
* Wake-ups: voluntary + involuntary context switches summed over the daemon's threads
  (/proc/<pid>/task/*/status), per second: each is a thread going to sleep or being preempted,
  so their rate is a fair count of wake-ups.
* RSS: VmRSS at the end, VmHWM (the peak since start).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench._common import (
    CLK_TCK,
    Daemon,
    TreeCpu,
    bench_env,
    cpu_ticks,
    ctx_switches,
    descendants,
    emit_json,
    log_events,
    mib,
    postmaster_pid,
    print_table,
    status_field,
)


def tree_ticks(pid: int) -> int:
    return sum(cpu_ticks(p) for p in descendants(pid))


def thread_switches(pid: int) -> dict[str, int]:
    """Context switches per thread: "<comm> (main)" for the main thread, "<comm> (<tid>)" else."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            vol, invol = ctx_switches_of(task / "status")
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[f"{comm} ({'main' if task.name == str(pid) else task.name})"] = vol + invol
    return out


def ctx_switches_of(status: Path) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--seconds", type=float, default=60.0, help="length of the idle window (default 60)"
    )
    ap.add_argument(
        "--settle-s",
        type=float,
        default=2.0,
        help="wait after start-up before measuring (default 2)",
    )
    ap.add_argument(
        "--tmp-dir", type=Path, default=Path("/tmp"), help="parent of the state dir (default /tmp)"
    )
    ap.add_argument("--keep-log", type=Path, help="copy the daemon's log to this file")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sdb-idle-", dir=args.tmp_dir) as tmp:
        state = Path(tmp) / "state"
        daemon = Daemon(bench_env(state), Path(tmp) / "daemon.log")
        daemon.start()
        try:
            time.sleep(args.settle_s)
            pid = daemon.pid
            pm = postmaster_pid(state / "pg" / "data")
            pg = TreeCpu(pm, interval_s=1.0)
            pg_processes = len(descendants(pm)) if pm else 0
            threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
            vol0, invol0 = ctx_switches(pid)
            per_thread0 = thread_switches(pid)
            ticks0 = tree_ticks(pid)
            lines0 = len(log_events(daemon.log))
            t0 = time.monotonic()
            pg.start()
            while time.monotonic() - t0 < args.seconds:
                if not daemon.alive():
                    break
                time.sleep(
                    min(1.0, args.seconds - (time.monotonic() - t0)) if args.seconds > 0 else 0
                )
            elapsed = time.monotonic() - t0
            crashed = not daemon.alive()
            ticks1 = tree_ticks(pid)
            vol1, invol1 = ctx_switches(pid)
            per_thread1 = thread_switches(pid)
            pg_s = pg.stop()
            rss = status_field(pid, "VmRSS")
            hwm = status_field(pid, "VmHWM")
            log_lines = len(log_events(daemon.log)) - lines0
        finally:
            rc = daemon.stop()
            tail = daemon.tail()
            if args.keep_log:
                shutil.copy(daemon.log, args.keep_log)

    daemon_s = (ticks1 - ticks0) / CLK_TCK
    by_thread = {
        name: round((n - per_thread0.get(name, 0)) / elapsed, 1)
        for name, n in sorted(per_thread1.items())
    }
    result: dict[str, Any] = {
        "bench": "idle",
        "seconds": round(elapsed, 1),
        "daemon_cpu_s": round(daemon_s, 2),
        "daemon_cpu_pct": round(100 * daemon_s / elapsed, 3),
        "postgres_cpu_s": round(pg_s, 2),
        "postgres_cpu_pct": round(100 * pg_s / elapsed, 3),
        "total_cpu_pct": round(100 * (daemon_s + pg_s) / elapsed, 3),
        "threads": threads,
        "wakeups_per_s_by_thread": by_thread,
        "postgres_processes": pg_processes,
        "wakeups_per_s": round((vol1 - vol0 + invol1 - invol0) / elapsed, 1),
        "voluntary_ctxt_switches_per_s": round((vol1 - vol0) / elapsed, 1),
        "involuntary_ctxt_switches_per_s": round((invol1 - invol0) / elapsed, 1),
        "rss_mib": mib(rss),
        "hwm_mib": mib(hwm),
        "log_lines": log_lines,
        "clk_tck": CLK_TCK,
        "daemon_exit": rc,
    }
    print(f"idle `session-db run` (embedded cluster, empty spool) over {elapsed:.1f} s; CPU in % of one core "
          f"(resolution {100 / CLK_TCK / elapsed:.3f} %)")  # fmt: skip
    print_table(
        ["metric", "value", "target"],
        [
            ("daemon CPU (%)", result["daemon_cpu_pct"], "< 1"),
            ("embedded postgres CPU (%)", result["postgres_cpu_pct"], ""),
            ("daemon + postgres CPU (%)", result["total_cpu_pct"], ""),
            ("daemon wake-ups/s (all threads)", result["wakeups_per_s"], ""),
            ("  voluntary / involuntary per s",
             f"{result['voluntary_ctxt_switches_per_s']} / {result['involuntary_ctxt_switches_per_s']}", ""),
            *((f"  thread {name!r} per s", rate, "") for name, rate in by_thread.items()),
            ("daemon threads", threads, ""),
            ("embedded postgres processes", pg_processes, ""),
            ("daemon RSS (MiB)", result["rss_mib"], ""),
            ("daemon peak RSS VmHWM (MiB)", result["hwm_mib"], ""),
            ("log lines while idle", log_lines, ""),
        ],
    )  # fmt: skip
    emit_json(result)
    if crashed or rc != 0:
        print(f"daemon crashed or exited {rc}:\n{tail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
