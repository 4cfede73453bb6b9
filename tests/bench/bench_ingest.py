"""Sustained ingest: N spool files of real-shaped ~1 KB events → committed rows, files gone,
against `psql \\copy` of the same rows into the same table, in the same run.

    .venv/bin/python tests/bench/bench_ingest.py [--n 100000] [--spool-dir /dev/shm/...]

Uses a private embedded cluster in a temporary directory (or SESSION_DB_URL). Prints a table and
one JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from daemon import config, migrations
from daemon.agent_observations import observe_agents
from daemon.cluster import EmbeddedCluster
from daemon.event_rows import AgentIds, AgentKey, copy_text
from daemon.events import Event, parse, split_header
from daemon.ingest import Ingestor
from daemon.redaction import Redactor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.bench._common import TreeCpu, postmaster_pid
from tests.support.spoolwriter import encode

FIXTURES = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "claude-code-2.1.330"
    / "hooks"
    / "all"
    / "main"
)


def payloads() -> list[tuple[str, dict[str, object]]]:
    out = []
    for f in sorted(FIXTURES.iterdir()):
        obj = orjson.loads(f.read_bytes())
        obj.pop("transcript_path", None)  # keep the bench about events, not transcripts
        out.append((f.stem.split("_", 1)[1], obj))
    return out


def generate(spool: Path, n: int) -> list[bytes]:
    """Write n spool files (no fsync: we time ingest, not the writer); return the payloads."""
    (spool / "new").mkdir(parents=True, exist_ok=True)
    (spool / "tmp").mkdir(parents=True, exist_ok=True)
    base = payloads()
    bodies = []
    t0 = time.time_ns()
    for i in range(n):
        event, obj = base[i % len(base)]
        obj = {
            **obj,
            "session_id": f"bench-{i // 200}",
            "pad": "x" * max(0, 1000 - len(orjson.dumps(obj))),
        }
        body = orjson.dumps(obj)
        bodies.append(body)
        name = f"{t0 + i}.P{os.getpid()}R{i:016x}.bench"
        (spool / "new" / name).write_bytes(
            encode(body, event=event, received_ns=t0 + i, host="bench")
        )
    return bodies


def stages(spool_path: Path, n: int, field_cap: int) -> dict[str, float]:
    """Each stage of ingest alone, single-threaded, in µs per event (min of 3 runs where the
    stage can be repeated): the micro-benchmark behind the per-stage table in
    docs/performance.md. Destroys the spool's files (the unlink stage)."""
    spool = Spool(spool_path)
    spool.ensure()
    redactor = Redactor()
    entries = spool.scan()
    n = len(entries)
    out: dict[str, float] = {}

    def best(fn: Callable[[], object], repeat: int = 3) -> float:
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t)
        return round(min(runs) / n * 1e6, 2)

    out["scan (scandir + lstat)"] = best(spool.scan)
    datas: list[bytes] = []
    out["open + read + close"] = best(
        lambda: datas.__setitem__(slice(None), [spool.read(e.name, e.size) for e in entries])
    )
    out["parse, redaction off"] = best(
        lambda: [parse(e.name, d, default_host="bench", mtime_ns=e.mtime_ns,
                       field_cap_bytes=field_cap) for e, d in zip(entries, datas, strict=True)]
    )  # fmt: skip
    events: list[Event] = []
    out["parse, redaction on"] = best(
        lambda: events.__setitem__(slice(None), [
            parse(e.name, d, default_host="bench", mtime_ns=e.mtime_ns,
                  field_cap_bytes=field_cap, redactor=redactor)
            for e, d in zip(entries, datas, strict=True)])
    )  # fmt: skip
    bodies = [split_header(d)[1] for d in datas]
    out["redaction alone (Redactor.apply)"] = best(
        lambda: [redactor.apply(b, "PostToolUse") for b in bodies]
    )
    ids: dict[AgentKey, AgentIds] = {
        (e.claude_session_id, e.claude_agent_id): (uuid.uuid4(), uuid.uuid4())
        for e in events
        if e.claude_session_id
    }
    out["COPY text (copy_text)"] = best(lambda: copy_text(events, ids))
    out["agents (observe_agents)"] = best(lambda: observe_agents(events))
    out["unlink"] = best(lambda: spool.remove([e.name for e in entries]), repeat=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000, help="spool files (default 100000)")
    ap.add_argument(
        "--spool-dir", type=Path, help="where to put the spool (default: /dev/shm if present)"
    )
    ap.add_argument(
        "--profile",
        type=Path,
        help="also profile the session-db drain with pyinstrument; write its text report here",
    )
    ap.add_argument(
        "--stages",
        type=int,
        default=20_000,
        help="files for the per-stage micro-benchmark (0: skip it; default 20000)",
    )
    ap.add_argument(
        "--no-redact", action="store_true", help="redaction off (the default setting is on)"
    )
    ap.add_argument(
        "--parse-workers",
        type=int,
        default=config.PARSE_WORKERS,
        help="worker processes for read+parse+redaction (default: the daemon's default)",
    )
    args = ap.parse_args()
    base = args.spool_dir or (
        Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    )
    with (
        tempfile.TemporaryDirectory(prefix="sdb-bench-", dir="/tmp") as tmp,
        tempfile.TemporaryDirectory(prefix="sdb-spool-", dir=base) as spool_tmp,
    ):
        cluster = None
        url = os.environ.get("SESSION_DB_URL")
        if not url:
            cluster = EmbeddedCluster(Path(tmp) / "state")
            cluster.ensure_started()
            url = cluster.url()
        try:
            migrations.upgrade(url)
            stage_us: dict[str, float] = {}
            if args.stages:
                generate(Path(spool_tmp) / "stages", args.stages)
                stage_us = stages(Path(spool_tmp) / "stages", args.stages, config.FIELD_CAP_BYTES)
            spool_path = Path(spool_tmp) / "spool"
            t = time.perf_counter()
            bodies = generate(spool_path, args.n)
            gen_s = time.perf_counter() - t

            # Baseline: psql \copy of the same rows into the same table.
            copy_file = Path(tmp) / "rows.tsv"
            with copy_file.open("w") as f:
                for i, body in enumerate(bodies):
                    text = (
                        body.decode()
                        .replace("\\", "\\\\")
                        .replace("\t", "\\t")
                        .replace("\n", "\\n")
                    )
                    f.write(
                        f"copy-{i}\tbench\thook\tPostToolUse\t2026-11-23 00:00:00+00\t{text}\t{len(body)}\n"
                    )
            psql = shutil.which("psql") or "psql"
            t = time.perf_counter()
            subprocess.run(
                [psql, "-X", "-q", "-d", url, "-c",
                 f"\\copy agent_logs (event_uid, host, event_category, event_type, occurred_at, payload, payload_bytes)"
                 f" FROM '{copy_file}'"],
                check=True,
            )  # fmt: skip
            copy_s = time.perf_counter() - t
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE agent_logs")

            spool = Spool(spool_path)
            spool.ensure()
            sink = PostgresSink(
                url,
                host="bench",
                connect_timeout_s=5,
                statement_timeout_ms=60_000,
                lock_timeout_ms=10_000,
            )
            ingestor = Ingestor(
                spool,
                sink,
                host="bench",
                batch_max_files=config.BATCH_MAX_FILES,
                batch_max_bytes=config.BATCH_MAX_BYTES,
                foreign_grace_s=0,
                field_cap_bytes=config.FIELD_CAP_BYTES,
                redactor=Redactor(enabled=not args.no_redact),  # the daemon's default: on
                parse_workers=args.parse_workers,
            )
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
                profiler.start()
            if ingestor.pool is not None:
                ingestor.pool.start()  # a running daemon started its workers long ago
            pg_cpu = TreeCpu(postmaster_pid(cluster.data_dir) if cluster is not None else None)
            own_cpu = TreeCpu(os.getpid())  # this process and its parse workers
            pg_cpu.start()
            own_cpu.start()
            t = time.perf_counter()
            stats = ingestor.drain()
            ingest_s = time.perf_counter() - t
            server_cpu_s = pg_cpu.stop() if cluster is not None else None
            own_cpu_s = own_cpu.stop()
            ingestor.close()
            if profiler is not None:
                profiler.stop()
                args.profile.write_text(profiler.output_text(show_all=False, timeline=False))
            sink.close()
            with psycopg.connect(url) as conn:
                rows = conn.execute("SELECT count(*) FROM agent_logs").fetchone()[0]  # type: ignore[index]
            left = len(os.listdir(spool.new))
        finally:
            if cluster is not None:
                cluster.stop()
    result = {
        "bench": "ingest", "n": args.n, "spool_dir": str(base), "generate_s": round(gen_s, 2),
        "redact": not args.no_redact, "parse_workers": args.parse_workers,
        "copy_rows_per_s": round(args.n / copy_s), "ingest_rows_per_s": round(args.n / ingest_s),
        "ratio": round(copy_s / ingest_s, 3), "rows": rows, "files_left": left, "batches": stats.batches,
        "daemon_cpu_us_per_row": round(own_cpu_s / args.n * 1e6, 1),
        "server_cpu_us_per_row": None if server_cpu_s is None else round(server_cpu_s / args.n * 1e6, 1),
        "stages_us_per_event": stage_us,
    }  # fmt: skip
    if stage_us:
        print(f"{'stage (single thread)':<36}{'µs/event':>10}")
        for stage, us in stage_us.items():
            print(f"{stage:<36}{us:>10}")
    print(f"{'case':<28}{'rows/s':>10}")
    baseline = "psql \\copy (baseline)"
    print(f"{baseline:<28}{result['copy_rows_per_s']:>10}")
    print(f"{'spool → rows (session-db)':<28}{result['ingest_rows_per_s']:>10}")
    print(f"ratio {result['ratio']} (target ≥ 0.6); rows {rows}, files left {left}")
    print(
        f"CPU per row: session-db {result['daemon_cpu_us_per_row']} µs (all threads), "
        f"PostgreSQL {result['server_cpu_us_per_row']} µs"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
