"""Timing views over agent_logs: tool_calls, tool_stats, turns, slash_commands, agent_timings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Pairing rules (reference/claude-code.md §5, §15, §16):
- A tool call is keyed by (claude_session_id, tool_use_id), never by tool name; ids repeat across
  sessions. Its first PreToolUse starts it, its first PostToolUse/PostToolUseFailure ends it.
- Denied calls get no Post event. They are closed by the first PostToolBatch of the session whose
  tool_calls[] names the tool_use_id (or a PermissionDenied event, auto mode); a PermissionRequest
  (which carries no tool_use_id) with the same tool_name and equal tool_input after the PreToolUse
  also marks the call denied while no Post event exists.
- A turn runs from UserPromptSubmit to the first Stop/StopFailure with the same prompt_id. An end
  event without prompt_id (empty StopFailure payload) closes the turn it falls in when nothing
  else does.

The views avoid multiply-referenced CTEs (they would be materialised and block predicate
push-down): `SELECT … FROM tool_calls WHERE claude_session_id = …` (or tool_use_id, or turns by
claude_session_id) reaches the existing agent_logs indexes. Scalar look-ups run in LATERAL
subqueries guarded by an outer-only condition (a one-time filter), so they run only for the rows
that need them. No new index is needed.

turns keeps its column order stable: a later revision may CREATE OR REPLACE it and append columns.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOOL_CALLS = """
CREATE VIEW tool_calls AS
SELECT
    k.claude_session_id,
    k.tool_use_id,
    coalesce(src.agent_id, fin.agent_id) AS agent_id,
    coalesce(src.claude_agent_id, fin.claude_agent_id) AS claude_agent_id,
    coalesce(src.session_id, fin.session_id) AS session_id,
    coalesce(src.prompt_id, fin.prompt_id) AS prompt_id,
    coalesce(src.tool_name, fin.tool_name) AS tool_name,
    k.started_at,
    t.ended_at,
    coalesce(t.hook_ms, round(extract(epoch FROM t.ended_at - k.started_at) * 1000, 3)) AS duration_ms,
    CASE WHEN t.hook_ms IS NOT NULL THEN 'hook'
         WHEN t.ended_at IS NOT NULL AND k.started_at IS NOT NULL THEN 'receive_time'
    END AS duration_source,
    CASE WHEN fin.event_type = 'PostToolUse' THEN 'ok'
         WHEN fin.event_type = 'PostToolUseFailure' AND fin.payload -> 'is_interrupt' = 'true'::jsonb
             THEN 'interrupted'
         WHEN fin.event_type = 'PostToolUseFailure' THEN 'failed'
         WHEN b.batch_at IS NOT NULL OR k.denied_hook_at IS NOT NULL OR p.permission_requested
             THEN 'denied'
         ELSE 'open'
    END AS outcome,
    octet_length((coalesce(src.payload, fin.payload) -> 'tool_input')::text) AS input_bytes,
    k.pre_log_id,
    k.end_log_id
