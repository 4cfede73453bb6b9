"""Cost views at team scale: each README cost query next to reading the same rows straight
from the tables, in the same run on the same data.

Loads --responses token_usage rows (each size in turn, e.g. `--responses 1000000 10000000`) and
--events agent_logs rows with generate_series (no Python loops): 90 days of sessions of
RESPONSES_PER_SESSION responses, a quarter of them by a subagent, 8 models, one workflow session
per WORKFLOW_AGENTS Claude sessions. The rows go through the real write path (the pricing and
rollup triggers); the load time is printed too. Then every query runs REPEAT times after a
warm-up and its median is compared with its straight read:

  target                                   view                       straight read
  one Claude session's cost (≤ 3×)         claude_session_costs       token_usage by claude_session_id
  one agent's cost (≤ 3×)                  agent_costs                token_usage by agent_id
  a week of daily_costs (≤ 3×)             daily_costs                token_usage by occurred_at, grouped
  all of daily_costs, 90 days (< 1 s)      daily_costs                (absolute)

Defaults are small so CI can smoke it; the machine is shared, so say which sizes you ran.
Usage: python tests/bench/bench_views.py [--responses N ...] [--events N] [--url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from tests.bench._common import database, emit_json, print_table  # noqa: E402

DEFAULT_RESPONSES = (20_000,)
DEFAULT_EVENTS = 50_000
RESPONSES_PER_SESSION = 100
EVENTS_PER_SESSION = 100
WORKFLOW_AGENTS = 10  # Claude sessions per workflow session
DAYS = 90
REPEAT = 7
LOAD_CHUNK_ROWS = 1_000_000  # rows per INSERT statement (one transaction each)
RATIO_TARGET = 3.0  # view ≤ 3 × the straight read
ALL_DAYS_TARGET_MS = 1000.0
START = "2026-08-01 00:00:00+00"
MODELS = (
    "claude-sonnet-4-5-20250929", "claude-opus-4-8", "claude-haiku-4-5-20251001", "claude-sonnet-5",
    "claude-opus-5-5", "claude-fable-5-2", "claude-sonnet-5-5", "us.anthropic.claude-opus-5-v1:0",
)  # fmt: skip

RESET = """
TRUNCATE token_usage, usage_hourly, agent_logs, agents, sessions CASCADE
"""
LOAD_SESSIONS = """
INSERT INTO sessions (host, slug) SELECT 'bench', 'wf-' || w FROM generate_series(0, %(workflows)s - 1) w
"""
LOAD_AGENTS = """
INSERT INTO agents (host, sdk_session_id, claude_agent_id, session_id, status)
SELECT 'bench', 'cs-' || s, CASE WHEN sub THEN 'sub-' || s END, w.id, 'complete'
FROM generate_series(0, %(sessions)s - 1) s CROSS JOIN (VALUES (false), (true)) v(sub)
JOIN sessions w ON w.slug = 'wf-' || (s / %(per_workflow)s)
"""
MAP_AGENTS = """
CREATE TEMPORARY TABLE bench_agents AS
SELECT substr(sdk_session_id, 4)::int AS s, claude_agent_id IS NOT NULL AS sub, id FROM agents;
CREATE UNIQUE INDEX ON bench_agents (s, sub);
ANALYZE bench_agents
"""
# Response g belongs to session g / RESPONSES_PER_SESSION (contiguous in time, as real sessions).
LOAD_RESPONSES = """
INSERT INTO token_usage (message_id, request_id, claude_session_id, claude_agent_id, agent_id, model,
    input_tokens, output_tokens, cache_write_5m_tokens, cache_read_tokens, occurred_at, host)
SELECT 'msg_' || g, 'req_' || g, 'cs-' || (g / %(per_session)s),
    CASE WHEN g %% 4 = 0 THEN 'sub-' || (g / %(per_session)s) END, a.id,
    (%(models)s::text[])[1 + (g / %(per_session)s) %% %(n_models)s],
    1000 + g %% 997, 100 + g %% 389, 2000 + g %% 1999, 30000 + g %% 7919,
    %(start)s::timestamptz + (g::float8 / %(total)s * %(days)s) * interval '1 day', 'bench'
FROM generate_series(%(lo)s, %(hi)s - 1) g
JOIN bench_agents a ON a.s = g / %(per_session)s AND a.sub = (g %% 4 = 0)
"""
LOAD_EVENTS = """
INSERT INTO agent_logs (event_uid, host, claude_session_id, agent_id, event_category, event_type,
    occurred_at, payload, payload_bytes)
