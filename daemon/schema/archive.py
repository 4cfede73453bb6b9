"""The conversation archive (alembic 0008, daemon/messages.py): messages."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from daemon.schema.base import metadata

# --- conversation archive (alembic 0008, daemon/messages.py) ----------------------------------

MESSAGE_ROLES = ("user", "assistant", "system", "attachment")
# Partitioned by UTC month of occurred_at (alembic 0008b, daemon/partitions.py) like agent_logs:
# every unique key includes the partition column. occurred_at stays nullable (an entry without a
# timestamp lands in messages_default), so there is no primary key and the keys are NULLS NOT
# DISTINCT: the archive key is (uuid, occurred_at).
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
    sa.Column("uuid", sa.Text, nullable=False),
    sa.Column("parent_uuid", sa.Text),
    sa.Column("claude_session_id", sa.Text),
    sa.Column("claude_agent_id", sa.Text),
    sa.Column(
        "agent_id", pg.UUID(as_uuid=True), sa.ForeignKey("agents.id", name="messages_agent_id_fkey")
    ),
    sa.Column("host", sa.Text),
    sa.Column(
        "occurred_at",
        sa.DateTime(timezone=True),
        comment="The entry's timestamp; NULL if it has none (the row is then in messages_default "
        "and never pruned).",
    ),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column(
        "entry_type",
        sa.Text,
        nullable=False,
        comment="prompt, meta, compact_summary, tool_result, text, thinking, redacted_thinking, "
        "tool_use, the system subtype, or the attachment type.",
    ),
    sa.Column("model", sa.Text),
    sa.Column("cwd", sa.Text),
    sa.Column("git_branch", sa.Text),
    sa.Column("prompt_id", sa.Text),
    sa.Column("message_id", sa.Text),
    sa.Column("tool_use_id", sa.Text),
    sa.Column("tool_name", sa.Text),
    sa.Column(
        "spawned_agent_id",
        sa.Text,
        comment="For the tool_result of an Agent call: the subagent (claude_agent_id) it ran.",
    ),
    sa.Column("is_sidechain", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column(
        "content",
        pg.JSONB,
        comment="The entry's content (a block, the prompt, the system fields; metadata only for "
        "attachments and with archive = metadata), redacted and capped like event payloads.",
    ),
    sa.Column(
        "text",
        sa.Text,
        comment="The searchable plain text of content; NULL with archive = metadata.",
    ),
    sa.Column(
        "content_bytes",
        sa.BigInteger,
        nullable=False,
        server_default="0",
        comment="UTF-8 bytes of the content JSON as read, before redaction and caps.",
    ),
    sa.Column(
        "content_sha256",
        sa.Text,
        comment="sha256 of the content JSON as read, kept when a cap changed it and nothing was redacted.",
    ),
    sa.Column("transforms", pg.ARRAY(sa.Text)),
    sa.Column("transcript_path", sa.Text),
    sa.Column(
        "ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "search_vector",
        pg.TSVECTOR,
        sa.Computed("to_tsvector('english'::regconfig, coalesce(text, ''))", persisted=True),
    ),
    sa.UniqueConstraint(
        "id", "occurred_at", name="messages_id_occurred_at_key", postgresql_nulls_not_distinct=True
    ),
    sa.UniqueConstraint(
        "uuid",
        "occurred_at",
        name="messages_uuid_occurred_at_key",
        postgresql_nulls_not_distinct=True,
    ),
    sa.Index("messages_claude_session_time_idx", "claude_session_id", "occurred_at"),
    sa.Index("messages_agent_idx", "agent_id"),
    sa.Index("messages_occurred_idx", "occurred_at"),
    sa.Index(
        "messages_prompt_idx",
        "claude_session_id",
        "prompt_id",
        postgresql_where=sa.text("prompt_id IS NOT NULL"),
    ),
    sa.Index(
        "messages_tool_use_id_idx",
        "tool_use_id",
        postgresql_where=sa.text("tool_use_id IS NOT NULL"),
    ),
    sa.Index("messages_search_idx", "search_vector", postgresql_using="gin"),
    comment="The conversation archive: one row per transcript entry that carries conversation "
    "(prompts, replies, thinking, tool calls and results, system entries, compaction summaries; "
    "attachments as metadata), keyed by the transcript uuid (unique with occurred_at). Partitioned "
    "by UTC month of occurred_at (messages_YYYY_MM, messages_default for months without a partition "
    "and rows without a timestamp).",
)
