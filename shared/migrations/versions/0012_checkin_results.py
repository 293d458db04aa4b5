"""Check-ins: released results, so anonymous answers show only in groups.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26

Owner: the checkins service. One row per check-in: the results as they stood when they were
last released. A release happens only once the check-in has at least
``ATTUNE_CHECKIN_MIN_CLASS_SIZE`` more answers than the previous one covered, so comparing any
two releases never isolates one answer (docs/checkins.md, *Anonymity*). A new table only:
the previous release neither reads nor minds it.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # notes: an anonymous check-in's notes in text order (no emotion, no time, no order of
    # arrival); empty for identified check-ins, whose released results only feed the class
    # picture students see.
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS checkin_results (
            checkin_id   bigint      PRIMARY KEY REFERENCES checkins ON DELETE CASCADE,
            answers      integer     NOT NULL CHECK (answers >= 0),
            pleasantness integer[]   NOT NULL CHECK (cardinality(pleasantness) = 5),
            emotions     jsonb       NOT NULL,
            notes        text[]      NOT NULL DEFAULT '{}',
            released_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP TABLE IF EXISTS checkin_results")
