"""Launch records: drop the ``launches_context`` index, which no query reads.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

Owner: the launch service. Every launch paid for an entry in ``launches (platform_id,
context_id)`` (one of the eight index entries a launch writes) and no request looks launches
up by context (bench/launch.py, docs/performance.md); the operator's ``attune launches erase
--context-id`` (added later) scans the table instead, which a rare command can afford. A query
that needs it later adds the index it needs. Safe with the previous release: it never read by
this index either.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP INDEX IF EXISTS launches_context")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("CREATE INDEX IF NOT EXISTS launches_context ON launches (platform_id, context_id)")
