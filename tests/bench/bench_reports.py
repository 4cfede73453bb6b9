"""How long `session-db report` takes over many token_usage rows (issue 14: daily under 1 s at 1M).

Generates --rows responses with SQL (a year of history; sessions of 200 responses, each on one
host, project directory (of 20) and branch (of 5) with its main model (of 2) and Haiku for 1 in
10), then times each report kind through daemon.reports, the same code the CLI runs.
Baseline in the same run: a plain `SELECT count(*) FROM token_usage`.

  .venv/bin/python tests/bench/bench_reports.py [--rows 1000000] [--url URL] [--repeat 3]

Without --url a private embedded cluster is created under a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench._common import database, emit_json, print_table  # noqa: E402

GENERATE = """
INSERT INTO token_usage (message_id, request_id, claude_session_id, model, input_tokens,
    output_tokens, cache_write_5m_tokens, cache_read_tokens, occurred_at, host, cwd, git_branch)
SELECT 'bench-' || i, 'r', 'session-' || s,
    CASE WHEN i %% 10 = 0 THEN 'claude-haiku-4-5'
         ELSE (ARRAY['claude-sonnet-4-5-20250929', 'claude-opus-4-6'])[1 + s %% 2] END,
    10 + i %% 500, 100 + i %% 2000, i %% 3000, 20000 + i %% 50000,
    now() - make_interval(secs => i * %(step_s)s), 'host-' || (s %% 2),
    '/home/dev/project-' || (s %% 20), 'branch-' || (s %% 5)
FROM generate_series(1, %(rows)s) AS i, LATERAL (SELECT i / 200 AS s) k
"""
YEAR_S = 365 * 24 * 3600


def timed(fn: object, repeat: int) -> float:
    """The best of `repeat` runs, in ms."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--url")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import psycopg

    from daemon import reports

    with tempfile.TemporaryDirectory() as tmp, database(Path(tmp) / "state", args.url) as (url, _):
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            conn.execute(GENERATE, {"rows": args.rows, "step_s": YEAR_S / args.rows})
            conn.execute("ANALYZE")
            gen_s = time.perf_counter() - t0
            rows: list[tuple[str, float, float | None]] = []
            base = timed(lambda: conn.execute("SELECT count(*) FROM token_usage").fetchall(), args.repeat)
            rows.append(("baseline: count(*) token_usage", base, None))
            cases = [
                ("daily", reports.Filters(tz="Europe/Berlin")),
                ("daily --breakdown", reports.Filters(tz="Europe/Berlin", breakdown=True)),
                ("daily --since (last 7 days)", reports.Filters(
                    tz="UTC", since=(conn.execute("SELECT current_date - 7").fetchone() or [None])[0])),
                ("monthly", reports.Filters(tz="UTC")),
                ("models", reports.Filters(tz="UTC")),
                ("projects --branches", reports.Filters(tz="UTC", branches=True)),
                ("session", reports.Filters(tz="UTC")),
                ("blocks", reports.Filters(tz="UTC")),
                ("blocks --active", reports.Filters(tz="UTC", active=True)),
            ]  # fmt: skip
            for label, f in cases:
                kind = label.split()[0]
                ms = timed(lambda kind=kind, f=f: reports.build(conn, kind, f), args.repeat)
                rows.append((f"report {label}", ms, round(ms / base, 1)))
        print(f"token_usage rows: {args.rows:,} (generated in {gen_s:.1f} s); best of {args.repeat}")
        print_table(["case", "ms", "x baseline"], [(c, round(ms, 1), x) for c, ms, x in rows])
        emit_json({"bench": "reports", "rows": args.rows, "results": {c: round(ms, 1) for c, ms, _ in rows}})


if __name__ == "__main__":
    main()
