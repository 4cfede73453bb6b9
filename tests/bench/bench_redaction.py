"""Redaction cost per event on a realistic payload mix, and on the payloads that were super-linear.

    .venv/bin/python tests/bench/bench_redaction.py [--rounds 20] [--newlines 1000,3000,10000,30000]

The mix: every recorded Claude Code hook payload (fixtures, 164 files), plus PostToolUse
events whose tool output is a 4 KB and a 60 KB log, plus payloads carrying secrets (plain and
spelled with JSON escapes). Prints µs/event (the fastest round: other load only adds) for the default Redactor,
the same mix through `events.parse` (what the daemon runs per file), and the time to redact
`authorization` followed by N newlines (issue 12 item 6; before the fix 30,000 took about a
minute). Run it on two checkouts to compare: the numbers of one run are its own baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.events import parse  # noqa: E402
from daemon.redaction import Redactor  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks" / "all"
LOG_LINE = "2026-12-02T10:00:00.123Z INFO worker[4211]: processed batch id=93121 rows=500 ms=12.5\n"


def mix() -> list[tuple[str, bytes]]:
    """(event name, payload JSON text) of the realistic mix."""
    out = [
        (f.stem.split("_", 1)[1], f.read_bytes())
        for scenario in sorted(FIXTURES.iterdir())
        for f in sorted(scenario.iterdir())
    ]
    for size in (4_000, 60_000):
        stdout = (LOG_LINE * (size // len(LOG_LINE) + 1))[:size]
        payload = {
            "hook_event_name": "PostToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "cat /var/log/worker.log"},
            "tool_response": {"stdout": stdout, "stderr": "", "interrupted": False},
        }
        out += [("PostToolUse", json.dumps(payload).encode())] * 5
    secrets = [
        '{"prompt":"use sk-ant-api03-Jq7vR2kLm9Np4Tz1Wc8Yb3Hd6Jf0Gs5Ae2Uk7Io1Pl9Mn3 now"}',
        '{"prompt":"use sk\\u002dant-api03-Jq7vR2kLm9Np4Tz1Wc8Yb3Hd6Jf0Gs5Ae2Uk7Io1Pl9Mn3 now"}',
        '{"tool_input":{"command":"export AWS_ACCESS_KEY_ID=\\u0041KIAIOSFODNN7EXAMPLE"}}',
        '{"env":{"password" : "hunter2hunter2","token":"ghp\\u005fabcdefghijklmnopqrstuvwxyz0123456789"}}',
    ]
    out += [("UserPromptSubmit", s.encode()) for s in secrets]
    return out


def per_event_us(fn: object, events: list[tuple[str, bytes]], rounds: int) -> float:
    samples = []
    call = fn
    for _ in range(rounds):
        t0 = time.perf_counter()
        for name, body in events:
            call(name, body)  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) / len(events) * 1e6)
    return min(samples)  # the least disturbed round: the machine is shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--newlines", default="1000,3000,10000,30000")
    args = ap.parse_args()
    redactor = Redactor()
    events = mix()
    size = sum(len(b) for _, b in events)
    print(f"mix: {len(events)} payloads, {size / 1e3:.0f} KB, {args.rounds} rounds ({REPO})")
    redact = per_event_us(lambda n, b: redactor.apply(b, n), events, args.rounds)
    print(f"redaction: {redact:.1f} us/event")
    full = per_event_us(
        lambda n, b: parse("x", b, default_host="h", mtime_ns=1, redactor=redactor),
        events,
        args.rounds,
    )
    print(f"events.parse with redaction: {full:.1f} us/event")
    for n in (int(x) for x in args.newlines.split(",") if x):
        body = json.dumps({"tool_response": {"stdout": "authorization" + "\n" * n}}).encode()
        t0 = time.perf_counter()
        redactor.apply(body, "PostToolUse")
        ms = (time.perf_counter() - t0) * 1e3
        print(f"authorization + {n} newlines ({len(body) / 1e3:.0f} KB): {ms:.1f} ms")


if __name__ == "__main__":
    main()
