"""Check-ins: deployments the registration service disabled (their courses become read-only).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Owner: the checkins service (a projection of attune.registration.v1 events).
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE checkin_deployment_status (
            platform_id   bigint      NOT NULL,
            deployment_id text        NOT NULL,
            read_only     boolean     NOT NULL,
            updated_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (platform_id, deployment_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE checkin_deployment_status")
