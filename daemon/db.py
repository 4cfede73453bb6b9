"""Database access: connections, error classes and every SQL statement, by name.

The ingest path uses psycopg directly (COPY into a temporary table, then one
INSERT … ON CONFLICT); SQLAlchemy Core is used for schema metadata and migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from daemon.config import CONNECT_TIMEOUT_S, LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS
from daemon.errors import PermanentRowError, ServerTooOldError, TransientDbError, UnknownDbError

APPLICATION_NAME = "session-db"
# libpq TCP settings unless the URL sets them: probe an idle connection after 10 s, every 3 s,
# give up after 3 missed probes; unacknowledged data fails the connection after 20 s. Both stay
# under the 30 s between watchdog pings of the default unit (WatchdogSec=60s).
TCP_DEFAULTS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,  # s
    "keepalives_interval": 3,  # s
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,  # ms
}

# SQLSTATE classes and codes (PostgreSQL appendix A) and what they mean for a batch.
TRANSIENT_CLASSES = frozenset({"08", "28", "40", "53", "57", "58"})
# A missing grant (42501) is an operator's fix away, like a database that is down: retried,
# never quarantined (see daemon/roles.py and `session-db roles --apply`).
INSUFFICIENT_PRIVILEGE = "42501"
TRANSIENT_CODES = frozenset({"3D000", "55P03", "55006", INSUFFICIENT_PRIVILEGE})
PERMANENT_CLASSES = frozenset({"22", "23"})
PERMANENT_CODES = frozenset({"54000", "54001"})


MIN_SERVER_MAJOR = 15  # the schema uses NULLS NOT DISTINCT; older servers are refused up front


def connect(
    url: str,
    *,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    autocommit: bool = False,
) -> psycopg.Connection[Any]:
    """The one way to open a PostgreSQL connection: bounded waits and durable commits.

    Every connection of session-db comes from here (the daemon's sink, Alembic's engine, the
    schema check, `status`, `roles`, partition DDL, the embedded cluster's set-up), so none
    can hang on a server that accepts TCP and never answers: `connect_timeout` bounds the
    whole handshake, keepalives and `tcp_user_timeout` bound a silent peer afterwards, and
    `statement_timeout` bounds each statement (0 turns it off, for migrations and partition
    DDL). `synchronous_commit` is forced on: spool files are unlinked after COMMIT, so an
    asynchronously committed transaction could be lost with its file gone. A server older
    than MIN_SERVER_MAJOR raises ServerTooOldError (a configuration error) at once.
    """
    # A server that vanishes without a FIN/RST (cable, NAT, VM paused) would leave a read
    # blocked forever; keepalives and tcp_user_timeout turn it into an error within bounds.
    # Settings the user put in the URL win; Unix sockets ignore these.
    given = psycopg.conninfo.conninfo_to_dict(url)
    tcp = {k: v for k, v in TCP_DEFAULTS.items() if k not in given}
    conn = psycopg.connect(
        psycopg.conninfo.make_conninfo(
            url, connect_timeout=connect_timeout_s, application_name=APPLICATION_NAME, **tcp
        )
    )
    try:
        check_server_version(conn.info.server_version)
        with conn.cursor() as cur:
            cur.execute(SET_SESSION, (str(statement_timeout_ms), str(lock_timeout_ms)))
        conn.commit()
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


def check_server_version(server_version_num: int) -> None:
    """Refuse a server older than MIN_SERVER_MAJOR (`server_version_num`, e.g. 150004)."""
    major = server_version_num // 10000
    if major < MIN_SERVER_MAJOR:
        raise ServerTooOldError(
            f"the PostgreSQL server is version {major}; session-db needs PostgreSQL "
            f"{MIN_SERVER_MAJOR} or newer (its schema uses NULLS NOT DISTINCT): upgrade the "
            "server, or unset SESSION_DB_URL to use the embedded cluster"
        )


def classify(exc: BaseException) -> Exception:
    """Map a driver exception to TransientDbError, PermanentRowError or UnknownDbError.

    A SQLAlchemy wrapper (Alembic's engine) is unwrapped to the psycopg error in its `.orig`,
    so callers hand over whatever they caught.
    """
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        exc = orig
    sqlstate = getattr(exc, "sqlstate", None)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and sqlstate is None:
        return TransientDbError(message)
    if isinstance(exc, psycopg.DataError) and sqlstate is None:
        return PermanentRowError(message, None)  # e.g. NUL in a text parameter, refused client-side
    if sqlstate:
        cls = sqlstate[:2]
        if sqlstate == INSUFFICIENT_PRIVILEGE:
            return TransientDbError(
                f"{sqlstate}: {message} (grant it: `session-db roles --apply` as a superuser)"
            )
        if cls in TRANSIENT_CLASSES or sqlstate in TRANSIENT_CODES:
            return TransientDbError(f"{sqlstate}: {message}")
        if cls in PERMANENT_CLASSES or sqlstate in PERMANENT_CODES:
            return PermanentRowError(message, sqlstate)
    return UnknownDbError(message, sqlstate)


def is_driver_error(exc: BaseException) -> bool:
    """A psycopg error, bare or wrapped by SQLAlchemy (what `classify` understands)."""
    return isinstance(exc, psycopg.Error) or isinstance(getattr(exc, "orig", None), psycopg.Error)


@contextmanager
def transaction(
    conn: psycopg.Connection[tuple[object, ...]],
) -> Iterator[psycopg.Cursor[tuple[object, ...]]]:
    """One explicit transaction: commit on success, roll back on any error."""
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        if not conn.closed:
            try:
                conn.rollback()
            except psycopg.Error:
                conn.close()
        raise


__all__ = ["check_server_version", "classify", "connect", "is_driver_error", "pgerr", "transaction"]

# --- statements -------------------------------------------------------------------------

PING = "SELECT 1"

SET_SESSION = """
SELECT set_config('synchronous_commit', 'on', false),
       set_config('statement_timeout', %s, false),
       set_config('lock_timeout', %s, false)
"""

CREATE_INGEST_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_events (
    event_uid text, host text, claude_session_id text, claude_agent_id text,
    event_type text, tool_name text, tool_use_id text, prompt_id text,
    occurred_at timestamptz, cwd text, project_dir text, workflow_slug text, agent_type text,
    payload text, payload_bytes bigint, payload_sha256 text, transforms text[]
) ON COMMIT DELETE ROWS
"""

COPY_INGEST = """
COPY ingest_events (event_uid, host, claude_session_id, claude_agent_id, event_type, tool_name,
    tool_use_id, prompt_id, occurred_at, cwd, project_dir, workflow_slug, agent_type,
    payload, payload_bytes, payload_sha256, transforms) FROM STDIN
"""

# The fast path: rows go straight into agent_logs, agent_id and session_id filled in by the
# client from UPSERT_AGENTS_FROM_EVENTS and LINK_CHILD_AGENTS. A batch that meets a unique
# violation (a redelivery after a crash, another daemon) is rolled back and written again
# through ingest_events and INSERT_EVENTS, whose ON CONFLICT absorbs the repeats.
COPY_EVENTS_DIRECT = """
COPY agent_logs (event_uid, host, claude_session_id, claude_agent_id, agent_id, session_id,
    event_category, event_type, tool_name, tool_use_id, prompt_id, occurred_at, cwd, project_dir,
    workflow_slug, agent_type, payload, payload_bytes, payload_sha256, transforms) FROM STDIN
"""

INSERT_EVENTS = """
INSERT INTO agent_logs (event_uid, host, claude_session_id, claude_agent_id, agent_id, session_id,
    event_category, event_type, tool_name, tool_use_id, prompt_id, occurred_at, cwd, project_dir,
    workflow_slug, agent_type, payload, payload_bytes, payload_sha256, transforms)
SELECT i.event_uid, i.host, i.claude_session_id, i.claude_agent_id, a.id, a.session_id,
    'hook', i.event_type, i.tool_name, i.tool_use_id, i.prompt_id, i.occurred_at, i.cwd, i.project_dir,
    i.workflow_slug, i.agent_type, i.payload::jsonb, i.payload_bytes, i.payload_sha256, i.transforms
FROM ingest_events i
LEFT JOIN agents a
    ON a.sdk_session_id = i.claude_session_id
   AND coalesce(a.claude_agent_id, '') = coalesce(i.claude_agent_id, '')
ON CONFLICT (event_uid, occurred_at) DO NOTHING
"""

ENSURE_WORKFLOW_SESSIONS = """
INSERT INTO sessions (host, slug)
SELECT * FROM unnest(%s::text[], %s::text[])
ON CONFLICT (host, slug) DO NOTHING
"""

# Events win for observed times and models; state.json (status_source = 'state') wins for status.
UPSERT_AGENTS_FROM_EVENTS = """
INSERT INTO agents AS a (sdk_session_id, claude_agent_id, parent_agent_id, agent_type, model, status,
    cwd, host, started_at, completed_at, last_event_at, session_id)
SELECT u.sid, u.aid,
    CASE WHEN u.aid IS NOT NULL THEN
        (SELECT p.id FROM agents p WHERE p.sdk_session_id = u.sid AND p.claude_agent_id IS NULL) END,
    u.agent_type, u.model, coalesce(u.status, 'executing'), u.cwd, u.host, u.started, u.completed, u.last_at,
    coalesce((SELECT s.id FROM sessions s WHERE s.host = u.host AND s.slug = u.slug),
             CASE WHEN u.aid IS NOT NULL THEN (SELECT p.session_id FROM agents p
                                               WHERE p.sdk_session_id = u.sid AND p.claude_agent_id IS NULL) END)
FROM unnest(%(sid)s::text[], %(aid)s::text[], %(agent_type)s::text[], %(model)s::text[],
            %(status)s::text[], %(cwd)s::text[], %(host)s::text[], %(started)s::timestamptz[],
            %(completed)s::timestamptz[], %(last_at)s::timestamptz[], %(slug)s::text[])
    AS u(sid, aid, agent_type, model, status, cwd, host, started, completed, last_at, slug)
ON CONFLICT (sdk_session_id, claude_agent_id) WHERE sdk_session_id IS NOT NULL DO UPDATE SET
    parent_agent_id = coalesce(a.parent_agent_id, EXCLUDED.parent_agent_id),
    agent_type = coalesce(a.agent_type, EXCLUDED.agent_type),
    model = CASE WHEN a.last_event_at IS NULL OR EXCLUDED.last_event_at >= a.last_event_at
                 THEN coalesce(EXCLUDED.model, a.model) ELSE coalesce(a.model, EXCLUDED.model) END,
    cwd = CASE WHEN a.last_event_at IS NULL OR EXCLUDED.last_event_at >= a.last_event_at
               THEN coalesce(EXCLUDED.cwd, a.cwd) ELSE coalesce(a.cwd, EXCLUDED.cwd) END,
    status = CASE WHEN a.status_source = 'state' OR EXCLUDED.last_event_at IS NULL THEN a.status
                  WHEN a.last_event_at IS NULL OR EXCLUDED.last_event_at >= a.last_event_at
                  THEN EXCLUDED.status ELSE a.status END,
    completed_at = CASE WHEN EXCLUDED.last_event_at IS NULL THEN a.completed_at
                        WHEN a.last_event_at IS NULL OR EXCLUDED.last_event_at >= a.last_event_at
                        THEN coalesce(EXCLUDED.completed_at,
                                      CASE WHEN a.status_source = 'state' THEN a.completed_at END)
                        ELSE a.completed_at END,
    host = coalesce(a.host, EXCLUDED.host),
    started_at = least(a.started_at, EXCLUDED.started_at),
    last_event_at = greatest(a.last_event_at, EXCLUDED.last_event_at),
    session_id = coalesce(a.session_id, EXCLUDED.session_id),
    updated_at = now()
RETURNING id, session_id, sdk_session_id, claude_agent_id
"""

# A session whose last turn ended in StopFailure (an API error) and then ended is failed, not complete.
MARK_FAILED_SESSIONS = """
UPDATE agents a SET status = 'failed', updated_at = now()
WHERE a.sdk_session_id = ANY(%s::text[]) AND a.claude_agent_id IS NULL
  AND a.status = 'complete' AND a.status_source = 'events'
  AND (SELECT l.event_type FROM agent_logs l
       WHERE l.claude_session_id = a.sdk_session_id AND l.claude_agent_id IS NULL
         AND l.event_type IN ('Stop', 'StopFailure', 'UserPromptSubmit')
       ORDER BY l.occurred_at DESC, l.id DESC LIMIT 1) = 'StopFailure'
"""

BACKFILL_SESSION_LINKS = """
UPDATE agent_logs l SET session_id = a.session_id
FROM agents a
WHERE a.id = ANY(%s::uuid[]) AND a.session_id IS NOT NULL
  AND l.agent_id = a.id AND l.session_id IS NULL
"""

# Subagents belong to the workflow session of their parent.
LINK_CHILD_AGENTS = """
UPDATE agents c SET session_id = p.session_id, updated_at = now()
FROM agents p
WHERE p.id = ANY(%s::uuid[]) AND p.session_id IS NOT NULL
  AND c.parent_agent_id = p.id AND c.session_id IS NULL
RETURNING c.id, c.session_id
"""

UPSERT_WATCH_ROOTS = """
INSERT INTO watch_roots (host, path, source)
SELECT %s, p, %s FROM unnest(%s::text[]) AS p
ON CONFLICT (host, path) DO NOTHING
"""

SELECT_WATCH_ROOTS = "SELECT path FROM watch_roots WHERE host = %s ORDER BY path"

SELECT_SESSION_STATE = (
    "SELECT id, status, state_sha256 FROM sessions WHERE host = %s AND slug = %s FOR UPDATE"
)

UPSERT_SESSION_STATE = """
INSERT INTO sessions AS s (host, slug, title, status, session_type, working_dir, state_path,
    total_cost, state, state_sha256, created_at, completed_at)
VALUES (%(host)s, %(slug)s, %(title)s, coalesce(%(status)s, 'created'), %(session_type)s, %(working_dir)s,
    %(state_path)s,
    %(total_cost)s, %(state)s::jsonb, %(sha)s, coalesce(%(created_at)s, now()), %(completed_at)s)
ON CONFLICT (host, slug) DO UPDATE SET
    title = EXCLUDED.title,
    status = coalesce(EXCLUDED.status, s.status),
    session_type = EXCLUDED.session_type,
    working_dir = EXCLUDED.working_dir,
    state_path = EXCLUDED.state_path,
    total_cost = EXCLUDED.total_cost,
    state = EXCLUDED.state,
    state_sha256 = EXCLUDED.state_sha256,
    created_at = coalesce(%(created_at)s, s.created_at),
    completed_at = EXCLUDED.completed_at,
    updated_at = now()
RETURNING id
"""

# state.json agents. An entry that names its Claude session (sdk_session_id) is the row of that
# session when one exists (events may have made it first); else the row of its own id when that
# row is a placeholder without a Claude session; else a new row, which takes the entry's id unless
# another row already has it. SELECT_STATE_AGENT_TARGET answers the first two questions.
SELECT_STATE_AGENT_TARGET = """
SELECT (SELECT id FROM agents WHERE sdk_session_id = %(sdk_session_id)s AND claude_agent_id IS NULL),
       (SELECT sdk_session_id IS NULL FROM agents WHERE id = %(id)s)
"""

# The placeholder of an agent whose session row turned out to exist (events made it first) is
# detached from the workflow, so the session lists the agent once. It is not deleted: the
# daemon deletes nothing (its role has no DELETE, docs/operations.md).
DETACH_STATE_AGENT_PLACEHOLDER = """
UPDATE agents SET session_id = NULL, updated_at = now()
WHERE id = %(id)s AND sdk_session_id IS NULL AND claude_agent_id IS NULL
"""

UPSERT_STATE_AGENT_BY_SDK = """
INSERT INTO agents AS a (id, session_id, agent_type, sdk_session_id, model, model_alias, status,
    status_source, checkpoint_id, cost_usd, host, started_at, completed_at)
VALUES (coalesce(%(id)s, gen_random_uuid()), %(session_id)s, %(agent_type)s, %(sdk_session_id)s,
    %(model)s, %(model_alias)s, coalesce(%(status)s, 'pending'), 'state', %(checkpoint_id)s,
    %(cost_usd)s, %(host)s, %(started_at)s, %(completed_at)s)
ON CONFLICT (sdk_session_id, claude_agent_id) WHERE sdk_session_id IS NOT NULL DO UPDATE SET
    session_id = EXCLUDED.session_id,
    agent_type = coalesce(EXCLUDED.agent_type, a.agent_type),
    model = coalesce(a.model, EXCLUDED.model),
    model_alias = coalesce(EXCLUDED.model_alias, a.model_alias),
    status = coalesce(%(status)s::text, a.status),
    status_source = CASE WHEN %(status)s::text IS NULL THEN a.status_source ELSE 'state' END,
    checkpoint_id = coalesce(EXCLUDED.checkpoint_id, a.checkpoint_id),
    cost_usd = coalesce(EXCLUDED.cost_usd, a.cost_usd),
    started_at = coalesce(a.started_at, EXCLUDED.started_at),
    completed_at = coalesce(a.completed_at, EXCLUDED.completed_at),
    updated_at = now()
RETURNING id
"""

# By the agent's own id: an entry without sdk_session_id, or the placeholder row an earlier
# version of the file made before it named the Claude session (then that session is set here).
UPSERT_STATE_AGENT_BY_ID = """
INSERT INTO agents AS a (id, session_id, agent_type, sdk_session_id, model, model_alias, status,
    status_source, checkpoint_id, cost_usd, host, started_at, completed_at)
VALUES (%(id)s, %(session_id)s, %(agent_type)s, %(sdk_session_id)s, %(model)s, %(model_alias)s,
    coalesce(%(status)s, 'pending'), 'state', %(checkpoint_id)s, %(cost_usd)s, %(host)s,
    %(started_at)s, %(completed_at)s)
ON CONFLICT (id) DO UPDATE SET
    session_id = EXCLUDED.session_id,
    sdk_session_id = coalesce(a.sdk_session_id, EXCLUDED.sdk_session_id),
    agent_type = EXCLUDED.agent_type,
    model = coalesce(EXCLUDED.model, a.model),
    model_alias = EXCLUDED.model_alias,
    status = coalesce(%(status)s, a.status),
    checkpoint_id = EXCLUDED.checkpoint_id,
    cost_usd = EXCLUDED.cost_usd,
    started_at = coalesce(EXCLUDED.started_at, a.started_at),
    completed_at = coalesce(EXCLUDED.completed_at, a.completed_at),
    updated_at = now()
RETURNING id
"""

# The key is (event_uid, occurred_at) and occurred_at is the state file's mtime, which a rewrite
# with the same content changes: NOT EXISTS keeps one row per event_uid. It runs while the
# transaction holds the sessions row lock (UPSERT_SESSION_STATE), so two daemons cannot race.
INSERT_PHASE_EVENT = """
INSERT INTO agent_logs (event_uid, host, session_id, event_category, event_type, occurred_at, payload,
    payload_bytes, workflow_slug)
SELECT %(uid)s, %(host)s, %(session_id)s, 'phase', %(event_type)s, %(occurred_at)s, %(payload)s,
    %(payload_bytes)s, %(slug)s
WHERE NOT EXISTS (SELECT 1 FROM agent_logs WHERE event_uid = %(uid)s)
ON CONFLICT (event_uid, occurred_at) DO NOTHING
"""

STATUS_DAEMONS = """
SELECT host, pid, version, started_at, last_heartbeat, events_ingested, backlog_files, last_error, stale,
    state, stopped_at
FROM daemon_status ORDER BY host, started_at DESC
"""

STATUS_COUNTS = """
SELECT host, max(occurred_at) AS last_event, max(ingested_at) AS last_ingested, count(*) AS events
FROM agent_logs GROUP BY host ORDER BY host
"""

# --- transcripts --------------------------------------------------------------------------

REGISTER_TRANSCRIPTS = """
INSERT INTO transcript_files (host, path, claude_session_id, claude_agent_id)
SELECT %s, p, s, a FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(p, s, a)
ON CONFLICT (host, path) DO NOTHING
"""

SELECT_TRANSCRIPTS = """
SELECT path, claude_session_id, claude_agent_id, byte_offset, file_dev, file_ino, head_sha256,
    last_prompt_id, missing_since
FROM transcript_files WHERE host = %s ORDER BY path
"""

SELECT_TRANSCRIPTS_BY_PATH = """
SELECT path, claude_session_id, claude_agent_id, byte_offset, file_dev, file_ino, head_sha256,
    last_prompt_id, missing_since
FROM transcript_files WHERE host = %s AND path = ANY(%s::text[]) ORDER BY path
"""

MARK_TRANSCRIPT_MISSING = """
UPDATE transcript_files SET missing_since = now(), updated_at = now()
WHERE host = %s AND path = %s AND missing_since IS NULL
"""

# Every file of one transaction at once (one element per path).
UPDATE_TRANSCRIPT_OFFSETS = """
UPDATE transcript_files t SET byte_offset = u.byte_offset, file_dev = u.dev, file_ino = u.ino,
    head_sha256 = u.head, last_prompt_id = u.prompt_id, lines_read = t.lines_read + u.lines,
    missing_since = NULL, updated_at = now()
FROM unnest(%(path)s::text[], %(offset)s::bigint[], %(dev)s::bigint[], %(ino)s::bigint[],
            %(head)s::text[], %(prompt_id)s::text[], %(lines)s::bigint[])
    AS u(path, byte_offset, dev, ino, head, prompt_id, lines)
WHERE t.host = %(host)s AND t.path = u.path
"""

# Agents seen only in transcripts (e.g. backfilled history): main rows first, then subagents.
ENSURE_AGENTS = """
INSERT INTO agents AS a (host, sdk_session_id, claude_agent_id, parent_agent_id, session_id)
SELECT %s, u.sid, u.aid, p.id, p.session_id
FROM unnest(%s::text[], %s::text[]) AS u(sid, aid)
LEFT JOIN agents p ON u.aid IS NOT NULL AND p.sdk_session_id = u.sid AND p.claude_agent_id IS NULL
ON CONFLICT (sdk_session_id, claude_agent_id) WHERE sdk_session_id IS NOT NULL DO NOTHING
"""

CREATE_USAGE_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_usage (
    message_id text, request_id text, claude_session_id text, claude_agent_id text, prompt_id text,
    model text, input_tokens bigint, output_tokens bigint, cache_write_5m_tokens bigint,
    cache_write_1h_tokens bigint, cache_read_tokens bigint, web_search_requests bigint,
    web_fetch_requests bigint, speed text, service_tier text, inference_geo text,
    occurred_at timestamptz, is_sidechain boolean, host text, transcript_path text,
    cwd text, git_branch text
) ON COMMIT DELETE ROWS
"""

COPY_USAGE = """
COPY ingest_usage (message_id, request_id, claude_session_id, claude_agent_id, prompt_id, model,
    input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens,
    web_search_requests, web_fetch_requests, speed, service_tier, inference_geo, occurred_at,
    is_sidechain, host, transcript_path, cwd, git_branch) FROM STDIN
"""

# The model an agent used, from its responses, where no event or state.json named one:
# (session, subagent or NULL, model of its latest response), one element per agent.
FILL_AGENT_MODELS = """
UPDATE agents a SET model = i.model, updated_at = now()
FROM unnest(%s::text[], %s::text[], %s::text[]) AS i(claude_session_id, claude_agent_id, model)
WHERE a.model IS NULL AND a.sdk_session_id = i.claude_session_id
  AND coalesce(a.claude_agent_id, '') = coalesce(i.claude_agent_id, '')
"""

# Duplicates of one response keep the largest value per field; a non-sidechain copy's
# attribution wins. Rows that would not change are left alone (a re-read changes nothing).
UPSERT_USAGE = """
INSERT INTO token_usage AS t (message_id, request_id, claude_session_id, claude_agent_id, agent_id,
    prompt_id, model, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    cache_read_tokens, web_search_requests, web_fetch_requests, speed, service_tier, inference_geo,
    occurred_at, is_sidechain, host, transcript_path, cwd, git_branch)
SELECT i.message_id, i.request_id, i.claude_session_id, i.claude_agent_id, a.id, i.prompt_id, i.model,
    i.input_tokens, i.output_tokens, i.cache_write_5m_tokens, i.cache_write_1h_tokens,
    i.cache_read_tokens, i.web_search_requests, i.web_fetch_requests, i.speed, i.service_tier,
    i.inference_geo, i.occurred_at, i.is_sidechain, i.host, i.transcript_path, i.cwd, i.git_branch
FROM ingest_usage i
LEFT JOIN agents a
    ON a.sdk_session_id = i.claude_session_id
   AND coalesce(a.claude_agent_id, '') = coalesce(i.claude_agent_id, '')
ON CONFLICT (message_id, request_id) DO UPDATE SET
    input_tokens = greatest(t.input_tokens, EXCLUDED.input_tokens),
    output_tokens = greatest(t.output_tokens, EXCLUDED.output_tokens),
    cache_write_5m_tokens = greatest(t.cache_write_5m_tokens, EXCLUDED.cache_write_5m_tokens),
    cache_write_1h_tokens = greatest(t.cache_write_1h_tokens, EXCLUDED.cache_write_1h_tokens),
    cache_read_tokens = greatest(t.cache_read_tokens, EXCLUDED.cache_read_tokens),
    web_search_requests = greatest(t.web_search_requests, EXCLUDED.web_search_requests),
    web_fetch_requests = greatest(t.web_fetch_requests, EXCLUDED.web_fetch_requests),
    model = coalesce(t.model, EXCLUDED.model),
    prompt_id = coalesce(t.prompt_id, EXCLUDED.prompt_id),
    speed = coalesce(t.speed, EXCLUDED.speed),
    service_tier = coalesce(t.service_tier, EXCLUDED.service_tier),
    inference_geo = coalesce(t.inference_geo, EXCLUDED.inference_geo),
    cwd = coalesce(t.cwd, EXCLUDED.cwd),
    git_branch = coalesce(t.git_branch, EXCLUDED.git_branch),
    occurred_at = least(t.occurred_at, EXCLUDED.occurred_at),
    claude_session_id = CASE WHEN t.is_sidechain AND NOT EXCLUDED.is_sidechain
                             THEN EXCLUDED.claude_session_id ELSE t.claude_session_id END,
    claude_agent_id = CASE WHEN t.is_sidechain AND NOT EXCLUDED.is_sidechain
                           THEN EXCLUDED.claude_agent_id ELSE t.claude_agent_id END,
    agent_id = CASE WHEN t.is_sidechain AND NOT EXCLUDED.is_sidechain
                    THEN EXCLUDED.agent_id ELSE coalesce(t.agent_id, EXCLUDED.agent_id) END,
    transcript_path = CASE WHEN t.is_sidechain AND NOT EXCLUDED.is_sidechain
                           THEN EXCLUDED.transcript_path ELSE t.transcript_path END,
    is_sidechain = t.is_sidechain AND EXCLUDED.is_sidechain,
    updated_at = now()
WHERE EXCLUDED.input_tokens > t.input_tokens OR EXCLUDED.output_tokens > t.output_tokens
   OR EXCLUDED.cache_write_5m_tokens > t.cache_write_5m_tokens
   OR EXCLUDED.cache_write_1h_tokens > t.cache_write_1h_tokens
   OR EXCLUDED.cache_read_tokens > t.cache_read_tokens
   OR EXCLUDED.web_search_requests > t.web_search_requests
   OR EXCLUDED.web_fetch_requests > t.web_fetch_requests
   OR (t.is_sidechain AND NOT EXCLUDED.is_sidechain)
   OR (t.agent_id IS NULL AND EXCLUDED.agent_id IS NOT NULL)
   OR (t.model IS NULL AND EXCLUDED.model IS NOT NULL)
   OR (t.prompt_id IS NULL AND EXCLUDED.prompt_id IS NOT NULL)
   OR (t.cwd IS NULL AND EXCLUDED.cwd IS NOT NULL)
RETURNING (xmax = 0) AS inserted
"""

# --- prices -------------------------------------------------------------------------------

PRICE_COLUMNS = (
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_write_5m_usd_per_mtok",
    "cache_write_1h_usd_per_mtok",
    "cache_read_usd_per_mtok",
    "long_context_threshold_tokens",
    "long_context_input_multiplier",
    "long_context_output_multiplier",
    "fast_multiplier",
    "data_residency_multiplier",
    "web_search_usd_per_1k",
)

SELECT_PRICES = """
SELECT model_prefix, effective_from::text,
    input_usd_per_mtok, output_usd_per_mtok, cache_write_5m_usd_per_mtok,
    cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok, long_context_threshold_tokens,
    long_context_input_multiplier, long_context_output_multiplier, fast_multiplier,
    data_residency_multiplier, web_search_usd_per_1k,
    note
FROM prices ORDER BY model_prefix, effective_from
"""

SELECT_LATEST_PRICE = """
SELECT input_usd_per_mtok, output_usd_per_mtok, cache_write_5m_usd_per_mtok,
    cache_write_1h_usd_per_mtok, cache_read_usd_per_mtok, long_context_threshold_tokens,
    long_context_input_multiplier, long_context_output_multiplier, fast_multiplier,
    data_residency_multiplier, web_search_usd_per_1k
FROM prices WHERE model_prefix = %s ORDER BY effective_from DESC LIMIT 1
"""


# --- prices: set that updates, export and import (issue 11, item 5) ----------------------

# The row `prices set` starts from when one exists at exactly that effective_from.
SELECT_PRICE_AT = f"""
SELECT {", ".join(PRICE_COLUMNS)}, note
FROM prices WHERE model_prefix = %s AND effective_from = %s::timestamptz
"""  # noqa: S608 - names from the PRICE_COLUMNS constant, values bound as parameters

# Upsert by (model_prefix, effective_from); a row equal to what is there is left alone and
# returns nothing, so the caller can tell added (true), updated (false) and unchanged (no row).
UPSERT_PRICE = f"""
INSERT INTO prices AS p (model_prefix, effective_from, {", ".join(PRICE_COLUMNS)}, note)
VALUES (%(model_prefix)s, %(effective_from)s::timestamptz,
    {", ".join(f"%({c})s" for c in PRICE_COLUMNS)}, %(note)s)
ON CONFLICT (model_prefix, effective_from) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in (*PRICE_COLUMNS, "note"))}
WHERE ({", ".join(f"p.{c}" for c in (*PRICE_COLUMNS, "note"))})
    IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in (*PRICE_COLUMNS, "note"))})
