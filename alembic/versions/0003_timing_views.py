"""Timing views over agent_logs: tool_calls, tool_stats, turns, slash_commands, agent_timings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Pairing rules (docs/design/claude-code.md §5, §15, §16):
- A tool call is keyed by (claude_session_id, tool_use_id), never by tool name: ids repeat across
  sessions. Its first PreToolUse starts it, its first PostToolUse/PostToolUseFailure ends it.
- Denied calls get no Post event. The first PostToolBatch of the session whose tool_calls[] names
  the tool_use_id closes them (or a PermissionDenied event, auto mode). Without a batch yet, a
  PermissionRequest (it carries no tool_use_id) of the same session with the same tool_name and
  equal tool_input, received after the PreToolUse, marks the call denied.
- A turn runs from UserPromptSubmit to the first Stop/StopFailure with the same prompt_id. An end
  event without prompt_id (StopFailure with an empty payload) closes the latest prompt of its
  session before it, when that prompt has no end of its own.

Performance (checked on 1.1M agent_logs rows): no CTE is referenced twice (it would be
materialised and block predicate push-down), so `WHERE claude_session_id = …` or
`WHERE tool_use_id = …` on tool_calls, and `WHERE claude_session_id = …` on turns, reach the
agent_logs indexes (~10-20 ms). Payload fields are read once per row and only when a query uses
the column. Look-ups for unfinished calls run behind one-time filters, in aggregate LATERAL
subqueries that the planner drops when their columns are not used. The PermissionRequest look-up
needs agent_logs_permission_request_idx (small: PermissionRequest rows only); without it the
planner's cost estimate of a per-session query crosses jit_above_cost.

turns keeps its column order stable: a later revision may CREATE OR REPLACE it and append columns.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = """
CREATE INDEX agent_logs_permission_request_idx ON agent_logs (claude_session_id, occurred_at)
    WHERE event_type = 'PermissionRequest';
"""

# f: the first event of each kind per call (1 PreToolUse, 2 PostToolUse/PostToolUseFailure,
# 3 PermissionDenied); k: one row per call.
TOOL_CALLS = """
CREATE VIEW tool_calls AS
SELECT
    k.claude_session_id,
    k.tool_use_id,
    k.agent_id,
    k.claude_agent_id,
    k.session_id,
    k.prompt_id,
    k.tool_name,
    k.started_at,
    coalesce(k.end_at, d.batch_at, k.denied_hook_at) AS ended_at,
    coalesce(k.hook_ms,
             round(extract(epoch FROM coalesce(k.end_at, d.batch_at, k.denied_hook_at) - k.started_at) * 1000, 3))
        AS duration_ms,
    CASE WHEN k.hook_ms IS NOT NULL THEN 'hook'
         WHEN k.started_at IS NOT NULL AND coalesce(k.end_at, d.batch_at, k.denied_hook_at) IS NOT NULL
             THEN 'receive_time'
    END AS duration_source,
    CASE WHEN k.end_event = 'PostToolUse' THEN 'ok'
         WHEN k.end_event = 'PostToolUseFailure' AND k.end_interrupt THEN 'interrupted'
         WHEN k.end_event = 'PostToolUseFailure' THEN 'failed'
         WHEN d.batch_at IS NOT NULL OR k.denied_hook_at IS NOT NULL OR d.permission_requested THEN 'denied'
         ELSE 'open'
    END AS outcome,
    coalesce(k.pre_input_bytes, (
        SELECT octet_length((e.payload -> 'tool_input')::text) FROM agent_logs e
        WHERE k.pre_log_id IS NULL AND e.id = coalesce(k.end_log_id, k.denied_log_id)
    )) AS input_bytes,
    k.pre_log_id,
    k.end_log_id
