"""Helpers shared by bench_steady, bench_backfill, bench_rss and bench_idle (Linux: /proc).

Not a benchmark itself. The older scripts (bench_hook, bench_latency, bench_ingest,
bench_cluster) keep their own code and command lines.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.spoolwriter import encode, spool_name  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "claude-code-2.1.330"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FSYNC_POLICIES = ("full", "file", "none")


class BenchError(SystemExit):
    """The benchmark cannot go on (the daemon crashed, a check failed): exit 1 with a message."""

    def __init__(self, message: str) -> None:
        super().__init__(f"bench: {message}")


# --- the daemon under test -----------------------------------------------------------------


def bench_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without its SESSION_DB_* settings, pointed at `state_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_DB_")}
    env.update(
        SESSION_DB_STATE_DIR=str(state_dir),
        SESSION_DB_LOG_FORMAT="json",
        XDG_CONFIG_HOME=str(state_dir.parent / "cfg"),  # no user config.toml
    )
    env.update(extra)
    return env


class Daemon:
    """A `python -m daemon <args>` subprocess (the `session-db` entry point), log in a file."""

    def __init__(self, env: Mapping[str, str], log: Path, args: Sequence[str] = ("run",)) -> None:
        self.env = dict(env)
        self.log = log
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready: str = '"database_up"', timeout_s: float = 90.0) -> None:
        """Start it and wait for the log line `ready` (the first successful pass of `run`)."""
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", *self.args],
                env=self.env,
                stdout=sink,
                stderr=sink,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout_s
        while ready.encode() not in self.log.read_bytes():
            if self.proc.poll() is not None:
                raise BenchError(f"daemon exited {self.proc.returncode}; log:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"daemon not ready after {timeout_s:.0f} s; log:\n{self.tail()}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self) -> str:
        """The database URL: SESSION_DB_URL, or the embedded cluster's from the log."""
        if self.env.get("SESSION_DB_URL"):
            return self.env["SESSION_DB_URL"]
        for event in log_events(self.log):
            if event.get("event") == "embedded_cluster_ready":
                return str(event["url"])
        raise BenchError(f"no embedded_cluster_ready line in {self.log}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (a graceful stop), then wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def crash_lines(self) -> list[dict[str, Any]]:
        return [e for e in log_events(self.log) if e.get("event") in ("crashed", "fatal")]


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon log (others are skipped)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


@contextmanager
def database(state_dir: Path, url: str | None = None) -> Iterator[tuple[str, Path | None]]:
    """(URL, data directory or None): `url` migrated, or a private embedded cluster for the run."""
    import logging

    import structlog

    from daemon import migrations
    from daemon.cluster import EmbeddedCluster

    # The cluster's own log lines (initdb, start, stop) would interleave with the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if url:
        migrations.upgrade(url)
        yield url, None
        return
    cluster = EmbeddedCluster(state_dir)
    cluster.ensure_started()
    try:
        migrations.upgrade(cluster.url())
        yield cluster.url(), cluster.data_dir
    finally:
        cluster.stop()


# --- the hook's delivery, without a process per event -------------------------------------


def deliver(
    spool: Path,
    payload: bytes,
    *,
    event: str,
    host: str,
    env: Mapping[str, str] | None = None,
    fsync: str = "full",
) -> str:
    """One event exactly as hooks/session-db-hook writes it; returns the spool name.

    Same steps and order as the hook: exclusive create of tmp/<name>, header + payload in
    one write, rename into new/, then (policy `full`, the hook's default) fsync of the file
    and of new/ — what its `sync -- FILE DIR` does; `file` syncs the file only.
    """
    now = time.time_ns()
    name = spool_name(host, now)
    tmp = spool / "tmp" / name
    new = spool / "new" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        data = memoryview(encode(payload, event=event, received_ns=now, host=host, env=env))
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    os.rename(tmp, new)
    if fsync != "none":
        targets = [new, spool / "new"] if fsync == "full" else [new]
        for target in targets:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return name


# --- /proc ----------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, all its threads (clock ticks); 0 once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def status_field(pid: int, name: str) -> int:
    """A numeric line of /proc/<pid>/status (kB for Vm* lines); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def ctx_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over every thread of the process."""
    vol = invol = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0, 0
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def descendants(pid: int) -> list[int]:
    """pid and every live process below it (a scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


class CpuMeter:
    """CPU seconds of a set of processes between two reads (processes that exit are lost)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.start = {p: cpu_ticks(p) for p in self.pids}
        self.t0 = time.monotonic()

    def seconds(self) -> float:
        return sum(max(0, cpu_ticks(p) - self.start[p]) for p in self.pids) / CLK_TCK

    def percent(self) -> float:
        """CPU time over wall time, in % of one core."""
        return 100.0 * self.seconds() / max(time.monotonic() - self.t0, 1e-9)


class TreeCpu(threading.Thread):
    """CPU seconds of a process tree (e.g. a postmaster and its backends) while it runs.

    Samples every `interval_s`, so backends that start later count in full and backends
    that exit lose at most their last interval. `exclude`: pids not to count (our own
    backends).
    """

    def __init__(
        self, root: int | None, exclude: Sequence[int] = (), interval_s: float = 0.1
    ) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.exclude = set(exclude)
        self.interval_s = interval_s
        self.base: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.stopping = threading.Event()
        if root is not None:
            for p in descendants(root):
                self.base[p] = self.last[p] = cpu_ticks(p)

    def run(self) -> None:
        while self.root is not None and not self.stopping.is_set():
            self._sample()
            self.stopping.wait(self.interval_s)

    def _sample(self) -> None:
        assert self.root is not None
        for p in descendants(self.root):
            if p in self.exclude:
                continue
            ticks = cpu_ticks(p)
            if ticks:
                self.base.setdefault(p, 0)
                self.last[p] = max(self.last.get(p, 0), ticks)

    def stop(self) -> float:
        """Stop sampling; CPU seconds used since construction."""
        self.stopping.set()
        if self.is_alive():
            self.join()
        if self.root is not None:
            self._sample()
        return (
            sum(self.last[p] - self.base[p] for p in self.last if p not in self.exclude) / CLK_TCK
        )


# --- numbers and output ---------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (inclusive method; the sample itself for one sample)."""
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return float(samples[0])
    if q == 50:
        return float(statistics.median(samples))
    return float(statistics.quantiles(samples, n=1000, method="inclusive")[round(q * 10) - 1])


def summary_ms(samples_ms: Sequence[float]) -> dict[str, float | None]:
    if not samples_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(percentile(samples_ms, 50), 1),
        "p95_ms": round(percentile(samples_ms, 95), 1),
        "p99_ms": round(percentile(samples_ms, 99), 1),
        "max_ms": round(max(samples_ms), 1),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain, right-aligned table (first column left-aligned)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for r in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def emit_json(record: Mapping[str, Any]) -> None:
    print(json.dumps(record, separators=(",", ":"), default=str))


def mib(kb: float) -> float:
    return round(kb / 1024, 1)