RETURNING (xmax = 0) AS inserted
"""  # noqa: S608 - names from the PRICE_COLUMNS constant, values bound as parameters

# Every row for `prices export`: effective_from as UTC text ('-infinity' stays as it is),
# ordered so that two exports of the same table are byte-identical.
SELECT_PRICES_FOR_EXPORT = f"""
SELECT model_prefix, (effective_from AT TIME ZONE 'UTC')::text, {", ".join(PRICE_COLUMNS)}, note
FROM prices ORDER BY model_prefix, effective_from
"""  # noqa: S608 - names from the PRICE_COLUMNS constant, values bound as parameters

SELECT_UNPRICED_MODELS = """
SELECT nullif(model, ''), sum(unpriced_responses)::bigint FROM usage_hourly
GROUP BY 1 HAVING sum(unpriced_responses) > 0 ORDER BY 2 DESC
"""

# --- cost engine: Claude Code's cost-state lines, price drift -------------------------------

# Sessions whose transcript had a compact_boundary line: (host, session ids).
MARK_COST_STATES_COMPACTED = """
INSERT INTO cost_states AS c (claude_session_id, host, compacted)
SELECT sid, %s, true FROM unnest(%s::text[]) AS sid
ON CONFLICT (claude_session_id) DO UPDATE SET compacted = true, updated_at = now()
WHERE NOT c.compacted
"""

# A session's cost state replaces the stored one only when later: larger (totalDuration,
# totalCostUSD); its per-model figures are written only then (daemon/cost_states.py docstring).
UPSERT_COST_STATE = """
WITH s AS (
    INSERT INTO cost_states AS c (claude_session_id, host, transcript_path, total_cost_usd,
        total_api_duration_ms, total_api_duration_without_retries_ms, total_tool_duration_ms,
        total_duration_ms, lines_added, lines_removed, started_at, has_unknown_model_cost)
    VALUES (%(sid)s, %(host)s, %(path)s, %(total_cost_usd)s, %(api_ms)s, %(api_nr_ms)s, %(tool_ms)s,
        %(duration_ms)s, %(lines_added)s, %(lines_removed)s, %(started_at)s, %(unknown)s)
    ON CONFLICT (claude_session_id) DO UPDATE SET
        host = EXCLUDED.host,
        transcript_path = EXCLUDED.transcript_path,
        total_cost_usd = EXCLUDED.total_cost_usd,
        total_api_duration_ms = EXCLUDED.total_api_duration_ms,
        total_api_duration_without_retries_ms = EXCLUDED.total_api_duration_without_retries_ms,
        total_tool_duration_ms = EXCLUDED.total_tool_duration_ms,
        total_duration_ms = EXCLUDED.total_duration_ms,
        lines_added = EXCLUDED.lines_added,
        lines_removed = EXCLUDED.lines_removed,
        started_at = EXCLUDED.started_at,
        has_unknown_model_cost = EXCLUDED.has_unknown_model_cost,
        updated_at = now()
    WHERE c.total_cost_usd IS NULL
       OR (coalesce(EXCLUDED.total_duration_ms, -1), EXCLUDED.total_cost_usd)
          > (coalesce(c.total_duration_ms, -1), c.total_cost_usd)
    RETURNING claude_session_id
)
INSERT INTO cost_state_models AS m (claude_session_id, model, input_tokens, output_tokens,
    thinking_tokens, cache_read_tokens, cache_write_tokens, cache_write_5m_tokens,
    cache_write_1h_tokens, web_search_requests, cost_usd)
