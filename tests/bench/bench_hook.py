"""Benchmark of the spool hook against `true` and a bare `cat`, with a 2 KB and a 1 MB event.

Not a test: run it by hand or as a CI smoke step.

    .venv/bin/python tests/bench/bench_hook.py            # 300 runs per case
    .venv/bin/python tests/bench/bench_hook.py --n 20     # quick smoke run

Each run is a fresh process fed the event on stdin, timed from spawn to exit, as Claude Code
would run it (minus Claude Code's own `sh -c`). Cases are interleaved run by run so that
background noise spreads evenly. The hook uses its default fsync policy (`full`), writing
into a spool on the same disk as the repository unless --spool-dir says otherwise.
Prints a table (p50, p95 and the p50 ratio to `true` fed the same event) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "hooks" / "session-db-hook"
FIXTURE = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks" / "PostToolUse.json"
SMALL_BYTES = 2 * 1024
LARGE_BYTES = 2**20
WARMUP_RUNS = 3


@dataclass
class Case:
    """One command to time, with the spool it writes into (None for the baselines)."""

    name: str
    argv: list[str]
    spool: Path | None
    samples_ns: dict[int, list[int]] = field(default_factory=dict)


def make_event(size: int) -> bytes:
    """A real PostToolUse payload, its Bash stdout padded so the JSON is exactly `size` bytes."""
    event = json.loads(FIXTURE.read_bytes())
    event["tool_response"]["stdout"] = ""
    base = len(json.dumps(event).encode())
    if base > size:
        raise SystemExit(f"fixture {FIXTURE} is already {base} bytes, more than {size}")
    line = "drwxr-xr-x 2 user user 4096 Nov 23 12:14 some-directory-name\n"
    filler = (line * (size // len(line) + 1))[: size - base]
    event["tool_response"]["stdout"] = filler
    data = json.dumps(event).encode()
    # Each "\n" in the filler serialises as two bytes; trim until the size matches.
    while len(data) > size:
        filler = filler[: len(filler) - (len(data) - size)]
        event["tool_response"]["stdout"] = filler
        data = json.dumps(event).encode()
    # Top up with one-byte characters to hit the size exactly.
    event["tool_response"]["stdout"] = filler + "." * (size - len(data))
    return json.dumps(event).encode()


def percentile(samples: list[int], q: int) -> float:
    """The q-th percentile (inclusive method) in milliseconds."""
    if q == 50:
        return statistics.median(samples) / 1e6
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] / 1e6


def run_once(case: Case, payload: bytes, env: dict[str, str]) -> int:
    """Time one run in ns; exit with a message if the hook fails or prints anything."""
    start = time.perf_counter_ns()
    result = subprocess.run(case.argv, input=payload, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter_ns() - start
    if case.spool is not None:
        if (result.returncode, result.stdout, result.stderr) != (0, b"", b""):
            raise SystemExit(f"{case.name}: exit {result.returncode}, stderr {result.stderr!r}")
        new = case.spool / "new"
        files = list(new.iterdir())
        if len(files) != 1:
            raise SystemExit(f"{case.name}: expected one spool file, found {len(files)}")
        files[0].unlink()  # untimed; keeps the spool from growing to gigabytes
    return elapsed


def bash_version(bash: str) -> str:
    """bash's own version string, for the record."""
    out = subprocess.run(
        [bash, "-c", "echo $BASH_VERSION"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="runs per case and event size (>= 2)")
    parser.add_argument(
        "--spool-dir", type=Path, default=None, help="where the temporary spools go"
    )
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2")

    parent = args.spool_dir if args.spool_dir is not None else Path.cwd()
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=".bench-hook-", dir=parent))
    env = {k: v for k, v in os.environ.items() if k not in ("SESSION_DB_SPOOL", "SESSION_DB_FSYNC")}
    true = shutil.which("true") or "/bin/true"
    bash = shutil.which("bash")

    cases = [
        Case("true", [true], None),
        Case("sh -c 'cat >/dev/null'", ["/bin/sh", "-c", "cat >/dev/null"], None),
        Case(
            "hook (/bin/sh)",
            ["/bin/sh", str(HOOK), "--spool", str(root / "sh"), "PostToolUse"],
            root / "sh",
        ),
    ]
    if bash:
        spool = root / "bash"
        cases.append(
            Case("hook (bash)", [bash, str(HOOK), "--spool", str(spool), "PostToolUse"], spool)
        )
    events = {SMALL_BYTES: make_event(SMALL_BYTES), LARGE_BYTES: make_event(LARGE_BYTES)}

    try:
        for case in cases:
            for size, payload in events.items():
                case.samples_ns[size] = []
                for _ in range(WARMUP_RUNS):
                    run_once(case, payload, env)
        for _ in range(args.n):
            for size, payload in events.items():
                for case in cases:
                    case.samples_ns[size].append(run_once(case, payload, env))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = []
    for size in events:
        base = percentile(cases[0].samples_ns[size], 50)
        for case in cases:
            p50 = percentile(case.samples_ns[size], 50)
            p95 = percentile(case.samples_ns[size], 95)
            rows.append(
                {
                    "case": case.name,
                    "event_bytes": size,
                    "p50_ms": round(p50, 3),
                    "p95_ms": round(p95, 3),
                    "ratio_p50_to_true": round(p50 / base, 2),
                }
            )

    print(f"n={args.n} per case; spool under {parent}; fsync policy: full (hook default)")
    print(f"{'case':<26} {'event':>7} {'p50 ms':>8} {'p95 ms':>8} {'x true':>7}")
    for row in rows:
        label = "2 KB" if row["event_bytes"] == SMALL_BYTES else "1 MB"
        print(
            f"{row['case']:<26} {label:>7} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f}"
            f" {row['ratio_p50_to_true']:>7.2f}"
        )
    record = {
        "bench": "hook",
        "n": args.n,
        "fsync": "full",
        "spool_parent": str(parent),
        "platform": platform.platform(),
        "bash": bash_version(bash) if bash else None,
        "sh": os.path.realpath("/bin/sh"),
        "results": rows,
    }
    print(json.dumps(record, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
