"""What verified launches showed about a deployment; an NRPS sync's own token endpoint.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

``deployment_observations`` (owner: the launch service; the login and launch services read it
through the registration cache, the registration service's admin API shows it): per
(platform, deployment), from verified launches only (signed by the platform's key):

- ``frame_origins``: LMS page origins a launch proved (the origin of its signed
  ``launch_presentation.return_url``) that the registration did not already allow; pages of
  this deployment may be framed by them (one client_id of hosted Canvas serves many schools,
  each on its own domain). At most 10 per deployment.
- ``roster_shared`` / ``names_shared``: whether the latest launch carried the Names and Role
  Provisioning claim and the user's name (what the LMS really grants, which Canvas decides
  after the registration answer).

``checkin_nrps_sync.token_url`` (owner: the checkins service): the token endpoint of the
environment the launch came from (a hosted Canvas beta or test launch of a production
registration); NULL means the platform's own.

Safe with the previous release: a new table and a nullable column without a default; old code
names neither.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS deployment_observations (
            platform_id   bigint      NOT NULL,
            deployment_id text        NOT NULL,
            frame_origins text[]      NOT NULL DEFAULT '{}',
            roster_shared boolean,
            names_shared  boolean,
            observed_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (platform_id, deployment_id),
            CHECK (cardinality(frame_origins) <= 10)
        )
        """
    )
    op.execute("ALTER TABLE checkin_nrps_sync ADD COLUMN IF NOT EXISTS token_url text")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE checkin_nrps_sync DROP COLUMN IF EXISTS token_url")
    op.execute("DROP TABLE IF EXISTS deployment_observations")