SELECT s.claude_session_id, x.*
FROM s CROSS JOIN unnest(%(model)s::text[], %(input)s::bigint[], %(output)s::bigint[],
    %(thinking)s::bigint[], %(cache_read)s::bigint[], %(cache_write)s::bigint[], %(cw5m)s::bigint[],
    %(cw1h)s::bigint[], %(web_search)s::bigint[], %(cost)s::numeric[]) AS x
ON CONFLICT (claude_session_id, model) DO UPDATE SET
    input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens,
    thinking_tokens = EXCLUDED.thinking_tokens,
    cache_read_tokens = EXCLUDED.cache_read_tokens,
    cache_write_tokens = EXCLUDED.cache_write_tokens,
    cache_write_5m_tokens = EXCLUDED.cache_write_5m_tokens,
    cache_write_1h_tokens = EXCLUDED.cache_write_1h_tokens,
    web_search_requests = EXCLUDED.web_search_requests,
    cost_usd = EXCLUDED.cost_usd,
    updated_at = now()
"""

# Price drift: every model seen in token_usage that has no price, or whose cost differs from
# Claude Code's own by more than 1e-6 USD in some session (cost_check). One row per model:
# (model, its price key, unpriced responses, sessions that differ, largest |difference|, reasons).
SELECT_PRICE_DRIFT = """
WITH unpriced AS (
    SELECT coalesce(model, '') AS k, sum(unpriced_responses)::bigint AS unpriced_responses
    FROM usage_hourly
    GROUP BY 1
    HAVING sum(unpriced_responses) > 0
), differs AS (
    SELECT coalesce(model, '') AS k, count(*) AS sessions, max(abs(difference_usd)) AS max_difference_usd,
        array_agg(DISTINCT reason) FILTER (WHERE reason IS NOT NULL) AS reasons
    FROM cost_check
    GROUP BY 1
)
SELECT nullif(k, '') AS model, model_price_key(nullif(k, '')) AS price_key,
    coalesce(u.unpriced_responses, 0) AS unpriced_responses,
    coalesce(d.sessions, 0) AS sessions_differing, d.max_difference_usd,
    coalesce(d.reasons, '{}') AS reasons
