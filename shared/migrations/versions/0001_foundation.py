"""Foundation: transactional outbox, consumer dedupe and dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # seq orders publication; id is the event id consumers dedupe on. value holds the encoded
    # envelope so the relay publishes bytes without re-encoding.
    op.execute(
        """
        CREATE TABLE outbox (
            seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id          uuid        NOT NULL UNIQUE,
            topic       text        NOT NULL,
            key         bytea,
            event_type  text        NOT NULL,
            value       bytea       NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            sent_at     timestamptz
        )
        """
    )
    op.execute("CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL")
    op.execute("CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL")
    # Wake relays at commit time instead of waiting for their poll interval. NOTIFY is
    # delivered only when the inserting transaction commits, and once per transaction.
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
    op.execute(
        """
        CREATE TABLE consumed_events (
            consumer    text        NOT NULL,
            event_id    uuid        NOT NULL,
            consumed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, event_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE dead_letters (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            consumer    text        NOT NULL,
            topic       text        NOT NULL,
            partition   integer     NOT NULL,
            "offset"    bigint      NOT NULL,
            key         bytea,
            value       bytea,
            error       text        NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (consumer, topic, partition, "offset")
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE dead_letters")
    op.execute("DROP TABLE consumed_events")
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION outbox_notify()")
    op.execute("DROP TABLE outbox")
