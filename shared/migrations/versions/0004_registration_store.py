"""Registration store: what was asked and granted, audit trail, admin tokens, install codes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Owner: the registration service. Additive only (new nullable or defaulted columns, new tables),
so the previous release keeps working against the migrated schema. Adding a column with a
constant default is a catalogue-only change in Postgres 11+.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE platforms
            ADD COLUMN name                text,
            ADD COLUMN environment         text  NOT NULL DEFAULT 'production'
                       CHECK (environment IN ('production', 'beta', 'test')),
            ADD COLUMN registration_method text  NOT NULL DEFAULT 'manual'
                       CHECK (registration_method IN ('dynamic', 'manual')),
            ADD COLUMN requested           jsonb NOT NULL DEFAULT '{}'::jsonb,
            ADD COLUMN granted             jsonb NOT NULL DEFAULT '{}'::jsonb,
            ADD COLUMN platform_config     jsonb NOT NULL DEFAULT '{}'::jsonb
        """
    )
    op.execute("ALTER TABLE deployments ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()")
    # No foreign key to platforms: the trail must outlive a deleted platform.
    op.execute(
        """
        CREATE TABLE registration_audit (
            id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at          timestamptz NOT NULL DEFAULT now(),
            actor       text        NOT NULL,
            action      text        NOT NULL,
            platform_id bigint,
            issuer      text,
            client_id   text,
            details     jsonb       NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )
    op.execute("CREATE INDEX registration_audit_at ON registration_audit (at DESC)")
    op.execute(
        "CREATE INDEX registration_audit_platform ON registration_audit (platform_id, at DESC)"
    )
    # Only the SHA-256 of a token or code is stored; the value itself is shown once.
    op.execute(
        """
        CREATE TABLE admin_tokens (
            id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
            token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz,
            last_used_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX admin_tokens_active_name ON admin_tokens (name) "
        "WHERE revoked_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE install_codes (
            id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            code_hash   bytea       NOT NULL UNIQUE CHECK (length(code_hash) = 32),
            label       text,
            created_by  text        NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL,
            used_at     timestamptz,
            platform_id bigint
        )
        """
    )


def downgrade() -> None:
    for table in ("install_codes", "admin_tokens", "registration_audit"):
        op.execute(f"DROP TABLE {table}")
    op.execute("ALTER TABLE deployments DROP COLUMN updated_at")
    op.execute(
        """
        ALTER TABLE platforms
            DROP COLUMN name,
            DROP COLUMN environment,
            DROP COLUMN registration_method,
            DROP COLUMN requested,
            DROP COLUMN granted,
            DROP COLUMN platform_config
        """
    )
