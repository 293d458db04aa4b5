"""Outbox: no NOTIFY per commit; writers wake the relay of their own process instead.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

Owner: the shared event layer. The ``outbox_notify`` statement trigger sent one ``NOTIFY`` per
committing transaction, which woke a listening backend and the relay's listener connection for
every launch: ~0.09 CPU-ms of Postgres per launch (bench/launch.py, trigger disabled vs
enabled, docs/performance.md). Writers now wake their own process's relay directly
(``shared.events.outbox.wake_relays``); rows written by other processes (CLI commands, the
previous release during a rolling deploy) are picked up by every relay's poll
(``ATTUNE_OUTBOX_POLL_INTERVAL_MS``). Safe with the previous release: its relays poll too.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('attune_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()
        """
    )
