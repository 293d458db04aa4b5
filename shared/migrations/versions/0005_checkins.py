"""Check-ins, their responses, and the course roster projection.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Owner: the checkins service. New tables only, so the previous release keeps working against
the migrated schema. A course is (platform_id, context_id); every query of the service is
scoped by both, taken from the launch token.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE checkins (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform_id     bigint      NOT NULL,
            context_id      text        NOT NULL,
            question        text        NOT NULL CHECK (length(question) BETWEEN 1 AND 300),
            response_kind   text        NOT NULL DEFAULT 'emotion'
                            CHECK (response_kind IN ('emotion')),
            vocabulary      text        NOT NULL DEFAULT 'full'
                            CHECK (vocabulary IN ('full', 'simple')),
            allow_note      boolean     NOT NULL DEFAULT false,
            anonymous       boolean     NOT NULL DEFAULT false,
            opens_at        timestamptz NOT NULL DEFAULT now(),
            closes_at       timestamptz NOT NULL,
            created_by      text        NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            closed_early_at timestamptz,
            CHECK (closes_at > opens_at)
        )
        """
    )
    op.execute("CREATE INDEX checkins_course ON checkins (platform_id, context_id, opens_at DESC)")
    # respondent is the LMS subject for identified check-ins and, for anonymous ones, a keyed
    # HMAC pseudonym (per check-in) that only the respondent's own launch can recompute.
    op.execute(
        """
        CREATE TABLE checkin_responses (
            checkin_id   bigint      NOT NULL REFERENCES checkins ON DELETE CASCADE,
            respondent   text        NOT NULL,
            emotion      text        NOT NULL CHECK (length(emotion) BETWEEN 1 AND 40),
            pleasantness smallint    NOT NULL CHECK (pleasantness BETWEEN 1 AND 5),
            note         text        CHECK (length(note) <= 500),
            answered_at  timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (checkin_id, respondent)
        )
        """
    )
    # Filled from attune.launch.v1 by the checkins roster consumer.
    op.execute(
        """
        CREATE TABLE course_roster (
            platform_id bigint      NOT NULL,
            context_id  text        NOT NULL,
            subject     text        NOT NULL,
            name        text,
            role_kinds  text[]      NOT NULL DEFAULT '{}',
            last_seen   timestamptz NOT NULL,
            PRIMARY KEY (platform_id, context_id, subject)
        )
        """
    )


def downgrade() -> None:
    for table in ("course_roster", "checkin_responses", "checkins"):
        op.execute(f"DROP TABLE {table}")