SELECT 'ev' || g || '.bench', 'bench', 'cs-' || a.s, a.id, 'hook',
    (ARRAY['UserPromptSubmit', 'PreToolUse', 'PostToolUse', 'Stop'])[1 + g %% 4],
    %(start)s::timestamptz + (g::float8 / %(total)s * %(days)s) * interval '1 day',
    CASE WHEN g %% 4 = 0 THEN jsonb_build_object('session_title', 'title ' || a.s) ELSE '{}' END, 40
FROM generate_series(%(lo)s, %(hi)s - 1) g
CROSS JOIN LATERAL (SELECT floor(g::float8 / %(total)s * %(sessions)s)::int AS es) x
JOIN bench_agents a ON a.s = least(x.es, %(sessions)s - 1) AND NOT a.sub
"""

# (name, view query, straight read of the same rows, target: ratio or absolute ms)
QUERIES: list[tuple[str, str, str | None, str]] = [
    (
        "one Claude session's cost",
        "SELECT cost_usd, responses, input_tokens FROM claude_session_costs WHERE claude_session_id = %(sid)s",
        "SELECT sum(cost_usd), count(*), sum(input_tokens) FROM token_usage WHERE claude_session_id = %(sid)s",
        "ratio",
    ),
    (
        "one agent's cost",
        "SELECT cost_usd, responses FROM agent_costs WHERE agent_id = %(agent)s",
        "SELECT sum(cost_usd), count(*) FROM token_usage WHERE agent_id = %(agent)s",
        "ratio",
    ),
    (
        "README: agents of a session",
        "SELECT coalesce(claude_agent_id, '(main)'), agent_type, responses, round(cost_usd, 6), models"
        " FROM agent_costs WHERE claude_session_id = %(sid)s",
        "SELECT agent_id, count(*), sum(cost_usd), array_agg(DISTINCT model) FROM token_usage"
        " WHERE claude_session_id = %(sid)s GROUP BY agent_id",
        "ratio",
    ),
    (
        "one workflow session's cost",
        "SELECT cost_usd, responses, agents FROM session_costs WHERE session_id = %(wf)s",
        "SELECT sum(t.cost_usd), count(*), count(DISTINCT a.id) FROM agents a"
        " JOIN token_usage t ON t.agent_id = a.id WHERE a.session_id = %(wf)s",
        "ratio",
    ),
    (
        "a week of daily_costs",
        "SELECT day_utc, model, responses, round(cost_usd, 4) FROM daily_costs"
        " WHERE day_utc >= %(day)s AND day_utc < %(day)s::date + 7 ORDER BY 1, 2",
        "SELECT (occurred_at AT TIME ZONE 'UTC')::date, model, count(*), round(sum(cost_usd), 4)"
        " FROM token_usage WHERE occurred_at >= %(day)s::date AT TIME ZONE 'UTC'"
        " AND occurred_at < (%(day)s::date + 7) AT TIME ZONE 'UTC' GROUP BY 1, 2 ORDER BY 1, 2",
        "ratio",
    ),
    (
        "all of daily_costs (README)",
        "SELECT day_utc, model, responses, round(cost_usd, 4) FROM daily_costs ORDER BY 1, 2",
        "SELECT (occurred_at AT TIME ZONE 'UTC')::date, model, count(*), round(sum(cost_usd), 4)"
        " FROM token_usage GROUP BY 1, 2 ORDER BY 1, 2",
        "absolute",
    ),
    (
        "README: every Claude session",
        "SELECT claude_session_id, round(cost_usd, 6), responses, subagents FROM claude_session_costs"
        " ORDER BY first_activity_at",
        "SELECT claude_session_id, round(sum(cost_usd), 6), count(*), count(DISTINCT claude_agent_id)"
        " FROM token_usage GROUP BY 1 ORDER BY min(occurred_at)",
        "none",
    ),
]


def timed_ms(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any], repeat: int) -> float:
    conn.execute(sql, params).fetchall()  # warm-up (plans, cache)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        conn.execute(sql, params).fetchall()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def load(conn: psycopg.Connection[Any], responses: int, events: int) -> dict[str, float]:
    sessions = max(1, responses // RESPONSES_PER_SESSION)
    workflows = max(1, sessions // WORKFLOW_AGENTS)
    took: dict[str, float] = {}
    conn.execute(RESET)
    conn.execute(LOAD_SESSIONS, {"workflows": workflows})
    conn.execute(LOAD_AGENTS, {"sessions": sessions, "per_workflow": WORKFLOW_AGENTS})
    conn.execute("DROP TABLE IF EXISTS bench_agents")
    for statement in MAP_AGENTS.split(";"):
        conn.execute(statement)
    common = {"start": START, "days": DAYS, "sessions": sessions}
    t0 = time.perf_counter()
    for lo in range(0, responses, LOAD_CHUNK_ROWS):
        conn.execute(
            LOAD_RESPONSES,
            {**common, "lo": lo, "hi": min(responses, lo + LOAD_CHUNK_ROWS), "total": responses,
             "per_session": RESPONSES_PER_SESSION, "models": list(MODELS), "n_models": len(MODELS)},
        )  # fmt: skip
    took["load_responses_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for lo in range(0, events, LOAD_CHUNK_ROWS):
        conn.execute(
            LOAD_EVENTS,
            {**common, "lo": lo, "hi": min(events, lo + LOAD_CHUNK_ROWS), "total": events},
        )
    took["load_events_s"] = time.perf_counter() - t0
    conn.execute("VACUUM ANALYZE")
    return took


def run(url: str, responses: int, events: int, repeat: int) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True) as conn:
        took = load(conn, responses, events)
        sessions = max(1, responses // RESPONSES_PER_SESSION)
        mid = sessions // 2
        (agent,) = conn.execute(
            "SELECT id FROM agents WHERE sdk_session_id = %s AND claude_agent_id IS NULL",
            (f"cs-{mid}",),
        ).fetchone()  # type: ignore[misc]
        (wf,) = conn.execute("SELECT session_id FROM agents WHERE id = %s", (agent,)).fetchone()  # type: ignore[misc]
        params = {"sid": f"cs-{mid}", "agent": agent, "wf": wf, "day": "2026-09-10"}
        results = []
        for name, view_sql, straight_sql, target in QUERIES:
            view_ms = timed_ms(conn, view_sql, params, repeat)
            straight_ms = timed_ms(conn, straight_sql, params, repeat) if straight_sql else None
            ratio = view_ms / straight_ms if straight_ms else None
            ok = {
                "ratio": ratio is not None and ratio <= RATIO_TARGET,
                "absolute": view_ms < ALL_DAYS_TARGET_MS,
                "none": None,
            }[target]
            results.append({
                "responses": responses, "events": events, "query": name, "view_ms": round(view_ms, 2),
                "straight_ms": None if straight_ms is None else round(straight_ms, 2),
                "ratio": None if ratio is None else round(ratio, 2), "target": target, "ok": ok,
                **{k: round(v, 1) for k, v in took.items()},
            })  # fmt: skip
    return results


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--responses", type=int, nargs="+", default=list(DEFAULT_RESPONSES))
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    ap.add_argument("--repeat", type=int, default=REPEAT)
    ap.add_argument(
        "--url", help="a database to migrate and fill (default: a private embedded cluster)"
    )
    ap.add_argument("--json", action="store_true", help="one JSON line per measurement as well")
    ap.add_argument(
        "--check-targets",
        action="store_true",
        help="exit 1 when a target is missed (not for smoke runs)",
    )
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-views-") as tmp,
        database(Path(tmp), args.url) as (url, _),
    ):
        for n in args.responses:
            rows += run(url, n, args.events, args.repeat)
    print_table(
        ["query", "responses", "events", "view ms", "straight ms", "ratio", "target", "ok"],
        [[r["query"], r["responses"], r["events"], r["view_ms"], r["straight_ms"], r["ratio"],
          {"ratio": f"≤ {RATIO_TARGET}×", "absolute": f"< {ALL_DAYS_TARGET_MS:.0f} ms", "none": "-"}[r["target"]],
          {True: "yes", False: "NO", None: "-"}[r["ok"]]] for r in rows],
    )  # fmt: skip
    loads = {
        (r["responses"], r["events"]): (r["load_responses_s"], r["load_events_s"]) for r in rows
    }
    for (n, e), (lr, le) in loads.items():
        print(f"load: {n} responses in {lr} s (pricing and rollup triggers), {e} events in {le} s")
    if args.json:
        for r in rows:
            emit_json(r)
    missed = [r["query"] for r in rows if r["ok"] is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if missed and args.check_targets else 0


if __name__ == "__main__":
    sys.exit(main())
