"""Registration store (platforms, deployments) and launch records (nonces, launches).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Owners: platforms and deployments belong to the registration service (login and launch only
read them); used_nonces, launches and deployment_sightings belong to the launch service.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE platforms (
            id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            issuer            text NOT NULL,
            client_id         text NOT NULL,
            auth_url          text NOT NULL,
            jwks_url          text NOT NULL,
            token_url         text,
            product           text NOT NULL DEFAULT 'generic'
                              CHECK (product IN ('canvas', 'moodle', 'generic')),
            deployment_policy text NOT NULL DEFAULT 'accept'
                              CHECK (deployment_policy IN ('accept', 'hold')),
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            UNIQUE (issuer, client_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE deployments (
            platform_id   bigint NOT NULL REFERENCES platforms ON DELETE CASCADE,
            deployment_id text   NOT NULL,
            status        text   NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'pending', 'disabled')),
            label         text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (platform_id, deployment_id)
        )
        """
    )
    # A nonce is used up by inserting it; the primary key makes a replay fail atomically.
    op.execute(
        """
        CREATE TABLE used_nonces (
            nonce      text        PRIMARY KEY,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX used_nonces_expires ON used_nonces (expires_at)")
    op.execute(
        """
        CREATE TABLE launches (
            id               uuid        PRIMARY KEY,
            platform_id      bigint      NOT NULL,
            deployment_id    text        NOT NULL,
            message_type     text        NOT NULL,
            subject          text,
            context_id       text,
            resource_link_id text,
            roles            text[]      NOT NULL,
            region           text        NOT NULL,
            created_at       timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX launches_context ON launches (platform_id, context_id)")
    op.execute(
        """
        CREATE TABLE deployment_sightings (
            platform_id   bigint      NOT NULL,
            deployment_id text        NOT NULL,
            policy        text        NOT NULL,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (platform_id, deployment_id)
        )
        """
    )


def downgrade() -> None:
    for table in ("deployment_sightings", "launches", "used_nonces", "deployments", "platforms"):
        op.execute(f"DROP TABLE {table}")