FROM (
    SELECT f.claude_session_id, f.tool_use_id,
        max(f.occurred_at) FILTER (WHERE f.kind = 1) AS started_at,
        max(f.id) FILTER (WHERE f.kind = 1) AS pre_log_id,
        max(f.input_bytes) FILTER (WHERE f.kind = 1) AS pre_input_bytes,
        max(f.occurred_at) FILTER (WHERE f.kind = 2) AS end_at,
        max(f.id) FILTER (WHERE f.kind = 2) AS end_log_id,
        max(f.event_type) FILTER (WHERE f.kind = 2) AS end_event,
        bool_or(f.is_interrupt) FILTER (WHERE f.kind = 2) AS end_interrupt,
        max(f.hook_ms) FILTER (WHERE f.kind = 2) AS hook_ms,
        max(f.occurred_at) FILTER (WHERE f.kind = 3) AS denied_hook_at,
        max(f.id) FILTER (WHERE f.kind = 3) AS denied_log_id,
        coalesce((array_agg(f.agent_id) FILTER (WHERE f.kind = 1))[1],
                 (array_agg(f.agent_id) FILTER (WHERE f.kind = 2))[1],
                 (array_agg(f.agent_id) FILTER (WHERE f.kind = 3))[1]) AS agent_id,
        coalesce(max(f.claude_agent_id) FILTER (WHERE f.kind = 1),
                 max(f.claude_agent_id) FILTER (WHERE f.kind = 2),
                 max(f.claude_agent_id) FILTER (WHERE f.kind = 3)) AS claude_agent_id,
        coalesce((array_agg(f.session_id) FILTER (WHERE f.kind = 1))[1],
                 (array_agg(f.session_id) FILTER (WHERE f.kind = 2))[1],
                 (array_agg(f.session_id) FILTER (WHERE f.kind = 3))[1]) AS session_id,
        coalesce(max(f.prompt_id) FILTER (WHERE f.kind = 1),
                 max(f.prompt_id) FILTER (WHERE f.kind = 2),
                 max(f.prompt_id) FILTER (WHERE f.kind = 3)) AS prompt_id,
        coalesce(max(f.tool_name) FILTER (WHERE f.kind = 1),
                 max(f.tool_name) FILTER (WHERE f.kind = 2),
                 max(f.tool_name) FILTER (WHERE f.kind = 3)) AS tool_name
    FROM (
        SELECT DISTINCT ON (l.claude_session_id, l.tool_use_id,
                            CASE l.event_type WHEN 'PreToolUse' THEN 1 WHEN 'PermissionDenied' THEN 3 ELSE 2 END)
            l.claude_session_id, l.tool_use_id,
            CASE l.event_type WHEN 'PreToolUse' THEN 1 WHEN 'PermissionDenied' THEN 3 ELSE 2 END AS kind,
            l.id, l.occurred_at, l.event_type, l.agent_id, l.claude_agent_id, l.session_id, l.prompt_id,
            l.tool_name,
            CASE WHEN l.event_type = 'PreToolUse'
                 THEN octet_length((l.payload -> 'tool_input')::text) END AS input_bytes,
            CASE WHEN l.event_type = 'PostToolUseFailure'
                 THEN l.payload @> '{"is_interrupt": true}' END AS is_interrupt,
            CASE WHEN l.event_type IN ('PostToolUse', 'PostToolUseFailure')
                 THEN jsonb_path_query_first(l.payload, '$.duration_ms ? (@.type() == "number")')::numeric
            END AS hook_ms
        FROM agent_logs l
        WHERE l.tool_use_id IS NOT NULL
          AND l.event_type IN ('PreToolUse', 'PostToolUse', 'PostToolUseFailure', 'PermissionDenied')
        ORDER BY l.claude_session_id, l.tool_use_id,
            CASE l.event_type WHEN 'PreToolUse' THEN 1 WHEN 'PermissionDenied' THEN 3 ELSE 2 END,
            l.occurred_at, l.id
    ) f
    GROUP BY f.claude_session_id, f.tool_use_id
) k
-- Only calls without a Post event look further (the k.end_at IS NULL one-time filters).
-- jsonb_path_exists (rather than @>) lets the planner expect the batch soon after the
-- PreToolUse, which is true and keeps per-session queries below jit_above_cost.
LEFT JOIN LATERAL (
    SELECT max(b.batch_at) AS batch_at, bool_or(b.permission_requested) AS permission_requested
    FROM (
        SELECT b0.batch_at,
            EXISTS (
                SELECT 1 FROM agent_logs pre, agent_logs pr
                WHERE k.end_at IS NULL AND b0.batch_at IS NULL AND k.denied_hook_at IS NULL
                  AND pre.id = k.pre_log_id
                  AND pr.claude_session_id = k.claude_session_id
                  AND pr.event_type = 'PermissionRequest'
                  AND pr.occurred_at >= k.started_at
                  AND pr.tool_name = pre.tool_name
                  AND pr.payload -> 'tool_input' = pre.payload -> 'tool_input'
            ) AS permission_requested
        FROM (
            SELECT (
                SELECT bt.occurred_at FROM agent_logs bt
                WHERE k.end_at IS NULL
                  AND bt.claude_session_id = k.claude_session_id
                  AND bt.event_type = 'PostToolBatch'
                  AND bt.occurred_at >= coalesce(k.started_at, '-infinity')
                  AND jsonb_path_exists(bt.payload, '$.tool_calls[*] ? (@.tool_use_id == $id)',
                                        jsonb_build_object('id', k.tool_use_id))
                ORDER BY bt.occurred_at
                LIMIT 1
            ) AS batch_at
            OFFSET 0
        ) b0
    ) b
) d ON true;
COMMENT ON VIEW tool_calls IS 'One row per tool call (claude_session_id, tool_use_id): PreToolUse to its first PostToolUse/PostToolUseFailure, or to the PostToolBatch that lists a denied call. outcome: ok, failed, interrupted, denied, open.';
COMMENT ON COLUMN tool_calls.started_at IS 'Receive time of the first PreToolUse (NULL when it was lost).';
COMMENT ON COLUMN tool_calls.ended_at IS 'Receive time of the first PostToolUse/PostToolUseFailure; for a denied call its PostToolBatch (else its PermissionDenied); NULL while open.';
COMMENT ON COLUMN tool_calls.duration_ms IS 'The hook''s duration_ms (tool execution only) when present, else ended_at - started_at in ms (includes permission waits).';
COMMENT ON COLUMN tool_calls.duration_source IS '''hook'' (payload duration_ms), ''receive_time'' (ended_at - started_at), or NULL (no end or no start).';
COMMENT ON COLUMN tool_calls.outcome IS 'ok (PostToolUse), failed (PostToolUseFailure), interrupted (its is_interrupt true), denied (no Post event; a PostToolBatch entry, PermissionDenied, or a later PermissionRequest with equal tool_name and tool_input), open.';
COMMENT ON COLUMN tool_calls.input_bytes IS 'octet_length of the tool_input JSON text (as jsonb prints it).';
COMMENT ON COLUMN tool_calls.pre_log_id IS 'agent_logs.id of the first PreToolUse.';
COMMENT ON COLUMN tool_calls.end_log_id IS 'agent_logs.id of the first PostToolUse/PostToolUseFailure.';
"""

TOOL_STATS = """
CREATE VIEW tool_stats AS
SELECT s.tool_name, s.calls, s.ok, s.failed, s.interrupted, s.denied, s.open,
    round(s.p50_ms::numeric, 1) AS p50_ms, round(s.p95_ms::numeric, 1) AS p95_ms,
    round((s.failed + s.interrupted)::numeric / nullif(s.finished, 0), 4) AS failure_rate,
    s.finished, s.max_ms
FROM (
    SELECT tool_name,
        count(*) AS calls,
        count(*) FILTER (WHERE outcome = 'ok') AS ok,
        count(*) FILTER (WHERE outcome = 'failed') AS failed,
        count(*) FILTER (WHERE outcome = 'interrupted') AS interrupted,
        count(*) FILTER (WHERE outcome = 'denied') AS denied,
        count(*) FILTER (WHERE outcome = 'open') AS open,
        count(*) FILTER (WHERE outcome IN ('ok', 'failed', 'interrupted')) AS finished,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms::double precision)
            FILTER (WHERE outcome IN ('ok', 'failed', 'interrupted')) AS p50_ms,
        percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms::double precision)
            FILTER (WHERE outcome IN ('ok', 'failed', 'interrupted')) AS p95_ms,
        max(duration_ms) FILTER (WHERE outcome IN ('ok', 'failed', 'interrupted')) AS max_ms
    FROM tool_calls
    GROUP BY tool_name
) s;
COMMENT ON VIEW tool_stats IS 'Per tool_name: outcome counts; p50/p95/max duration_ms and failure_rate over finished calls (ok, failed, interrupted), so denied and open calls are left out.';
COMMENT ON COLUMN tool_stats.failure_rate IS '(failed + interrupted) / finished; NULL when nothing finished.';
"""

TURNS = """
CREATE VIEW turns AS
SELECT
    u.claude_session_id,
    u.prompt_id,
    u.agent_id,
    u.session_id,
    u.started_at,
    coalesce(e1.occurred_at, e2.occurred_at) AS ended_at,
    round(extract(epoch FROM coalesce(e1.occurred_at, e2.occurred_at) - u.started_at) * 1000, 3)
        AS duration_ms,
    CASE coalesce(e1.event_type, e2.event_type)
        WHEN 'Stop' THEN 'stop'
        WHEN 'StopFailure' THEN 'stop_failure'
        ELSE 'open'
    END AS outcome,
    CASE WHEN u.prompt_id IS NOT NULL THEN coalesce(tc.calls, 0) END AS tool_calls,
    u.prompt_chars,
    tu.cost_usd
FROM (
    SELECT DISTINCT ON (l.claude_session_id, l.prompt_id, CASE WHEN l.prompt_id IS NULL THEN l.id END)
        l.claude_session_id, l.prompt_id, l.agent_id, l.session_id,
        l.occurred_at AS started_at,
        char_length(l.payload ->> 'prompt') AS prompt_chars,
        coalesce('p:' || l.prompt_id, 'u:' || l.id) AS turn_key
    FROM agent_logs l
    WHERE l.event_type = 'UserPromptSubmit'
    ORDER BY l.claude_session_id, l.prompt_id, CASE WHEN l.prompt_id IS NULL THEN l.id END,
        l.occurred_at, l.id
) u
LEFT JOIN (
    SELECT DISTINCT ON (s.claude_session_id, s.prompt_id)
        s.claude_session_id, s.prompt_id, s.event_type, s.occurred_at
    FROM agent_logs s
    WHERE s.event_type IN ('Stop', 'StopFailure') AND s.prompt_id IS NOT NULL
    ORDER BY s.claude_session_id, s.prompt_id, s.occurred_at, s.id
) e1 ON e1.claude_session_id = u.claude_session_id AND e1.prompt_id = u.prompt_id
LEFT JOIN (
    -- An end event without prompt_id belongs to the latest prompt of its session before it.
    SELECT DISTINCT ON (s.claude_session_id, p.turn_key)
        s.claude_session_id, p.turn_key, s.event_type, s.occurred_at
    FROM agent_logs s
    CROSS JOIN LATERAL (
        SELECT coalesce('p:' || n.prompt_id, 'u:' || n.id) AS turn_key
        FROM agent_logs n
        WHERE n.claude_session_id = s.claude_session_id
          AND n.event_type = 'UserPromptSubmit'
          AND n.occurred_at <= s.occurred_at
        ORDER BY n.occurred_at DESC
        LIMIT 1
    ) p
    WHERE s.event_type IN ('Stop', 'StopFailure') AND s.prompt_id IS NULL
    ORDER BY s.claude_session_id, p.turn_key, s.occurred_at, s.id
) e2 ON e2.claude_session_id = u.claude_session_id AND e2.turn_key = u.turn_key
LEFT JOIN (
    SELECT c.claude_session_id, c.prompt_id, count(*) AS calls
    FROM tool_calls c
    WHERE c.prompt_id IS NOT NULL
    GROUP BY c.claude_session_id, c.prompt_id
) tc ON tc.claude_session_id = u.claude_session_id AND tc.prompt_id = u.prompt_id
LEFT JOIN LATERAL (
    SELECT CASE WHEN bool_or(c.unpriced) THEN NULL ELSE coalesce(sum(c.cost_usd), 0) END AS cost_usd
    FROM token_usage_costs c
    WHERE u.prompt_id IS NOT NULL AND c.claude_session_id = u.claude_session_id AND c.prompt_id = u.prompt_id
) tu ON true;
COMMENT ON VIEW turns IS 'One row per user prompt (claude_session_id, prompt_id): UserPromptSubmit to the first Stop/StopFailure with that prompt_id, else to the first Stop/StopFailure without prompt_id (empty payload) before the next prompt. outcome: stop, stop_failure, open.';
COMMENT ON COLUMN turns.tool_calls IS 'tool_calls rows with this prompt_id, subagent calls included (also those after the Stop); NULL when the prompt has no prompt_id.';
COMMENT ON COLUMN turns.prompt_chars IS 'char_length of the UserPromptSubmit prompt.';
COMMENT ON COLUMN turns.cost_usd IS 'Cost of the API responses of this prompt (main thread and subagents, from token_usage); NULL if one is unpriced.';
"""

SLASH_COMMANDS = """
CREATE VIEW slash_commands AS
SELECT
    l.payload ->> 'command_name' AS command_name,
    l.payload ->> 'command_source' AS command_source,
    count(*) AS uses,
    count(DISTINCT l.claude_session_id) AS sessions,
    min(l.occurred_at) AS first_used_at,
    max(l.occurred_at) AS last_used_at
FROM agent_logs l
WHERE l.event_type = 'UserPromptExpansion'
GROUP BY 1, 2;
COMMENT ON VIEW slash_commands IS 'Per (command_name, command_source) from UserPromptExpansion events: uses, distinct Claude sessions, first and last use.';
"""

AGENT_TIMINGS = """
CREATE VIEW agent_timings AS
SELECT
    a.id AS agent_id,
    a.session_id,
    a.parent_agent_id,
    a.sdk_session_id,
    a.claude_agent_id,
    a.agent_type,
    a.model,
    a.status,
    coalesce(a.started_at, ev.first_event_at) AS started_at,
    x.ended_at,
    round(extract(epoch FROM x.ended_at - coalesce(a.started_at, ev.first_event_at)) * 1000, 3)
        AS duration_ms,
    ev.events,
    ev.first_event_at,
    ev.last_event_at
FROM agents a
CROSS JOIN LATERAL (
    SELECT count(*) AS events, min(l.occurred_at) AS first_event_at, max(l.occurred_at) AS last_event_at
    FROM agent_logs l
    WHERE l.agent_id = a.id
) ev
CROSS JOIN LATERAL (
    SELECT coalesce(a.completed_at, (
        SELECT l.occurred_at FROM agent_logs l
        WHERE a.completed_at IS NULL
          AND l.agent_id = a.id
          AND l.event_type = CASE WHEN a.claude_agent_id IS NULL THEN 'SessionEnd' ELSE 'SubagentStop' END
        ORDER BY l.occurred_at DESC
        LIMIT 1
    )) AS ended_at
    OFFSET 0
) x;
COMMENT ON VIEW agent_timings IS 'Per agents row: started_at, ended_at (completed_at, else the last SubagentStop of a subagent or SessionEnd of a session), duration_ms, and the count and time span of its agent_logs rows.';
"""

DOWNGRADE = """
DROP VIEW agent_timings;
DROP VIEW slash_commands;
DROP VIEW turns;
DROP VIEW tool_stats;
DROP VIEW tool_calls;
DROP INDEX agent_logs_permission_request_idx;
"""


def upgrade() -> None:
    op.execute(INDEXES)
    op.execute(TOOL_CALLS)
    op.execute(TOOL_STATS)
    op.execute(TURNS)
    op.execute(SLASH_COMMANDS)
    op.execute(AGENT_TIMINGS)


def downgrade() -> None:
    op.execute(DOWNGRADE)
