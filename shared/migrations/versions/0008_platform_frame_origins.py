"""Platforms: the origins the LMS's pages are served from (CSP frame-ancestors).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Owner: the registration service. ``frame_origins`` lists the origins allowed to frame Attune's
pages for this registration (the school's Canvas host(s), the Moodle site). Filled at
registration, editable in the admin API. Existing rows are backfilled from what is known: the
issuer's origin (not for hosted Canvas's shared issuer, whose pages come from the school's own
host) and the origin of the openid configuration a dynamic registration came from. Safe with
the previous release: the column has a default and old code never names it.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        "ALTER TABLE platforms ADD COLUMN frame_origins text[] NOT NULL DEFAULT '{}'::text[]"
    )
    op.execute(
        "ALTER TABLE platforms ADD CONSTRAINT platforms_frame_origins_bounded "
        "CHECK (cardinality(frame_origins) <= 20)"
    )
    # substring(... from '^(https?://[^/?#]+)') is the scheme://host[:port] part of a URL.
    op.execute(
        """
        UPDATE platforms SET frame_origins = array(
            SELECT DISTINCT lower(o) FROM unnest(array[
                CASE WHEN rtrim(issuer, '/') NOT IN ('https://canvas.instructure.com',
                                                'https://canvas.beta.instructure.com',
                                                'https://canvas.test.instructure.com')
                     THEN substring(issuer from '^(https?://[^/?#@]+)') END,
                substring(platform_config->>'openid_configuration' from '^(https?://[^/?#@]+)')
            ]) AS o
            WHERE o IS NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE platforms DROP COLUMN frame_origins")
