"""Hook-to-visible-row latency under a steady load (default 1,000 events/s for 60 s).

Target (issue 7): p99 <= 2 s after the hook returns, and no growing backlog. Prints numbers,
asserts no timing; exits 1 only if the daemon crashed or an event was lost or quarantined.

    .venv/bin/python tests/bench/bench_steady.py [--rate 1000] [--duration-s 60]

Runs the real daemon (`session-db run`, private embedded cluster in a temporary state
directory, as bench_latency does). Writer threads deliver the recorded Claude Code 2.1.330
events of the `main` scenario (a new session every 28 events) on an open-loop schedule
(event i is due at t0 + i/rate), each with the hook's own steps and order: exclusive create
in tmp/, one write, rename into new/, fsync of the file and of new/ (policy `full`, the hook's
default) — the hook's code path without a process per event (1,000 hook processes/s would
exceed 2 cores). The time an event's last fsync returned is its "hook return" time.

Latency, measured honestly from outside: a poller (its own connection, autocommit) asks
every --poll-ms for rows with an id above the last one it saw (the daemon is the only writer,
so ids grow in commit order) and stamps each new event_uid with the monotonic clock when the
answer arrived. Latency = that stamp - hook return; it overstates the truth by at most one
poll interval plus one query. A row may be visible before the writer's fsync returns (the
daemon sees the file at the rename): such latencies are <= 0 and are kept. The database's
own `ingested_at - occurred_at` is printed as a lower bound: `ingested_at` is now(), the
start of the inserting transaction, and `occurred_at` the hook's receive time.

Backlog: files in new/ sampled every second; "growing" if the mean of the last third of the
load window exceeds the first third's by more than half a second of events (rate / 2), with
the least-squares slope (files/s) beside it. CPU is utime+stime from /proc over the load
window (% of one core): the daemon process (all threads), the cluster's processes (minus
the poller's backend) and this script (writers and poller). --wchan also samples each daemon
thread's state and kernel wait channel every 10 ms, to show where a slow batch waits.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench._common import (
    CLK_TCK,
    FIXTURES,
    FSYNC_POLICIES,
    BenchError,
    CpuMeter,
    Daemon,
    TreeCpu,
    bench_env,
    cpu_ticks,
    deliver,
    emit_json,
    log_events,
    mib,
    postmaster_pid,
    print_table,
    status_field,
    summary_ms,
)

SID = b"@@SESSION@@"


def templates() -> list[tuple[str, bytes]]:
    """(event, payload with a session-id placeholder) for the `main` scenario, in firing order."""
    out = []
    for f in sorted((FIXTURES / "hooks" / "all" / "main").iterdir()):
        obj = orjson.loads(f.read_bytes())
        obj.pop("transcript_path", None)  # events only: no transcripts to read
        obj.pop("agent_transcript_path", None)
        obj["session_id"] = SID.decode()
        out.append((f.stem.split("_", 1)[1], orjson.dumps(obj)))
    return out


class Generator:
    """Writer threads that deliver `total` events on an open-loop schedule."""

    def __init__(
        self, spool: Path, project: Path, *, rate: float, total: int, writers: int, fsync: str
    ) -> None:
        self.spool = spool
        self.project = str(project)
        self.rate = rate
        self.total = total
        self.fsync = fsync
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        self.base = templates()
        self.returned: dict[str, int] = {}  # event_uid -> monotonic ns when its fsync returned
        self.lag_ms: list[float] = []  # how late each write started against its schedule
        self.errors: list[BaseException] = []
        self._next = itertools.count()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(writers)]
        self.t0 = 0
        self.last_return = 0

    def start(self) -> None:
        self.t0 = time.monotonic_ns() + 50_000_000
        for t in self._threads:
            t.start()

    def join(self) -> None:
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        step_ns = 1e9 / self.rate
        try:
            while True:
                i = next(self._next)
                if i >= self.total:
                    return
                due = self.t0 + int(i * step_ns)
                now = time.monotonic_ns()
                if due > now:
                    time.sleep((due - now) / 1e9)
                start = time.monotonic_ns()
                event, template = self.base[i % len(self.base)]
                sid = f"steady-{i // len(self.base):07d}"
                name = deliver(
                    self.spool,
                    template.replace(SID, sid.encode()),
                    event=event,
                    host=self.host,
                    env={"CLAUDE_PROJECT_DIR": self.project, "CLAUDE_CODE_SESSION_ID": sid},
                    fsync=self.fsync,
                )
                done = time.monotonic_ns()
                self.returned[name] = done
                self.last_return = max(self.last_return, done)
                self.lag_ms.append((start - due) / 1e6)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.errors.append(exc)


class Poller(threading.Thread):
    """Stamps each newly visible agent_logs row with the monotonic time the answer arrived."""

    def __init__(self, url: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.backend_pid = int(self.conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        self.interval_s = interval_s
        self.seen: dict[str, int] = {}
        self.stop = threading.Event()
        self.queries = 0
        self.query_ms: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        watermark = 0
        try:
            while not self.stop.is_set():
                t = time.monotonic_ns()
                rows = self.conn.execute(
                    "SELECT id, event_uid FROM agent_logs WHERE id > %s AND event_category = 'hook' ORDER BY id",
                    (watermark,),
                ).fetchall()
                now = time.monotonic_ns()
                self.queries += 1
                self.query_ms.append((now - t) / 1e6)
                for row_id, uid in rows:
                    self.seen.setdefault(uid, now)
                    watermark = max(watermark, row_id)
                self.stop.wait(self.interval_s)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.conn.close()


class Sampler(threading.Thread):
    """Every second: files waiting in new/, the daemon's RSS, events written so far."""

    def __init__(self, new: Path, pid: int, written: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.new = new
        self.pid = pid
        self.written = written
        # (monotonic s, files in new/, VmRSS kB, events written)
        self.samples: list[tuple[float, int, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with os.scandir(self.new) as it:
                files = sum(1 for _ in it)
            rss = status_field(self.pid, "VmRSS")
            self.samples.append((time.monotonic(), files, rss, len(self.written)))
            self.stop.wait(1.0)


class WaitSampler(threading.Thread):
    """--wchan: every 10 ms, each daemon thread's state and kernel wait channel (/proc, no ptrace).

    R = running or runnable, S = sleeping (waiting for work or a socket), D = waiting for I/O
    uninterruptibly (disk, journal); the wait channel names the kernel function it waits in.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.stop = threading.Event()
        self.initial = set(os.listdir(f"/proc/{pid}/task"))  # threads started later are pooled

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                tasks = os.listdir(f"/proc/{self.pid}/task")
            except FileNotFoundError:
                return
            for tid in tasks:
                base = Path(f"/proc/{self.pid}/task/{tid}")
                try:
                    stat = (base / "stat").read_text()
                    wchan = (base / "wchan").read_text().strip() or "-"
                except (FileNotFoundError, ProcessLookupError):
                    continue
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                state = stat[stat.rindex(")") + 2]
                if tid == str(self.pid):
                    name = "main"
                elif tid in self.initial:
                    name = f"{comm}:{tid}"
                else:
                    name = f"{comm} (threads started later)"
                self.counts[(name, state, wchan if state != "R" else "-")] += 1
            self.stop.wait(0.01)

    def top(self, n: int = 12) -> list[tuple[str, str, str, float]]:
        per_thread = collections.Counter[str]()
        for (name, _, _), c in self.counts.items():
            per_thread[name] += c
        return [
            (name, state, wchan, round(100 * c / per_thread[name], 1))
            for (name, state, wchan), c in self.counts.most_common(n)
        ]


def trend(points: list[tuple[float, int]]) -> dict[str, float | None]:
    """Backlog over the load window: first/last third means and the least-squares slope."""
    if len(points) < 3:
        return {"first_third": None, "last_third": None, "slope_files_per_s": None, "max": None}
    k = len(points) // 3
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
    return {
        "first_third": round(statistics.fmean(ys[:k]), 1),
        "last_third": round(statistics.fmean(ys[-k:]), 1),
        "slope_files_per_s": round(slope, 2),
        "max": max(ys),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    ap.add_argument(
        "--duration-s", type=float, default=60.0, help="length of the load (default 60)"
    )
    ap.add_argument("--writers", type=int, default=8, help="writer threads (default 8)")
    ap.add_argument(
        "--fsync", choices=FSYNC_POLICIES, default="full", help="hook fsync policy (default full)"
    )
    ap.add_argument(
        "--poll-ms", type=float, default=20.0, help="visibility poll interval (default 20)"
    )
    ap.add_argument(
        "--drain-timeout-s",
        type=float,
        default=120.0,
        help="wait this long for the tail (default 120)",
    )
    ap.add_argument(
        "--tmp-dir", type=Path, default=Path("/tmp"), help="parent of the state dir (default /tmp)"
    )
    ap.add_argument(
        "--wchan",
        action="store_true",
        help="also sample the daemon threads' state and kernel wait channel (where a batch waits)",
    )
    ap.add_argument("--keep-log", type=Path, help="copy the daemon's log to this file")
    args = ap.parse_args()
    total = max(1, round(args.rate * args.duration_s))

    with tempfile.TemporaryDirectory(prefix="sdb-steady-", dir=args.tmp_dir) as tmp:
        state = Path(tmp) / "state"
        project = Path(tmp) / "project"
        project.mkdir()
        daemon = Daemon(bench_env(state), Path(tmp) / "daemon.log")
        daemon.start()
        try:
            return run(args, total, daemon, state, project)
        finally:
            if daemon.alive():
                daemon.stop()
            if args.keep_log:
                shutil.copy(daemon.log, args.keep_log)


def run(args: argparse.Namespace, total: int, daemon: Daemon, state: Path, project: Path) -> int:
    spool = state / "spool"
    url = daemon.url()
    poller = Poller(url, args.poll_ms / 1000)
    pg_cpu = TreeCpu(postmaster_pid(state / "pg" / "data"), exclude=[poller.backend_pid])
    gen = Generator(
        spool, project, rate=args.rate, total=total, writers=args.writers, fsync=args.fsync
    )
    sampler = Sampler(spool / "new", daemon.pid, gen.returned)
    rss_before = status_field(daemon.pid, "VmRSS")

    poller.start()
    sampler.start()
    daemon_cpu = CpuMeter([daemon.pid])
    self_cpu0 = time.process_time()
    waits = WaitSampler(daemon.pid) if args.wchan else None
    if waits is not None:
        waits.start()
    pg_cpu.start()
    gen.start()
    gen.join()
    load_end = time.monotonic()
    daemon_pct = daemon_cpu.percent()
    bench_pct = 100.0 * (time.process_time() - self_cpu0) / max(load_end - daemon_cpu.t0, 1e-9)
    if waits is not None:
        waits.stop.set()
        waits.join()
    pg_pct = 100.0 * pg_cpu.stop() / max(load_end - daemon_cpu.t0, 1e-9)
    if gen.errors:
        raise BenchError(f"writer failed: {gen.errors[0]!r}")

    deadline = time.monotonic() + args.drain_timeout_s
    while len(poller.seen.keys() & gen.returned.keys()) < total and time.monotonic() < deadline:
        if not daemon.alive():
            break
        time.sleep(0.05)
    drained_at = time.monotonic()
    # A row is visible before its file is unlinked (COMMIT, then unlink): let the unlinks finish.
    while os.listdir(spool / "new") and time.monotonic() < deadline and daemon.alive():
        time.sleep(0.05)
    settled_at = time.monotonic()
    time.sleep(args.poll_ms / 1000 * 2)
    poller.stop.set()
    sampler.stop.set()
    poller.join()
    sampler.join()
    if poller.error is not None:
        raise BenchError(f"poller failed: {poller.error!r}")
    crashed = not daemon.alive()
    hwm = status_field(daemon.pid, "VmHWM")
    rss_end = status_field(daemon.pid, "VmRSS")
    daemon_cpu_total = cpu_ticks(daemon.pid) / CLK_TCK

    # Correctness: every written event is a row, still waiting in new/ (the drain timed out),
    # or (a failure) quarantined or lost.
    leftover = set(os.listdir(spool / "new"))
    with psycopg.connect(url) as conn:
        rows_in_db = conn.execute(
            "SELECT count(*) FROM agent_logs WHERE event_uid = ANY(%s)", (list(gen.returned),)
        ).fetchone()[0]  # type: ignore[index]
        leftover_rows = conn.execute(
            "SELECT count(*) FROM agent_logs WHERE event_uid = ANY(%s)", (list(leftover),)
        ).fetchone()[0]  # type: ignore[index]
        db_lat = [
            float(r[0])
            for r in conn.execute(
                "SELECT extract(epoch FROM ingested_at - occurred_at) * 1000 FROM agent_logs "
                "WHERE event_category = 'hook'"
            )
        ]
    waiting = len(leftover) - leftover_rows  # not yet a row
    quarantined = len(
        [n for n in os.listdir(spool / "quarantine") if not n.endswith(".reason.json")]
    )
    lost = total - rows_in_db - waiting - quarantined
    rc = daemon.stop()

    lat = [(poller.seen[u] - t) / 1e6 for u, t in gen.returned.items() if u in poller.seen]
    window = [(t, files) for t, files, _, _ in sampler.samples if t <= load_end]
    # Events written per second, in thirds of the load window: shows where a writer fell behind.
    per_s = [
        (b[3] - a[3]) / (b[0] - a[0])
        for a, b in itertools.pairwise(sampler.samples)
        if b[0] <= load_end + 1 and b[0] > a[0]
    ]
    k = max(1, len(per_s) // 3)
    write_rate_thirds = (
        [
            round(statistics.fmean(part), 1)
            for part in (per_s[:k], per_s[k:-k] or per_s[:k], per_s[-k:])
        ]
        if per_s
        else []
    )
    tr = trend(window)
    growing = (
        tr["last_third"] is not None
        and tr["first_third"] is not None
        and tr["last_third"] - tr["first_third"] > args.rate / 2
    )
    batches = [e for e in log_events(daemon.log) if e.get("event") == "batch_committed"]
    files_per_batch = [int(e["files"]) for e in batches]
    batch_ms = [float(e["ms"]) for e in batches]
    elapsed = (gen.last_return - gen.t0) / 1e9

    result: dict[str, Any] = {
        "bench": "steady",
        "rate_target": args.rate,
        "duration_s": args.duration_s,
        "events": total,
        "fsync": args.fsync,
        "writers": args.writers,
        "achieved_rate": round(total / elapsed, 1) if elapsed > 0 else None,
        "write_rate_by_third": write_rate_thirds,
        "writer_lag_p99_ms": round(sorted(gen.lag_ms)[int(0.99 * (len(gen.lag_ms) - 1))], 1),
        "latency": summary_ms(lat),
        "latency_min_ms": round(min(lat), 1) if lat else None,
        "seen": len(lat),
        "poll_ms": args.poll_ms,
        "poll_query_p50_ms": round(statistics.median(poller.query_ms), 2)
        if poller.query_ms
        else None,
        "db_side_latency_lower_bound": summary_ms(db_lat),
        "backlog": {**tr, "growing": growing},
        "tail_drain_s": round(drained_at - load_end, 2),
        "tail_unlinked_s": round(settled_at - load_end, 2),
        "committed_not_unlinked": leftover_rows,
        "daemon_cpu_pct": round(daemon_pct, 1),
        "postgres_cpu_pct": round(pg_pct, 1),
        "bench_cpu_pct": round(bench_pct, 1),
        "daemon_cpu_total_s": round(daemon_cpu_total, 1),
        "rss_before_mib": mib(rss_before),
        "rss_max_sampled_mib": mib(max((r for _, _, r, _ in sampler.samples), default=0)),
        "rss_hwm_mib": mib(hwm),
        "rss_end_mib": mib(rss_end),
        "batches": len(batches),
        "files_per_batch_mean": round(statistics.fmean(files_per_batch), 1) if batches else None,
        "batch_ms_p50": round(statistics.median(batch_ms), 1) if batches else None,
        "batch_ms_max": round(max(batch_ms), 1) if batches else None,
        "rows": rows_in_db,
        "waiting": waiting,
        "quarantined": quarantined,
        "lost": lost,
        "daemon_exit": rc,
    }
    lat_s = result["latency"]
    print(f"steady load: {total} events at {args.rate:g}/s for {args.duration_s:g} s, fsync {args.fsync}, "
          f"{args.writers} writers")  # fmt: skip
    print(f"latency = first poll that saw the row - hook return (poll every {args.poll_ms:g} ms)")
    print_table(
        ["metric", "value", "target"],
        [
            ("achieved rate (events/s)", result["achieved_rate"], f"{args.rate:g}"),
            ("writes/s by third of the run", " / ".join(map(str, write_rate_thirds)), ""),
            ("writer start lag p99 (ms)", result["writer_lag_p99_ms"], ""),
            ("latency p50 (ms)", lat_s["p50_ms"], ""),
            ("latency p95 (ms)", lat_s["p95_ms"], ""),
            ("latency p99 (ms)", lat_s["p99_ms"], "<= 2000"),
            ("latency max (ms)", lat_s["max_ms"], ""),
            ("db-side p99 lower bound (ms)", result["db_side_latency_lower_bound"]["p99_ms"], ""),
            ("backlog first third (files)", tr["first_third"], ""),
            ("backlog last third (files)", tr["last_third"], ""),
            ("backlog slope (files/s)", tr["slope_files_per_s"], "~0"),
            ("backlog max (files)", tr["max"], ""),
            ("backlog growing", "yes" if growing else "no", "no"),
            ("last row visible after load (s)", result["tail_drain_s"], ""),
            ("new/ empty after load (s)", result["tail_unlinked_s"], ""),
            ("daemon CPU (% of a core)", result["daemon_cpu_pct"], ""),
            ("postgres CPU (% of a core)", result["postgres_cpu_pct"], ""),
            ("writers + poller CPU (% of a core)", result["bench_cpu_pct"], ""),
            ("daemon RSS peak VmHWM (MiB)", result["rss_hwm_mib"], ""),
            ("batches / files per batch", f"{len(batches)} / {result['files_per_batch_mean']}", ""),
            ("batch ms p50 / max", f"{result['batch_ms_p50']} / {result['batch_ms_max']}", ""),
            (
                "rows / waiting / quarantined / lost",
                f"{rows_in_db} / {waiting} / {quarantined} / {lost}",
                "all rows",
            ),
        ],
    )
    if waits is not None:
        print(
            "daemon threads during the load: share of each thread's samples (state R/S/D, wait channel)"
        )
        print_table(["thread", "state", "wait channel", "%"], waits.top())
        result["wchan"] = waits.top()
    emit_json(result)
    if result["achieved_rate"] is not None and result["achieved_rate"] < 0.95 * args.rate:
        print(f"note: the writers reached only {result['achieved_rate']} events/s (disk or CPU bound); "
              "latency and backlog above are for that rate", file=sys.stderr)  # fmt: skip
    if crashed or rc != 0:
        print(f"daemon crashed or exited {rc}:\n{daemon.tail()}", file=sys.stderr)
        return 1
    if quarantined or lost > 0:
        print(f"correctness: {quarantined} quarantined, {lost} lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