FROM unpriced u
FULL JOIN differs d USING (k)
ORDER BY 1 NULLS FIRST
"""

# --- heartbeats ---------------------------------------------------------------------------

UPSERT_HEARTBEAT = """
INSERT INTO daemon_heartbeats AS h (host, pid, version, spool, started_at, last_heartbeat, events_ingested,
    quarantined, backlog_files, backlog_bytes, oldest_backlog_s, last_error, last_error_at)
VALUES (%(host)s, %(pid)s, %(version)s, %(spool)s, %(started_at)s, now(), %(events)s, %(quarantined)s,
    %(backlog_files)s, %(backlog_bytes)s, %(oldest_s)s, %(last_error)s, %(last_error_at)s)
ON CONFLICT (host, pid, started_at) DO UPDATE SET
    last_heartbeat = now(), events_ingested = EXCLUDED.events_ingested, quarantined = EXCLUDED.quarantined,
    backlog_files = EXCLUDED.backlog_files, backlog_bytes = EXCLUDED.backlog_bytes,
    oldest_backlog_s = EXCLUDED.oldest_backlog_s,
    last_error = coalesce(EXCLUDED.last_error, h.last_error),
    last_error_at = coalesce(EXCLUDED.last_error_at, h.last_error_at)
"""

# reliability-processes: a daemon that stops cleanly says so (status shows "stopped", not STALE)
MARK_HEARTBEAT_STOPPED = """
UPDATE daemon_heartbeats SET stopped_at = now(), last_heartbeat = now(),
    events_ingested = %(events)s, quarantined = %(quarantined)s
