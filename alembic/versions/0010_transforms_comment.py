"""The comment on agent_logs.transforms says when payload_sha256 holds the original's hash.

It said "payload_sha256 is then the sha256 of the original bytes" for every transformation,
but redacted rows keep no hash of the original (a hash would let a reader test guesses of a
short password).

Revision ID: 0010
Revises: 0008b
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0008b"
branch_labels = None
depends_on = None

NEW = (
    "Changes made to the payload before storing it (nul_escaped, bom_stripped, truncated…, "
    "redacted…, dropped…). payload_sha256 is the sha256 of the original bytes when the payload "
    "was changed and nothing was redacted; a redacted row keeps no hash of the original."
)
OLD = (
    "Changes made to the payload before storing it, e.g. {nul_escaped}; payload_sha256 is then "
    "the sha256 of the original bytes."
)


def _comment(text: str) -> None:
    quoted = text.replace("'", "''")
    op.execute(f"COMMENT ON COLUMN agent_logs.transforms IS '{quoted}'")


def upgrade() -> None:
    _comment(NEW)


def downgrade() -> None:
    _comment(OLD)
