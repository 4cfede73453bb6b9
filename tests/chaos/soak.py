#!/usr/bin/env python3
"""Soak test (docs/design/spool.md §7 row 25): writers, kill -9 of the daemon, PostgreSQL restarts.

    .venv/bin/python tests/chaos/soak.py [--duration-s 600] [--writers 8] [--kill-every-s 20:60]
                                         [--pg-restart-every-s 180] [--rate 25] [--seed N] [--keep]

Everything lives in a fresh temporary directory: a private PostgreSQL cluster (EmbeddedCluster,
Unix socket only, no TCP listener), the spool, the daemon's state directory and a project with
`agents/sessions/<slug>/state.json` files. The script

* migrates the cluster and runs `python -m daemon run` against it (SESSION_DB_URL);
* runs W writer processes (this script with --writer) that deliver events with
  `spoolwriter.write_event` (recorded Claude Code payloads, some with NUL, some garbage, a few
  header-less garbage files straight into new/) and log every accepted name to a side file
  *after* the rename returned;
* rewrites the state.json files now and then (atomically);
* kills the daemon with SIGKILL at random intervals and starts it again;
* stops PostgreSQL (fast shutdown) and starts it again periodically, in a thread, so that kills
  also land while the database is down;
* samples the daemon's RSS and open fds from /proc every few seconds;
* at the end stops the writers, lets the daemon drain, stops it with SIGTERM (exit 0 expected)
  and checks the oracle of docs/design/spool.md §5.

It prints a table of samples, a summary, and as its last line one JSON object. Exit 0 when the
oracle and the other checks hold, 1 otherwise (the temporary directory is then kept).
Time and size are bounded: --duration-s, --drain-timeout-s, --rate and --max-events-per-writer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.spoolwriter import write_event, write_raw  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks" / "all"
SLUGS = ("soak-a", "soak-b", "soak-c")
STATUSES = ("created", "spec", "plan", "build", "docs", "complete", "failed")
DAEMON_HOST = "soak-host"
SAMPLE_EVERY_S = 2.0
SETTLE_S = 2.0  # a daemon younger than this is not sampled (interpreter still starting)
TABLE_ROWS = 30  # at most this many sample rows are printed (evenly spaced)
STATE_EVERY_S = 1.5
ORPHAN_TTL_S = 86400.0


# =========================================================================== writer process


def writer_main(args: argparse.Namespace) -> int:
    """Deliver events until SIGTERM or the cap; log `name<TAB>kind` after each accepted one."""
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True  # finish the current delivery and its log line, then leave

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    rng = random.Random(args.seed)
    spool = Path(args.spool)
    payloads = [
        (p.stem.split("_", 1)[1], p.read_bytes()) for p in sorted(FIXTURES.glob("*/*.json"))
    ]
    env = {"CLAUDE_PROJECT_DIR": args.project}
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    next_at = time.monotonic()
    n = 0
    with open(args.accepted_log, "a", buffering=1) as out:
        while not stop and n < args.max_events:
            r = rng.random()
            if r < 0.90:
                event, payload = rng.choice(payloads)
                extra = {"SESSION_DB_SESSION": rng.choice(SLUGS)} if rng.random() < 0.2 else {}
                name = write_event(spool, payload, event=event, env={**env, **extra})
                kind = "valid"
            elif r < 0.93:
                body = {"session_id": f"soak-{args.index}", "tool_response": f"a\u0000b{n}\u2400"}
                name = write_event(spool, json.dumps(body).encode(), event="PostToolUse", env=env)
                kind = "valid"
            elif r < 0.99:
                garbage = b'{"truncated": ' + rng.randbytes(rng.randint(0, 24)).hex().encode()
                name = write_event(spool, garbage, event="PostToolUse", env=env)
                kind = "bad"
            else:
                # A foreign writer without the header, straight into new/ (not atomic): the
                # daemon must wait for its grace period, then quarantine it.
                name = write_raw(spool, b"not json {" + rng.randbytes(8).hex().encode())
                kind = "bad"
            out.write(f"{name}\t{kind}\n")
            n += 1
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()
    return 0


# =========================================================================== orchestration


@dataclass
class Sample:
    t: float
    pid: int
    rss_kb: int
    fds: int
    backlog: int
    rows: int | None


@dataclass
class Report:
    duration_s: float
    writers: int
    seed: int
    accepted: int = 0
    accepted_valid: int = 0
    accepted_bad: int = 0
    rows: int = 0
    quarantined: int = 0
    pending_new: int = 0
    tmp_files: int = 0
    duplicate_rows: int = 0
    write_eps: float = 0.0
    ingest_eps: float = 0.0
    drain_s: float = 0.0
    daemon_kills: int = 0
    daemon_unexpected_exits: list[int] = field(default_factory=list)
    daemon_final_exit: int | None = None
    pg_restarts: int = 0
    samples: int = 0
    rss_kb_min: int | None = None
    rss_kb_max: int | None = None
    fds_min: int | None = None
    fds_max: int | None = None
    log_database_down: int = 0
    log_db_rejected: int = 0
    oracle: dict[str, bool] = field(default_factory=dict)
    oracle_ok: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    ok: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    workdir: str = ""


def parse_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    a, b = float(lo), float(hi if sep else lo)
    if not 0 < a <= b:
        raise argparse.ArgumentTypeError(f"expected A:B with 0 < A <= B, got {text!r}")
    return a, b


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(tempfile.mkdtemp(prefix="sdb-soak-"))
        self.spool = self.work / "spool"
        self.state = self.work / "state"
        self.project = self.work / "project"
        self.sessions = self.project / "agents" / "sessions"
        self.logs = self.work / "logs"
        for d in (self.state, self.sessions, self.logs):
            d.mkdir(parents=True)
        from daemon.spool import Spool

        Spool(self.spool).ensure()
        self.report = Report(duration_s=args.duration_s, writers=args.writers, seed=args.seed)
        self.report.workdir = str(self.work)
        self.samples: list[Sample] = []
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemon_starts = 0
        self.daemon_started_at = 0.0
        self.writers: list[subprocess.Popen[bytes]] = []
        self.cluster: Any = None
        self.url = ""
        self._pg_lock = threading.Lock()
        self._stop_chaos = threading.Event()
        self.state_n = 0

    # ----------------------------------------------------------------- database

    def start_cluster(self) -> None:
        from daemon import migrations
        from daemon.cluster import EmbeddedCluster

        self.cluster = EmbeddedCluster(self.work / "pg-state")
        self.cluster.ensure_started()
        self.url = self.cluster.url()
        migrations.upgrade(self.url)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=2) as conn:
            return conn.execute(sql, params).fetchall()

    def pg_chaos(self) -> None:
        """Thread: stop PostgreSQL (fast) every C seconds for a short while, start it again."""
        every = self.args.pg_restart_every_s
        rng = random.Random(self.args.seed + 1)
        if every <= 0:
            return
        try:
            while not self._stop_chaos.wait(every):
                with self._pg_lock:
                    self.cluster.stop()
                    down = rng.uniform(0.5, 3.0)
                    self._stop_chaos.wait(down)
                    self.cluster.ensure_started()
                    self.report.pg_restarts += 1
                    print(f"[soak] PostgreSQL restarted (down {down:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported; the main thread starts it again
            self.report.details["pg_chaos_error"] = repr(exc)[:500]

    # ----------------------------------------------------------------- daemon

    def daemon_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_DB_", "CLAUDE_"))}
        env.update(
            SESSION_DB_URL=self.url,
            SESSION_DB_STATE_DIR=str(self.state),
            SESSION_DB_SPOOL=str(self.spool),
            SESSION_DB_WATCH=str(self.project),
            SESSION_DB_HOST=DAEMON_HOST,
            SESSION_DB_LOG_FORMAT="json",
            SESSION_DB_SCAN_INTERVAL_S="1",
            SESSION_DB_FOREIGN_GRACE_S="2",
            SESSION_DB_CONNECT_TIMEOUT_S="2",
            SESSION_DB_ORPHAN_TTL_S=str(ORPHAN_TTL_S),
            XDG_CONFIG_HOME=str(self.work / "config"),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(REPO),  # the daemon runs the code beside this script, not an install
        )
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        return env

    def start_daemon(self) -> None:
        log = self.logs / "daemon.log"
        with log.open("ab") as sink:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run"],
                env=self.daemon_env(),
                stdout=subprocess.DEVNULL,
                stderr=sink,
                cwd=self.work,
            )
        self.daemon_starts += 1
        self.daemon_started_at = time.monotonic()

    def kill_daemon(self) -> None:
        assert self.daemon is not None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait(30)
            self.report.daemon_kills += 1

    def check_daemon_alive(self) -> None:
        assert self.daemon is not None
        code = self.daemon.poll()
        if code is not None:
            self.report.daemon_unexpected_exits.append(code)
            print(f"[soak] daemon exited by itself with {code}; restarting", flush=True)
            self.start_daemon()

    # ----------------------------------------------------------------- writers and state

    def start_writers(self) -> None:
        for i in range(self.args.writers):
            self.writers.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--writer", "--index", str(i),
                     "--spool", str(self.spool), "--project", str(self.project),
                     "--accepted-log", str(self.logs / f"accepted-{i}.log"),
                     "--seed", str(self.args.seed * 1000 + i), "--rate", str(self.args.rate),
                     "--max-events", str(self.args.max_events_per_writer)],
                    stdin=subprocess.DEVNULL,
                )
            )  # fmt: skip

    def stop_writers(self) -> None:
        for w in self.writers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in self.writers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(10)
                self.report.details.setdefault("writers_killed", 0)
                self.report.details["writers_killed"] += 1

    def write_state(self, slug: str) -> None:
        self.state_n += 1
        body = {
            "slug": slug,
            "title": f"soak {slug}",
            "status": self.rng.choice(STATUSES),
            "total_cost": round(self.state_n / 100, 2),
            "n": self.state_n,
            "agents": [{"id": f"{slug}-main", "agent_type": "orchestrator", "status": "executing"}],
        }
        folder = self.sessions / slug
        folder.mkdir(exist_ok=True)
        tmp = folder / ".state.json.tmp"
        tmp.write_bytes(json.dumps(body).encode())
        tmp.replace(folder / "state.json")

    # ----------------------------------------------------------------- sampling

    def sample(self, t0: float) -> None:
        assert self.daemon is not None
        if time.monotonic() - self.daemon_started_at < SETTLE_S:
            return  # still importing: its RSS and fds say nothing yet
        pid = self.daemon.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration, ValueError):
            return  # between a kill and the restart
        rows: int | None
        try:
            rows = int(
                self.query("SELECT count(*) FROM agent_logs WHERE event_category = 'hook'")[0][0]
            )
        except Exception:  # noqa: BLE001 - the database may be down right now
            rows = None
        backlog = sum(1 for n in os.listdir(self.spool / "new") if not n.startswith("."))
        self.samples.append(Sample(round(time.monotonic() - t0, 1), pid, rss, fds, backlog, rows))

    # ----------------------------------------------------------------- phases

    def run(self) -> Report:
        a = self.args
        self.start_cluster()
        for slug in SLUGS:
            self.write_state(slug)
        self.start_daemon()
        self.start_writers()
        t0 = time.monotonic()
        end = t0 + a.duration_s
        chaos = threading.Thread(target=self.pg_chaos, name="pg-chaos", daemon=True)
        chaos.start()
        next_kill = t0 + self.rng.uniform(*a.kill_every_s)
        next_sample = t0
        next_state = t0 + STATE_EVERY_S
        try:
            while (now := time.monotonic()) < end:
                self.check_daemon_alive()
                if now >= next_kill:
                    self.kill_daemon()
                    time.sleep(self.rng.uniform(0, 1.0))
                    self.start_daemon()
                    next_kill = time.monotonic() + self.rng.uniform(*a.kill_every_s)
                if now >= next_state:
                    self.write_state(self.rng.choice(SLUGS))
                    next_state = now + STATE_EVERY_S
                if now >= next_sample:
                    self.sample(t0)
                    next_sample = now + a.sample_every_s
                time.sleep(0.05)
        finally:
            self._stop_chaos.set()
            chaos.join(timeout=120)
            self.stop_writers()
        t_written = time.monotonic()
        with self._pg_lock:
            self.cluster.ensure_started()  # up for the final drain, whatever the thread did
        for slug in SLUGS:
            self.write_state(slug)  # the final contents the database must converge to
        self.check_daemon_alive()
        accepted = self.read_accepted()
        drained = self.wait_drained(len(accepted), t0)
        self.report.drain_s = round(time.monotonic() - t_written, 1)
        assert self.daemon is not None
        self.sample(t0)
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.report.daemon_final_exit = self.daemon.wait(60)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.report.daemon_final_exit = self.daemon.wait(10)
        self.report.write_eps = round(len(accepted) / (t_written - t0), 1)
        self.report.ingest_eps = round(len(accepted) / (drained - t0), 1) if drained else 0.0
        self.check_oracle(accepted)
        return self.report

    def read_accepted(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for log in sorted(self.logs.glob("accepted-*.log")):
            for line in log.read_text().splitlines():
                name, _, kind = line.partition("\t")
                if name:
                    out[name] = kind
        return out

    def converged(self) -> bool:
        for slug in SLUGS:
            data = (self.sessions / slug / "state.json").read_bytes()
            got = self.query(
                "SELECT state_sha256 FROM sessions WHERE host = %s AND slug = %s", DAEMON_HOST, slug
            )
            if got != [(hashlib.sha256(data).hexdigest(),)]:
                return False
        return True

    def wait_drained(self, accepted: int, t0: float) -> float | None:
        """Until new/ is empty, every event is settled and state converged; when that happened."""
        deadline = time.monotonic() + self.args.drain_timeout_s
        next_sample = time.monotonic()
        while time.monotonic() < deadline:
            self.check_daemon_alive()
            try:
                new = [n for n in os.listdir(self.spool / "new") if not n.startswith(".")]
                settled = len(self.rows()) + len(self.quarantined())
                if not new and settled >= accepted and self.converged():
                    return time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the database may still be starting
                self.report.details["last_drain_error"] = str(exc)[:200]
            if time.monotonic() >= next_sample:
                self.sample(t0)
                next_sample = time.monotonic() + self.args.sample_every_s
            time.sleep(0.5)
        return None

    def rows(self) -> list[str]:
        return [
            str(r[0])
            for r in self.query("SELECT event_uid FROM agent_logs WHERE event_category = 'hook'")
        ]

    def quarantined(self) -> set[str]:
        q = self.spool / "quarantine"
        return {
            n for n in os.listdir(q) if not n.endswith(".reason.json") and not n.startswith(".")
        }

    def check_oracle(self, accepted_kinds: dict[str, str]) -> None:
        r = self.report
        accepted = set(accepted_kinds)
        valid = {n for n, k in accepted_kinds.items() if k == "valid"}
        rows_list = self.rows()
        rows = set(rows_list)
        quarantined = self.quarantined()
        pending = {n for n in os.listdir(self.spool / "new") if not n.startswith(".")}
        now = time.time()
        tmp_old = [
            n for n in os.listdir(self.spool / "tmp")
            if now - (self.spool / "tmp" / n).stat().st_mtime > ORPHAN_TTL_S
        ]  # fmt: skip
        r.accepted, r.accepted_valid = len(accepted), len(valid)
        r.accepted_bad = len(accepted) - len(valid)
        r.rows, r.quarantined, r.pending_new = len(rows), len(quarantined), len(pending)
        r.tmp_files = len(os.listdir(self.spool / "tmp"))
        r.duplicate_rows = len(rows_list) - len(rows)
        r.oracle = {
            "nothing_lost": accepted <= rows | quarantined,
            "nothing_unknown": (rows | quarantined) <= accepted,
            "settled_once": not (rows & quarantined),
            "no_duplicates": r.duplicate_rows == 0,
            "drained": not pending and not tmp_old,
            "converged": self.converged(),
        }
        r.oracle_ok = all(r.oracle.values())
        r.checks = {
            "valid_events_are_rows": valid <= rows,
            "bad_files_quarantined": (accepted - valid) <= quarantined,
            "daemon_stopped_cleanly": r.daemon_final_exit == 0,
            "daemon_never_exited_by_itself": not r.daemon_unexpected_exits,
        }
        r.ok = r.oracle_ok and all(r.checks.values())
        if not r.ok:
            r.details.update(
                lost=sorted(accepted - rows - quarantined)[:10],
                unknown=sorted((rows | quarantined) - accepted)[:10],
                both=sorted(rows & quarantined)[:10],
                pending=sorted(pending)[:10],
                valid_not_rows=sorted(valid - rows)[:10],
            )
        log = self.logs / "daemon.log"
        for line in log.read_text(errors="replace").splitlines():
            if '"database_down"' in line:
                r.log_database_down += 1
            if '"db_rejected"' in line:
                r.log_db_rejected += 1
        if self.samples:
            r.samples = len(self.samples)
            r.rss_kb_min = min(s.rss_kb for s in self.samples)
            r.rss_kb_max = max(s.rss_kb for s in self.samples)
            r.fds_min = min(s.fds for s in self.samples)
            r.fds_max = max(s.fds for s in self.samples)
            r.details["per_incarnation"] = self.incarnations()

    def incarnations(self) -> list[dict[str, Any]]:
        """RSS and fds at the first and last sample of each daemon process (growth shows here)."""
        out: list[dict[str, Any]] = []
        by_pid: dict[int, list[Sample]] = {}
        for s in self.samples:
            by_pid.setdefault(s.pid, []).append(s)
        for pid, ss in by_pid.items():
            out.append({
                "pid": pid, "seconds": round(ss[-1].t - ss[0].t, 1),
                "rss_kb": [ss[0].rss_kb, ss[-1].rss_kb], "fds": [ss[0].fds, ss[-1].fds],
            })  # fmt: skip
        return out

    def cleanup(self) -> None:
        for w in self.writers:
            if w.poll() is None:
                w.kill()
                w.wait(10)
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.stop()
        if self.report.ok and not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def print_report(soak: Soak) -> None:
    r = soak.report
    samples = soak.samples
    step = max(1, len(samples) // TABLE_ROWS)
    print(f"{'t_s':>7} {'pid':>8} {'rss_MB':>7} {'fds':>5} {'backlog':>8} {'rows':>9}")
    for s in samples[::step]:
        rows = "-" if s.rows is None else str(s.rows)
        print(f"{s.t:>7.1f} {s.pid:>8} {s.rss_kb / 1024:>7.1f} {s.fds:>5} {s.backlog:>8} {rows:>9}")
    print(
        f"accepted {r.accepted} ({r.accepted_valid} valid, {r.accepted_bad} bad) | rows {r.rows} | "
        f"quarantined {r.quarantined} | write {r.write_eps} ev/s | ingest {r.ingest_eps} ev/s | "
        f"drain {r.drain_s} s | kills {r.daemon_kills} | pg restarts {r.pg_restarts} | "
        f"rss {r.rss_kb_min}-{r.rss_kb_max} kB | fds {r.fds_min}-{r.fds_max}"
    )
    print(f"oracle {'OK' if r.oracle_ok else 'FAILED'}: {r.oracle}; checks: {r.checks}")
    if not r.ok:
        print(f"kept for inspection: {soak.work}", file=sys.stderr)
    print(json.dumps(asdict(r), sort_keys=True), flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--kill-every-s", type=parse_range, default=(20.0, 60.0), metavar="A:B")
    p.add_argument("--pg-restart-every-s", type=float, default=180.0, help="0 = never")
    p.add_argument("--rate", type=float, default=25.0, help="events/s per writer (0 = flat out)")
    p.add_argument("--max-events-per-writer", type=int, default=200_000)
    p.add_argument("--drain-timeout-s", type=float, default=120.0)
    p.add_argument("--sample-every-s", type=float, default=SAMPLE_EVERY_S)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    # writer mode (internal)
    p.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--spool", help=argparse.SUPPRESS)
    p.add_argument("--project", help=argparse.SUPPRESS)
    p.add_argument("--accepted-log", help=argparse.SUPPRESS)
    p.add_argument("--max-events", type=int, default=200_000, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 30)
    if args.writer:
        return writer_main(args)
    print(
        f"[soak] {args.duration_s:.0f} s, {args.writers} writers at {args.rate}/s, kill -9 every "
        f"{args.kill_every_s[0]:g}-{args.kill_every_s[1]:g} s, PostgreSQL restart every "
        f"{args.pg_restart_every_s:g} s, seed {args.seed}, host {socket.gethostname()}",
        flush=True,
    )

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds into the cleanup below (writers, daemon, cluster)

    signal.signal(signal.SIGTERM, on_term)
    soak = Soak(args)
    try:
        soak.run()
    finally:
        soak.cleanup()
        print_report(soak)
    return 0 if soak.report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