WHERE host = %(host)s AND pid = %(pid)s AND started_at = %(started_at)s
"""

# --- migrations (daemon/migrations.py) -----------------------------------------------------

# Transaction-scoped advisory locks: released by the COMMIT or ROLLBACK that ends the work.
TRY_XACT_LOCK = "SELECT pg_try_advisory_xact_lock(%s)"
XACT_LOCK = "SELECT pg_advisory_xact_lock(%s)"

# What a newer schema offers the tables this code writes (columns visible to this role).
SELECT_TABLE_COLUMNS = """
SELECT table_name::text, column_name::text, is_nullable = 'YES',
    column_default IS NOT NULL OR is_identity = 'YES' OR is_generated = 'ALWAYS'
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY (%s::text[])
"""

# Unique indexes (the arbiters of ON CONFLICT), as sorted column lists per table.
SELECT_UNIQUE_KEYS = """
SELECT t.relname::text, array_agg(a.attname::text ORDER BY a.attname::text)
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (i.indkey)
WHERE i.indisunique AND t.relnamespace = current_schema()::regnamespace AND t.relname = ANY (%s::text[])
GROUP BY i.indexrelid, t.relname
"""

# --- partitions (daemon/partitions.py): agent_logs and messages, one partition per month ------
# {table} is the partitioned parent (partitions.TABLES); %s as a regclass is its name.

SET_LOCAL_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"
LOCK_PARTITIONED = sql.SQL("LOCK TABLE ONLY {table} IN ACCESS EXCLUSIVE MODE")
SELECT_MONTH_START = "SELECT date_trunc('month', now(), 'UTC')"
SELECT_NOW = "SELECT now()"

# Partitions of a table with their bounds; lower/upper are NULL for DEFAULT (and for bounds
# we did not write, such as MINVALUE), so such partitions are never pruned.
SELECT_PARTITIONS = r"""
SELECT c.relname::text, c.oid = p.partdefid,
    b.bounds[1]::timestamptz, b.bounds[2]::timestamptz
