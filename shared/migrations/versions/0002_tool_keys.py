"""Tool keys: the RSA keys Attune signs with, owned by the jwks service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # created_at is also the moment the key is first published in the JWKS. The private key is
    # PKCS#8 DER under AES-256-GCM (KEK named by kek_id, AAD = kid); it is wiped once the key
    # is removed, so a removed row keeps only history and the public half.
    op.execute(
        """
        CREATE TABLE tool_keys (
            kid          text        PRIMARY KEY,
            state        text        NOT NULL
                CHECK (state IN ('next', 'current', 'retired', 'removed')),
            alg          text        NOT NULL DEFAULT 'RS256' CHECK (alg = 'RS256'),
            public_key   bytea       NOT NULL,
            private_key  bytea,
            kek_id       text,
            nonce        bytea,
            created_at   timestamptz NOT NULL,
            activated_at timestamptz,
            retired_at   timestamptz,
            removed_at   timestamptz,
            CHECK ((state = 'removed') = (private_key IS NULL)),
            CHECK ((private_key IS NULL) = (kek_id IS NULL)),
            CHECK ((private_key IS NULL) = (nonce IS NULL)),
            CHECK (state NOT IN ('current', 'retired') OR activated_at IS NOT NULL),
            CHECK (state <> 'retired' OR retired_at IS NOT NULL),
            CHECK ((state = 'removed') = (removed_at IS NOT NULL))
        )
        """
    )
    # At most one current and one next key, whatever the application does: a second replica
    # racing past the advisory lock would fail here instead of publishing a second key.
    op.execute(
        "CREATE UNIQUE INDEX tool_keys_one_current ON tool_keys ((1)) WHERE state = 'current'"
    )
    op.execute("CREATE UNIQUE INDEX tool_keys_one_next ON tool_keys ((1)) WHERE state = 'next'")


def downgrade() -> None:
    op.execute("DROP TABLE tool_keys")
