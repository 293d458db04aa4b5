"""Writing events: into the outbox table, inside the caller's transaction.

A state change and its event commit together or not at all. Kafka is never called inside a
request; the relay publishes committed rows later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from shared.events.envelope import Event

# The relays running in this process (``OutboxRelay`` registers its wake-up here). A writer
# wakes them when it writes events; the relay lingers before reading, by which time the
# writer's transaction has committed. Rows of other processes wait for a relay's poll.
_relay_wakers: set[Callable[[], None]] = set()


def register_relay(wake: Callable[[], None]) -> None:
    _relay_wakers.add(wake)


def unregister_relay(wake: Callable[[], None]) -> None:
    _relay_wakers.discard(wake)


def wake_relays() -> None:
    """Tell this process's relays that outbox rows are (about to be) committed."""
    for wake in list(_relay_wakers):
        wake()


class OutboxMisuse(RuntimeError):
    """``enqueue`` was called outside a transaction, which would break the outbox guarantee."""


_INSERT = """
INSERT INTO outbox (id, topic, key, event_type, value) VALUES ($1, $2, $3, $4, $5)
"""


async def enqueue(
    conn: asyncpg.Connection, topic: str, event: Event, *, key: str | None = None
) -> None:
    """Add ``event`` to the outbox in the transaction open on ``conn``.

    ``key`` is the Kafka partition key (events with one key stay in order); it defaults to the
    event's subject.
    """
    if not conn.is_in_transaction():
        raise OutboxMisuse("enqueue() must run inside the transaction of the state change")
    partition_key = (key if key is not None else event.subject).encode()
    await conn.execute(_INSERT, event.id, topic, partition_key, event.type, event.encode())
    wake_relays()


async def enqueue_many(
    conn: asyncpg.Connection, items: Sequence[tuple[str, Event, str | None]]
) -> None:
    """Several events in one round trip; same guarantees as ``enqueue``."""
    if not conn.is_in_transaction():
        raise OutboxMisuse("enqueue_many() must run inside the transaction of the state change")
    await conn.executemany(
        _INSERT,
        [
            (e.id, topic, (k if k is not None else e.subject).encode(), e.type, e.encode())
            for topic, e, k in items
        ],
    )
    wake_relays()