FROM pg_partitioned_table p
JOIN pg_inherits i ON i.inhparent = p.partrelid
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (
    SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                        '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$') AS bounds
) b
WHERE p.partrelid = %s::regclass
ORDER BY 3 NULLS FIRST, 1
"""

# The columns a moved row carries (generated ones, such as messages.search_vector, are computed).
SELECT_PARTITIONED_COLUMNS = """
SELECT attname::text FROM pg_attribute
WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
ORDER BY attnum
"""

CREATE_MONTH_PARTITION = sql.SQL(
    "CREATE TABLE {partition} PARTITION OF {table} FOR VALUES FROM ({lower}) TO ({upper})"
)

# Rows of a month that landed in DEFAULT move into that month's new partition (one transaction,
# the table locked): PostgreSQL refuses the partition while DEFAULT holds rows of its range.
STASH_DEFAULT_ROWS = sql.SQL(
    "CREATE TEMPORARY TABLE {moving} ON COMMIT DROP AS SELECT {columns} FROM ONLY {default}"
    " WHERE occurred_at >= {lower} AND occurred_at < {upper}"
)
DELETE_DEFAULT_ROWS = sql.SQL(
    "DELETE FROM ONLY {default} WHERE occurred_at >= {lower} AND occurred_at < {upper}"
)
RESTORE_MOVED_ROWS = sql.SQL(
    "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {moving}"
)

# Months with rows in DEFAULT (UTC month starts), for `maintain --split-default`.
SELECT_DEFAULT_MONTHS = sql.SQL(
    "SELECT DISTINCT date_trunc('month', occurred_at, 'UTC') FROM ONLY {default}"
    " WHERE occurred_at >= '0001-01-01 00:00:00+00' AND occurred_at < '10000-01-01 00:00:00+00'"
    " ORDER BY 1"
)

COUNT_PARTITION_ROWS = sql.SQL("SELECT count(*) FROM ONLY {partition}")
COUNT_ROWS_BEFORE = sql.SQL("SELECT count(*) FROM ONLY {partition} WHERE occurred_at < %s")
# Rows without a timestamp (messages only; PostgreSQL routes a NULL partition key to DEFAULT).
COUNT_UNDATED_ROWS = sql.SQL("SELECT count(*) FROM ONLY {partition} WHERE occurred_at IS NULL")
DROP_PARTITION = sql.SQL("DROP TABLE {partition}")

# --- conversation archive (daemon/messages.py, daemon/conversations.py) ---------------------

CREATE_MESSAGES_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_messages (
    uuid text, parent_uuid text, claude_session_id text, claude_agent_id text, host text,
    occurred_at timestamptz, role text, entry_type text, model text, cwd text, git_branch text,
    prompt_id text, message_id text, tool_use_id text, tool_name text, spawned_agent_id text,
    is_sidechain boolean, content text, text text, content_bytes bigint, content_sha256 text,
    transforms text[], transcript_path text, seq bigint
) ON COMMIT DELETE ROWS
"""

