"""Launch records: a BRIN index on ``created_at`` for the retention purge.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23

Owner: the launch service. Launch records are personal data (subject, roles, course) and are
now deleted after ``ATTUNE_LAUNCH_RETENTION_DAYS``. Rows arrive in ``created_at`` order, so a
BRIN index (a few pages for millions of rows, nothing to maintain per insert until a range is
summarised) finds the expired ones without a B-tree entry per launch or a full scan per purge.
Safe with the previous release: it neither reads nor minds the index.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        "CREATE INDEX IF NOT EXISTS launches_created_brin ON launches USING brin (created_at)"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP INDEX IF EXISTS launches_created_brin")
