"""Check-ins: rosters from NRPS, roster sync state, the data-rights audit, recurrence.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

Owner: the checkins service. Additive only (a nullable-free column with a default and new
tables), so the previous release keeps working against the migrated schema.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nrps: the member was listed (active) by the course's last Names and Role Provisioning
    # sync; participation counts those learners when a course has any.
    op.execute("ALTER TABLE course_roster ADD COLUMN nrps boolean NOT NULL DEFAULT false")
    op.execute(
        """
        CREATE TABLE checkin_nrps_sync (
            platform_id     bigint      NOT NULL,
            context_id      text        NOT NULL,
            nrps_url        text        NOT NULL,
            requested_at    timestamptz NOT NULL DEFAULT now(),
            synced_at       timestamptz,
            failures        integer     NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_error      text,
            members         integer,
            PRIMARY KEY (platform_id, context_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX checkin_nrps_sync_due ON checkin_nrps_sync (next_attempt_at)"
        " WHERE next_attempt_at IS NOT NULL"
    )
    # Every export, erasure and retention purge. actor: a subject for exports, 'operator' or
    # 'retention' otherwise; target: what the action was about (never an answer's content).
    op.execute(
        """
        CREATE TABLE checkin_audit (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at          timestamptz NOT NULL DEFAULT now(),
            action      text        NOT NULL,
            actor       text        NOT NULL,
            platform_id bigint,
            context_id  text,
            subject     text,
            details     jsonb       NOT NULL DEFAULT '{}'
        )
        """
    )
    op.execute("CREATE INDEX checkin_audit_at ON checkin_audit (at)")
    # Recurrence: 'daily' or 'weekly' on recurrence_days (ISO weekdays 1-7) at the first
    # occurrence's local time in recurrence_tz; next_created marks an occurrence whose
    # successor exists, so the scheduler creates each successor once.
    op.execute(
        """
        ALTER TABLE checkins
            ADD COLUMN recurrence text CHECK (recurrence IN ('daily', 'weekly')),
            ADD COLUMN recurrence_days smallint[] NOT NULL DEFAULT '{}',
            ADD COLUMN recurrence_tz text,
            ADD COLUMN next_created boolean NOT NULL DEFAULT false
        """
    )
    op.execute(
        "CREATE INDEX checkins_recurring ON checkins (opens_at)"
        " WHERE recurrence IS NOT NULL AND NOT next_created"
    )


def downgrade() -> None:
    op.execute("DROP INDEX checkins_recurring")
    op.execute(
        "ALTER TABLE checkins DROP COLUMN recurrence, DROP COLUMN recurrence_days,"
        " DROP COLUMN recurrence_tz, DROP COLUMN next_created"
    )
    op.execute("DROP TABLE checkin_audit")
    op.execute("DROP TABLE checkin_nrps_sync")
    op.execute("ALTER TABLE course_roster DROP COLUMN nrps")