COPY_MESSAGES = """
COPY ingest_messages (uuid, parent_uuid, claude_session_id, claude_agent_id, host, occurred_at,
    role, entry_type, model, cwd, git_branch, prompt_id, message_id, tool_use_id, tool_name,
    spawned_agent_id, is_sidechain, content, text, content_bytes, content_sha256, transforms,
    transcript_path, seq) FROM STDIN
"""

# One row per transcript uuid: a copy (resume, sidechain replay, a re-read) changes nothing; a
# non-sidechain copy wins within a batch. Rows are inserted in reading order (seq), so `id`
# follows the transcript's line order. The key is (uuid, occurred_at) NULLS NOT DISTINCT (messages
# is partitioned by occurred_at, alembic 0008b): a copy carries its entry's uuid and timestamp.
INSERT_MESSAGES = """
INSERT INTO messages (uuid, parent_uuid, claude_session_id, claude_agent_id, agent_id, host,
    occurred_at, role, entry_type, model, cwd, git_branch, prompt_id, message_id, tool_use_id,
    tool_name, spawned_agent_id, is_sidechain, content, text, content_bytes, content_sha256,
    transforms, transcript_path)
SELECT d.uuid, d.parent_uuid, d.claude_session_id, d.claude_agent_id, a.id, d.host,
    d.occurred_at, d.role, d.entry_type, d.model, d.cwd, d.git_branch, d.prompt_id, d.message_id,
    d.tool_use_id, d.tool_name, d.spawned_agent_id, d.is_sidechain, d.content::jsonb, d.text,
    d.content_bytes, d.content_sha256, d.transforms, d.transcript_path
FROM (
    SELECT DISTINCT ON (i.uuid) i.* FROM ingest_messages i ORDER BY i.uuid, i.is_sidechain, i.seq
) d
LEFT JOIN agents a
    ON a.sdk_session_id = d.claude_session_id
   AND coalesce(a.claude_agent_id, '') = coalesce(d.claude_agent_id, '')
ORDER BY d.seq
ON CONFLICT (uuid, occurred_at) DO NOTHING
"""

# Matches of a web-search query, newest first; snippets mark hits with \x01 … \x02.
SEARCH_MESSAGES = """
SELECT m.claude_session_id, m.claude_agent_id, m.occurred_at, m.role, m.entry_type,
    coalesce(m.cwd, a.cwd) AS project, m.uuid,
    ts_headline('english', m.text, q,
                'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=30, MinWords=10')
        AS snippet
FROM messages m
CROSS JOIN websearch_to_tsquery('english', %(query)s) q
LEFT JOIN agents a ON a.id = m.agent_id
WHERE m.search_vector @@ q
  AND (%(since)s::timestamptz IS NULL OR m.occurred_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR m.occurred_at < %(until)s::timestamptz)
  AND (%(role)s::text IS NULL OR m.role = %(role)s::text)
  AND (%(session)s::text IS NULL OR m.claude_session_id LIKE %(session)s::text || '%%')
  AND (%(project)s::text IS NULL OR coalesce(m.cwd, a.cwd) LIKE '%%' || %(project)s::text || '%%')
ORDER BY m.occurred_at DESC, m.id DESC
LIMIT %(limit)s
"""

# Sessions whose id starts with the given text (`show` accepts a prefix).
SELECT_MESSAGE_SESSIONS = """
SELECT DISTINCT claude_session_id FROM messages WHERE claude_session_id LIKE %s || '%%' LIMIT 2
"""

SELECT_SESSION_MESSAGES = """
SELECT uuid, parent_uuid, claude_agent_id, occurred_at, role, entry_type, model, cwd, prompt_id,
    tool_use_id, tool_name, spawned_agent_id, content, text, content_bytes, transforms
FROM messages WHERE claude_session_id = %s
ORDER BY id
"""

SELECT_SESSION_TURNS = """
SELECT prompt_id, duration_ms, tool_uses, input_tokens, output_tokens, cost_usd
FROM conversation_turns WHERE claude_session_id = %s
"""

# --- embedded cluster (daemon/cluster.py) ---------------------------------------------------

SELECT_DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"
CREATE_DATABASE = sql.SQL("CREATE DATABASE {}")

# --- reports (daemon/reports.py, budgets.py, alembic 0009) ----------------------------------
# Every report reads the views (usage_attribution, usage_blocks, budget_status), so psql users
# see the same numbers. Filters: since/until are dates in zone tz (until inclusive); NULL means
# no bound. group_a/group_b name what a row is keyed by (see reports.py).

# A report reads usage_rollup (hourly, fast) when the zone's offsets are whole hours, else
# usage_attribution (per response); both are shaped alike here, so sums over either agree.
REPORT_SOURCES = {
    "rollup": """(SELECT hour_utc AS at, claude_session_id, model, host, project, git_branch,
    responses, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    cache_read_tokens, total_tokens, priced_cost_usd, unpriced_responses, cache_savings_usd,
    first_at, last_at
    FROM usage_rollup WHERE isfinite(hour_utc)) u""",
    "responses": """(SELECT occurred_at AS at, claude_session_id, model, host, project, git_branch,
    1 AS responses, input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    cache_read_tokens, total_tokens, coalesce(cost_usd, 0) AS priced_cost_usd,
    unpriced::int AS unpriced_responses, coalesce(cache_savings_usd, 0) AS cache_savings_usd,
    occurred_at AS first_at, occurred_at AS last_at
    FROM usage_attribution WHERE occurred_at IS NOT NULL) u""",
}

_REPORT_FILTER = """
WHERE (%(since)s::date IS NULL OR at >= (%(since)s::date::timestamp AT TIME ZONE %(tz)s))
  AND (%(until)s::date IS NULL OR at < ((%(until)s::date + 1)::timestamp AT TIME ZONE %(tz)s))
  AND (%(project)s::text IS NULL OR project = %(project)s)
  AND (%(host)s::text IS NULL OR host = %(host)s)
"""

_REPORT_SUMS = """
    sum(responses)::bigint AS responses,
    count(DISTINCT claude_session_id) AS sessions,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_write_5m_tokens + cache_write_1h_tokens) AS cache_write_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(total_tokens) AS total_tokens,
    CASE WHEN sum(unpriced_responses) > 0 THEN NULL ELSE sum(priced_cost_usd) END AS cost_usd,
    sum(priced_cost_usd) AS priced_cost_usd,
    sum(cache_savings_usd) AS cache_savings_usd
"""

# daily / weekly / monthly: unit is 'day', 'week' (ISO, from Monday) or 'month'.
_REPORT_PERIODS = (
    """
SELECT date_trunc(%(unit)s, at AT TIME ZONE %(tz)s)::date AS period,
    CASE WHEN %(breakdown)s THEN coalesce(model, '(unknown)') END AS model,"""
    + _REPORT_SUMS
    + "FROM {source}"
    + _REPORT_FILTER
    + "GROUP BY 1, 2 ORDER BY 1, 2"
)

_REPORT_SESSIONS = (
    """
SELECT u.claude_session_id AS session, min(t.title) AS title, min(u.project) AS project,
    min(u.first_at) AS first_response_at, max(u.last_at) AS last_response_at,
    CASE WHEN %(breakdown)s THEN coalesce(u.model, '(unknown)') END AS model,"""
    + _REPORT_SUMS
    + """FROM {source}
LEFT JOIN claude_session_titles t USING (claude_session_id)"""
    + _REPORT_FILTER
    + "GROUP BY u.claude_session_id, 6 ORDER BY max(u.last_at), 1, 6"
)

