"""Kafka clients built from settings: producers, topic creation and the readiness probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.events.topics import PARTITIONS
from shared.logs import get_logger
from shared.settings import Settings
from shared.web import SETTINGS_KEY, ReadinessCheck, add_readiness_check

log = get_logger(__name__)


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (``acks='all'``).

    Idempotence is a setting: on against real Kafka, off against the embedded development
    broker, which refuses InitProducerId. Exactly-once *effects* never rely on it anyway: the
    outbox gives at-least-once delivery and consumers deduplicate on the event id.
    """
    return AIOKafkaProducer(
        **settings.kafka_client_options(),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=2,
        max_batch_size=256 * 1024,
        retry_backoff_ms=200,
    )


async def ensure_topics(settings: Settings, topics: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        name=t,
                        num_partitions=PARTITIONS.get(t, settings.kafka_topic_partitions),
                        replication_factor=1,
                    )
                    for t in missing
                ]
            )
        except TopicAlreadyExistsError:
            pass  # another process won the race; the topic is there, which is all we need
        log.info("kafka_topics_created", topics=missing)
        return missing
    finally:
        await admin.close()


class KafkaProbe:
    """Answers "are the brokers reachable?" with one metadata round trip, cached briefly."""

    def __init__(self, settings: Settings, *, cache_s: float = 1.0) -> None:
        self._settings = settings
        self._client: AIOKafkaClient | None = None
        self._cache_s = cache_s
        self._last_ok = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_ok < self._cache_s:
            return
        async with self._lock:
            if self._client is None:
                client = AIOKafkaClient(**self._settings.kafka_client_options())
                try:
                    await client.bootstrap()
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            try:
                await self._client.fetch_all_metadata()
            except KafkaError:
                # A fresh client next time: a client whose brokers all vanished keeps stale
                # connection state that recovers slower than a new bootstrap.
                client, self._client = self._client, None
                await client.close()
                raise
            self._last_ok = loop.time()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


async def kafka_probe_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context adding the ``kafka`` readiness check."""
    settings = app[SETTINGS_KEY]
    probe = KafkaProbe(settings)
    add_readiness_check(
        app, ReadinessCheck("kafka", probe.check, required=settings.ready_requires_kafka)
    )
    yield
    await probe.close()
