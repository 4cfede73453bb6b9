#!/usr/bin/env bash
# Smoke run of the issue-7 benchmarks at small sizes (about 35-45 s on 2 busy cores). Each script
# prints its table and one JSON line; no timing is asserted: a script exits non-zero only
# when the daemon crashed or a correctness check failed (lost events, wrong token sums).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}

echo "== bench_steady (200 events/s for 3 s)"
"$py" tests/bench/bench_steady.py --rate 200 --duration-s 3
echo "== bench_backfill (8 MB of transcripts)"
"$py" tests/bench/bench_backfill.py --mb 8
echo "== bench_rss (3 files of 1 MiB per scenario, 2 of 2 MiB)"
"$py" tests/bench/bench_rss.py --files 3 --huge-mb 2
echo "== bench_idle (3 s)"
"$py" tests/bench/bench_idle.py --seconds 3 --settle-s 1
echo "== bench_views (20k responses, 50k events)"
"$py" tests/bench/bench_views.py --responses 20000 --events 50000 --repeat 3
echo "== bench_reports (5k responses)"
"$py" tests/bench/bench_reports.py --rows 5000 --repeat 1