_REPORT_PROJECTS = (
    """
SELECT coalesce(project, '(unknown)') AS project,
    CASE WHEN %(branches)s THEN coalesce(git_branch, '(none)') END AS git_branch,
    CASE WHEN %(breakdown)s THEN coalesce(model, '(unknown)') END AS model,"""
    + _REPORT_SUMS
    + "FROM {source}"
    + _REPORT_FILTER
    + "GROUP BY 1, 2, 3 ORDER BY sum(priced_cost_usd) DESC, 1, 2, 3"
)

_REPORT_MODELS = (
    """
SELECT coalesce(model, '(unknown)') AS model,"""
    + _REPORT_SUMS
    + "FROM {source}"
    + _REPORT_FILTER
    + "GROUP BY 1 ORDER BY sum(priced_cost_usd) DESC, 1"
)

# (kind, source) -> statement; kind is 'periods', 'session', 'projects' or 'models'.
REPORT_QUERIES = {
    (kind, name): template.replace("{source}", source)
    for kind, template in (
        ("periods", _REPORT_PERIODS),
        ("session", _REPORT_SESSIONS),
        ("projects", _REPORT_PROJECTS),
        ("models", _REPORT_MODELS),
    )
    for name, source in REPORT_SOURCES.items()
}

REPORT_BLOCKS = """
SELECT start_at, end_at, first_response_at, last_response_at, active, responses, sessions,
    input_tokens, output_tokens, cache_write_5m_tokens + cache_write_1h_tokens AS cache_write_tokens,
    cache_read_tokens, total_tokens, cost_usd, priced_cost_usd, models, tokens_per_minute,
    usd_per_hour, remaining_minutes, projected_tokens, projected_cost_usd
FROM usage_blocks
WHERE (%(since)s::date IS NULL OR end_at > (%(since)s::date::timestamp AT TIME ZONE %(tz)s))
  AND (%(until)s::date IS NULL OR start_at < ((%(until)s::date + 1)::timestamp AT TIME ZONE %(tz)s))
  AND (NOT %(active)s OR active)
ORDER BY start_at
"""

SELECT_BUDGET_STATUS = """
SELECT budget_id, period, project, limit_usd, tz, period_start, period_end, spent_usd,
    used_fraction, exceeded, projected_usd
FROM budget_status
WHERE %(project)s::text IS NULL OR project IN ('', %(project)s)
ORDER BY period, project
"""

CHECK_TIME_ZONE = "SELECT now() AT TIME ZONE %s"

UPSERT_PROJECT_ALIAS = """
INSERT INTO project_aliases (path, name) VALUES (%s, %s)
ON CONFLICT (path) DO UPDATE SET name = EXCLUDED.name
"""
DELETE_PROJECT_ALIAS = "DELETE FROM project_aliases WHERE path = %s"
SELECT_PROJECT_ALIASES = """
SELECT a.name, a.path, count(u.id) AS responses
FROM project_aliases a LEFT JOIN token_usage u ON u.cwd = a.path
GROUP BY a.name, a.path ORDER BY a.name, a.path
"""

UPSERT_BUDGET = """
INSERT INTO budgets (period, project, limit_usd, tz) VALUES (%s, %s, %s, %s)
ON CONFLICT (period, project) DO UPDATE SET limit_usd = EXCLUDED.limit_usd, tz = EXCLUDED.tz
"""
DELETE_BUDGET = "DELETE FROM budgets WHERE period = %s AND project = %s"

# Budgets over their limit in the current period that were not reported yet: the row makes the
# warning happen once per budget and period, whichever daemon (host) sees it first.
INSERT_BUDGET_ALERTS = """
WITH ins AS (
    INSERT INTO budget_alerts (budget_id, period_start, spent_usd)
    SELECT budget_id, period_start, spent_usd FROM budget_status WHERE exceeded
    ON CONFLICT (budget_id, period_start) DO NOTHING
    RETURNING budget_id, period_start, spent_usd
)
SELECT b.id, b.period, b.project, b.limit_usd, b.tz, ins.period_start, ins.spent_usd
FROM ins JOIN budgets b ON b.id = ins.budget_id
ORDER BY b.id
"""

# `session-db top` (daemon/live_view.py): Claude sessions seen within %(window_s)s seconds and not
# ended, each with its subagents, the tool it runs now (a PreToolUse of the last day with no
# PostToolUse/PostToolUseFailure yet) and its priced cost so far (usage_hourly).
TOP_AGENTS = """
WITH live AS (
    SELECT sdk_session_id FROM agents
    WHERE claude_agent_id IS NULL AND sdk_session_id IS NOT NULL
      AND status NOT IN ('complete', 'failed')
      AND last_event_at > now() - make_interval(secs => %(window_s)s)
)
SELECT a.sdk_session_id, a.claude_agent_id, a.agent_type, a.model, a.status, a.host, a.cwd,
    a.started_at, a.last_event_at, t.tool_name, now() - t.occurred_at AS tool_running_for,
    coalesce(c.cost, 0) AS cost_usd
FROM agents a
JOIN live USING (sdk_session_id)
LEFT JOIN LATERAL (
    SELECT p.tool_name, p.occurred_at FROM agent_logs p
    WHERE p.claude_session_id = a.sdk_session_id
      AND p.claude_agent_id IS NOT DISTINCT FROM a.claude_agent_id
      AND p.event_type = 'PreToolUse' AND p.occurred_at > now() - interval '1 day'
      AND NOT EXISTS (
          SELECT 1 FROM agent_logs q
          WHERE q.claude_session_id = p.claude_session_id AND q.tool_use_id = p.tool_use_id
            AND q.event_type IN ('PostToolUse', 'PostToolUseFailure'))
    ORDER BY p.occurred_at DESC LIMIT 1
) t ON true
LEFT JOIN LATERAL (
    SELECT sum(h.priced_cost_usd) AS cost FROM usage_hourly h
    WHERE h.claude_session_id = a.sdk_session_id AND h.agent_id = a.id
) c ON true
ORDER BY a.started_at NULLS LAST, a.sdk_session_id, a.claude_agent_id NULLS FIRST
"""

# `session-db report html` (daemon/html_report.py): tool durations (tool_stats, 0003).
SELECT_TOOL_STATS = """
SELECT tool_name, calls, p50_ms, p95_ms FROM tool_stats
WHERE p50_ms IS NOT NULL ORDER BY p95_ms DESC, tool_name
"""


# --- roles (`session-db roles --apply`; moved from daemon/roles.py) ---------------------------
SELECT_ROLES = "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)"
SELECT_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
COUNT_OWNED = """
SELECT count(*) FROM pg_class c
WHERE pg_get_userbyid(c.relowner) = %s AND c.relnamespace = 'public'::regnamespace
  AND c.relkind IN ('r', 'p', 'v', 'm')
"""
HAS_VERSION_TABLE = "SELECT to_regclass('public.alembic_version') IS NOT NULL"
SELECT_REVISION = "SELECT max(version_num) FROM public.alembic_version"