FROM (
    SELECT l.claude_session_id, l.tool_use_id,
        min(l.occurred_at) FILTER (WHERE l.event_type = 'PreToolUse') AS started_at,
        (array_agg(l.id ORDER BY l.occurred_at, l.id)
            FILTER (WHERE l.event_type = 'PreToolUse'))[1] AS pre_log_id,
        (array_agg(l.id ORDER BY l.occurred_at, l.id)
            FILTER (WHERE l.event_type IN ('PostToolUse', 'PostToolUseFailure')))[1] AS end_log_id,
        min(l.occurred_at) FILTER (WHERE l.event_type = 'PermissionDenied') AS denied_hook_at,
        (array_agg(l.id ORDER BY l.occurred_at, l.id)
            FILTER (WHERE l.event_type = 'PermissionDenied'))[1] AS denied_log_id
    FROM agent_logs l
    WHERE l.tool_use_id IS NOT NULL
      AND l.event_type IN ('PreToolUse', 'PostToolUse', 'PostToolUseFailure', 'PermissionDenied')
    GROUP BY l.claude_session_id, l.tool_use_id
) k
LEFT JOIN agent_logs src ON src.id = coalesce(k.pre_log_id, k.end_log_id, k.denied_log_id)
LEFT JOIN agent_logs fin ON fin.id = k.end_log_id
CROSS JOIN LATERAL (
    SELECT (
        SELECT bt.occurred_at FROM agent_logs bt
        WHERE k.end_log_id IS NULL
          AND bt.claude_session_id = k.claude_session_id
          AND bt.event_type = 'PostToolBatch'
          AND bt.occurred_at >= coalesce(k.started_at, '-infinity')
          AND bt.payload -> 'tool_calls' @> jsonb_build_array(jsonb_build_object('tool_use_id', k.tool_use_id))
        ORDER BY bt.occurred_at, bt.id
        LIMIT 1
    ) AS batch_at
    OFFSET 0
) b
CROSS JOIN LATERAL (
    SELECT EXISTS (
        SELECT 1 FROM agent_logs pr
        WHERE k.end_log_id IS NULL AND b.batch_at IS NULL AND k.denied_hook_at IS NULL
          AND pr.claude_session_id = k.claude_session_id
          AND pr.event_type = 'PermissionRequest'
          AND pr.occurred_at >= k.started_at
          AND pr.tool_name = src.tool_name
          AND pr.payload -> 'tool_input' = src.payload -> 'tool_input'
    ) AS permission_requested
    OFFSET 0
) p
CROSS JOIN LATERAL (
    SELECT
        coalesce(fin.occurred_at, b.batch_at, k.denied_hook_at) AS ended_at,
        CASE WHEN jsonb_typeof(fin.payload -> 'duration_ms') = 'number'
             THEN (fin.payload ->> 'duration_ms')::numeric END AS hook_ms
) t;
COMMENT ON VIEW tool_calls IS 'One row per tool call (claude_session_id, tool_use_id): PreToolUse to its first PostToolUse/PostToolUseFailure, or to the PostToolBatch that lists a denied call. outcome: ok, failed, interrupted, denied, open.';
COMMENT ON COLUMN tool_calls.duration_ms IS 'The hook''s duration_ms (tool execution only) when present, else ended_at - started_at in ms (includes permission waits).';
COMMENT ON COLUMN tool_calls.duration_source IS '''hook'' (payload duration_ms), ''receive_time'' (ended_at - started_at) or NULL (no end, or no start).';
COMMENT ON COLUMN tool_calls.input_bytes IS 'octet_length of the tool_input JSON text (jsonb normalised).';
COMMENT ON COLUMN tool_calls.pre_log_id IS 'agent_logs.id of the first PreToolUse (NULL when it was lost).';
COMMENT ON COLUMN tool_calls.end_log_id IS 'agent_logs.id of the first PostToolUse/PostToolUseFailure.';
"""

TOOL_STATS = """
CREATE VIEW tool_stats AS
SELECT s.tool_name, s.calls, s.ok, s.failed, s.interrupted, s.denied, s.open,
    s.p50_ms, s.p95_ms,
    (s.failed + s.interrupted)::double precision / nullif(s.finished, 0) AS failure_rate,
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
COMMENT ON VIEW tool_stats IS 'Per tool_name: outcome counts; p50/p95/max of duration_ms and failure_rate over finished calls (ok, failed, interrupted; denied and open calls excluded).';
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
    u.prompt_chars
FROM (
    SELECT DISTINCT ON (l.claude_session_id, l.prompt_id, CASE WHEN l.prompt_id IS NULL THEN l.id END)
        l.claude_session_id, l.prompt_id, l.agent_id, l.session_id,
        l.occurred_at AS started_at,
        char_length(l.payload ->> 'prompt') AS prompt_chars
    FROM agent_logs l
    WHERE l.event_type = 'UserPromptSubmit'
    ORDER BY l.claude_session_id, l.prompt_id, CASE WHEN l.prompt_id IS NULL THEN l.id END,
        l.occurred_at, l.id
) u
LEFT JOIN LATERAL (
    SELECT s.event_type, s.occurred_at FROM agent_logs s
    WHERE s.claude_session_id = u.claude_session_id
      AND s.occurred_at >= u.started_at
      AND s.event_type IN ('Stop', 'StopFailure')
      AND s.prompt_id = u.prompt_id
    ORDER BY s.occurred_at, s.id
    LIMIT 1
) e1 ON true
LEFT JOIN LATERAL (
    SELECT (
        SELECT n.occurred_at FROM agent_logs n
        WHERE e1.occurred_at IS NULL
          AND n.claude_session_id = u.claude_session_id
          AND n.occurred_at > u.started_at
          AND n.event_type = 'UserPromptSubmit'
          AND (u.prompt_id IS NULL OR n.prompt_id IS DISTINCT FROM u.prompt_id)
        ORDER BY n.occurred_at, n.id
        LIMIT 1
    ) AS next_prompt_at
    OFFSET 0
) nx ON true
LEFT JOIN LATERAL (
    SELECT s.event_type, s.occurred_at FROM agent_logs s
    WHERE e1.occurred_at IS NULL
      AND s.claude_session_id = u.claude_session_id
      AND s.occurred_at >= u.started_at
      AND s.occurred_at < coalesce(nx.next_prompt_at, 'infinity')
      AND s.event_type IN ('Stop', 'StopFailure')
      AND s.prompt_id IS NULL
    ORDER BY s.occurred_at, s.id
    LIMIT 1
) e2 ON true
LEFT JOIN (
    SELECT c.claude_session_id, c.prompt_id, count(*) AS calls
    FROM tool_calls c
    WHERE c.prompt_id IS NOT NULL
    GROUP BY c.claude_session_id, c.prompt_id
) tc ON tc.claude_session_id = u.claude_session_id AND tc.prompt_id = u.prompt_id;
COMMENT ON VIEW turns IS 'One row per user prompt (claude_session_id, prompt_id): UserPromptSubmit to the first Stop/StopFailure with that prompt_id; a Stop/StopFailure without prompt_id (empty payload) before the next prompt closes it otherwise. outcome: stop, stop_failure, open.';
COMMENT ON COLUMN turns.tool_calls IS 'tool_calls rows with this prompt_id (subagent calls included, also those after the Stop); NULL when the prompt has no prompt_id.';
COMMENT ON COLUMN turns.prompt_chars IS 'char_length of the UserPromptSubmit prompt.';
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
        ORDER BY l.occurred_at DESC, l.id DESC
        LIMIT 1
    )) AS ended_at
    OFFSET 0
) x;
COMMENT ON VIEW agent_timings IS 'Per agents row: started_at, ended_at (completed_at, else the last SubagentStop for a subagent or SessionEnd for a session), duration_ms, and its agent_logs count and time span.';
"""

DOWNGRADE = """
DROP VIEW agent_timings;
DROP VIEW slash_commands;
DROP VIEW turns;
DROP VIEW tool_stats;
DROP VIEW tool_calls;
"""


def upgrade() -> None:
    op.execute(TOOL_CALLS)
    op.execute(TOOL_STATS)
    op.execute(TURNS)
    op.execute(SLASH_COMMANDS)
    op.execute(AGENT_TIMINGS)


def downgrade() -> None:
    op.execute(DOWNGRADE)
