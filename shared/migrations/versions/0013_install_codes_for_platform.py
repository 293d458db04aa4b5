"""Install codes: re-registration codes, issued for one existing registration.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24

Owner: the registration service. A dynamic registration creates a registration; it may update
an existing (issuer, client_id) only with an install code an admin issued for that platform
(``install_codes.for_platform_id``; Moodle's "Update" re-registers the same client_id).
NULL (every code issued so far) is a code that can only create.

Follows 0012 (checkin_results). Safe with the previous release: the column is nullable
without a default (a catalogue-only change) and old code never names it. During a rolling
update an old registration pod would treat a re-registration code like any other code, as it
treats every code today.
No foreign key: a code for a deleted platform must not turn into a code that creates (SET
NULL would) nor vanish from the list of codes (CASCADE would); it is refused when used.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE install_codes ADD COLUMN IF NOT EXISTS for_platform_id bigint")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE install_codes DROP COLUMN IF EXISTS for_platform_id")
