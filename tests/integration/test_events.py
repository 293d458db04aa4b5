"""The event pipeline end to end: outbox → relay → real broker → consumer effects in Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.embedded import EmbeddedBroker
from shared.events.consumer import EventConsumer, RetriableError
from shared.events.envelope import Event
from shared.events.outbox import OutboxMisuse, enqueue
from shared.events.relay import OutboxRelay
from shared.kafka import ensure_topics
from shared.metrics import Metrics
from shared.settings import Settings
from tests.conftest import Infra

pytestmark = pytest.mark.integration


@pytest.fixture
async def topic(settings: Settings) -> str:
    name = f"test.events.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [name])
    return name


async def effects_table(pool: asyncpg.Pool) -> str:
    """A table standing for a consumer's own state; deliberately without a unique key so a
    duplicate effect would show up as a second row."""
    table = f"effects_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE TABLE {table} (event_id uuid NOT NULL, n integer NOT NULL)")
    return table


@pytest.fixture
async def effects(pool: asyncpg.Pool) -> str:
    return await effects_table(pool)


def event(n: int, subject: str = "course-1") -> Event:
    return Event(type="test.happened", source="tests", subject=subject, data={"n": n})


async def write_events(pool: asyncpg.Pool, topic: str, numbers: range) -> list[uuid.UUID]:
    ids = []
    for n in numbers:
        e = event(n)
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, topic, e)
        ids.append(e.id)
    return ids


@contextlib.asynccontextmanager
async def running(*coros: Awaitable[None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]  # type: ignore[arg-type]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def make_consumer(
    settings: Settings,
    pool: asyncpg.Pool,
    topic: str,
    table: str,
    handler: Callable[[asyncpg.Connection, Event], Awaitable[None]] | None = None,
) -> EventConsumer:
    async def record(conn: asyncpg.Connection, e: Event) -> None:
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", e.id, e.data["n"])

    return EventConsumer(
        name=f"test-{table}",
        topics=[topic],
        handler=handler or record,
        pool=pool,
        settings=settings,
        metrics=Metrics(service="test"),
    )


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def effect_counts(pool: asyncpg.Pool, table: str) -> tuple[int, int]:
    row = await pool.fetchrow(f"SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {table}")
    assert row is not None
    return row["n"], row["d"]


async def test_enqueue_requires_a_transaction(pool: asyncpg.Pool, topic: str) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(OutboxMisuse):
            await enqueue(conn, topic, event(1))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_rolled_back_state_change_leaves_no_event(pool: asyncpg.Pool, topic: str) -> None:
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, topic, event(1))
            raise RuntimeError("the state change failed")
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_envelope_round_trip_and_kafka_record(
    pool: asyncpg.Pool, settings: Settings, topic: str
) -> None:
    [event_id] = await write_events(pool, topic, range(1))
    relay = OutboxRelay(pool, settings, Metrics(service="test"), topics=[topic])
    try:
        assert await relay.publish_once() == 1
    finally:
        await relay.close()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
    consumer = AIOKafkaConsumer(
        topic, **settings.kafka_client_options(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert record.key == b"course-1"
    assert dict(record.headers)["event_id"] == str(event_id).encode()
    body = json.loads(record.value)
    assert set(body) == {"id", "type", "source", "occurred_at", "subject", "schema_version", "data"}
    decoded = Event.decode(record.value)
    assert decoded.id == event_id
    assert decoded.data == {"n": 0}
    assert decoded.schema_version == 1


async def test_outbox_to_consumer_effects(
    pool: asyncpg.Pool, settings: Settings, topic: str, effects: str
) -> None:
    await write_events(pool, topic, range(50))
    relay = OutboxRelay(pool, settings, Metrics(service="test"), topics=[topic])
    consumer = make_consumer(settings, pool, topic, effects)
    async with running(relay.run(), consumer.run()):
        await write_events(pool, topic, range(50, 100))
        await wait_for(lambda: _reached(pool, effects, 100))
    assert await effect_counts(pool, effects) == (100, 100)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def _reached(pool: asyncpg.Pool, table: str, n: int) -> bool:
    return (await effect_counts(pool, table))[0] >= n


async def test_two_relays_publish_each_event_once_in_order(
    pool: asyncpg.Pool, settings: Settings, topic: str
) -> None:
    ids = await write_events(pool, topic, range(400))
    small = settings.model_copy(update={"outbox_batch_size": 25})
    relays = [OutboxRelay(pool, small, Metrics(service="test"), topics=[topic]) for _ in range(2)]
    async with running(*(r.run() for r in relays)):
        await wait_for(lambda: _no_unsent(pool), timeout=30)
    consumer = AIOKafkaConsumer(
        topic, **settings.kafka_client_options(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen: list[uuid.UUID] = []
    try:
        while len(seen) < 400:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 10)
            for records in batch.values():
                seen.extend(Event.decode(r.value).id for r in records)
            if not batch:
                break
    finally:
        await consumer.stop()
    # One subject means one key, hence one partition: the order must be the commit order.
    assert seen == ids


async def _no_unsent(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def test_consumer_deduplicates_redelivered_events(
    pool: asyncpg.Pool, settings: Settings, topic: str, effects: str
) -> None:
    e = event(7)
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        for _ in range(3):  # at-least-once delivery: the same event three times
            await producer.send_and_wait(topic, e.encode(), key=b"course-1")
        await producer.send_and_wait(topic, event(8).encode(), key=b"course-1")
    finally:
        await producer.stop()
    consumer = make_consumer(settings, pool, topic, effects)
    async with running(consumer.run()):
        await wait_for(lambda: _reached(pool, effects, 2))
        await asyncio.sleep(0.5)
    assert await effect_counts(pool, effects) == (2, 2)
    metrics = consumer._metrics.registry
    assert (
        metrics.get_sample_value(
            "attune_consumer_events_total",
            {"service": "test", "consumer": consumer.name, "outcome": "duplicate"},
        )
        == 2
    )


async def test_poison_messages_are_dead_lettered_not_looped(
    pool: asyncpg.Pool, settings: Settings, topic: str, effects: str
) -> None:
    async def handler(conn: asyncpg.Connection, e: Event) -> None:
        if e.data["n"] == 2:
            raise ValueError("cannot apply n=2")
        await conn.execute(f"INSERT INTO {effects} VALUES ($1, $2)", e.id, e.data["n"])

    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, event(1).encode(), key=b"k")
        await producer.send_and_wait(topic, b"{not json", key=b"k")
        await producer.send_and_wait(topic, event(2).encode(), key=b"k")
        await producer.send_and_wait(topic, json.dumps({"id": "x"}).encode(), key=b"k")
        await producer.send_and_wait(topic, event(3).encode(), key=b"k")
    finally:
        await producer.stop()
    consumer = make_consumer(settings, pool, topic, effects, handler)
    async with running(consumer.run()):
        await wait_for(lambda: _reached(pool, effects, 2))
        await wait_for(lambda: _dead_letters(pool, 3))
    rows = await pool.fetch('SELECT error, value FROM dead_letters ORDER BY "offset"')
    assert [r["error"].split(":")[0] for r in rows] == [
        "malformed event",
        "ValueError",
        "malformed event",
    ]
    assert rows[0]["value"] == b"{not json"
    assert await pool.fetch(f"SELECT n FROM {effects} ORDER BY n") == [(1,), (3,)]


async def _dead_letters(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM dead_letters") >= n


async def test_retriable_errors_are_retried_with_backoff(
    pool: asyncpg.Pool, settings: Settings, topic: str, effects: str
) -> None:
    attempts = 0

    async def flaky(conn: asyncpg.Connection, e: Event) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RetriableError("downstream busy")
        await conn.execute(f"INSERT INTO {effects} VALUES ($1, $2)", e.id, e.data["n"])

    await write_events(pool, topic, range(1))
    relay = OutboxRelay(pool, settings, Metrics(service="test"), topics=[topic])
    try:
        await relay.publish_once()
    finally:
        await relay.close()
    consumer = make_consumer(settings, pool, topic, effects, flaky)
    async with running(consumer.run()):
        await wait_for(lambda: _reached(pool, effects, 1))
    assert attempts == 3
    assert await effect_counts(pool, effects) == (1, 1)
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_broker_outage_during_writes_loses_nothing(
    pool: asyncpg.Pool, infra: Infra, own_broker: EmbeddedBroker, effects: str
) -> None:
    """Writes continue while the broker is down; after it returns every event arrives and
    every effect happens exactly once.

    The embedded broker keeps messages in memory, so a restart empties it: the test lets the
    consumer catch up before the outage, as real Kafka (durable, acks=all) would not need.
    """
    settings = infra.settings(
        kafka_bootstrap_servers=own_broker.bootstrap_servers,
        kafka_request_timeout_ms=1000,
        outbox_poll_interval_ms=100,
    )
    topic = "test.outage"
    await ensure_topics(settings, [topic])
    relay = OutboxRelay(pool, settings, Metrics(service="test"), topics=[topic])
    consumer = make_consumer(settings, pool, topic, effects)
    async with running(relay.run()):
        async with running(consumer.run()):
            await write_events(pool, topic, range(0, 100))
            await wait_for(lambda: _reached(pool, effects, 100))

        own_broker.kill()
        writer = asyncio.create_task(_write_slowly(pool, topic, range(100, 300)))
        await asyncio.sleep(1.5)  # the relay is failing and backing off now
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") > 0
        own_broker.restart()  # not in a thread: PDEATHSIG follows the forking thread
        # The embedded broker restarts empty and reuses offsets from 0, which a durable Kafka
        # never does; a consumer that kept its old position would skip the new records. So
        # the consumer (same group, same dedupe table) comes back with the broker, as a
        # restarted pod would.
        consumer = make_consumer(settings, pool, topic, effects)
        async with running(consumer.run()):
            await writer
            await wait_for(lambda: _reached(pool, effects, 300), timeout=60)
            await asyncio.sleep(1)
    assert await effect_counts(pool, effects) == (300, 300)
    rows = await pool.fetch(f"SELECT n FROM {effects}")
    assert sorted(r["n"] for r in rows) == list(range(300))
    failures = (
        relay._metrics.registry.get_sample_value(
            "attune_outbox_publish_failures_total",
            {"service": "test", "reason": "KafkaConnectionError"},
        )
        or 0
    )
    timeouts = (
        relay._metrics.registry.get_sample_value(
            "attune_outbox_publish_failures_total", {"service": "test", "reason": "TimeoutError"}
        )
        or 0
    )
    assert failures + timeouts > 0  # the outage really was seen by the relay


async def _write_slowly(pool: asyncpg.Pool, topic: str, numbers: range) -> None:
    for n in numbers:
        await write_events(pool, topic, range(n, n + 1))
        await asyncio.sleep(0.01)
