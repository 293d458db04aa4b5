"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

Guarantees:
- At-least-once: a row is marked sent only after Kafka acknowledged it with ``acks='all'``.
  A crash or a broker outage between publish and mark re-sends the row later; consumers
  deduplicate on the event id.
- Order: rows are published in commit-sequence order by one relay at a time. Any number of
  service replicas may run a relay: each batch is taken under a transaction-scoped advisory
  lock, so replicas take turns instead of publishing the same rows or reordering them.
- No loss during outages: while Kafka or Postgres is down the relay backs off and retries;
  rows stay in the table until published.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.db import POOL_KEY
from shared.dberrors import DATABASE_UNAVAILABLE
from shared.events import outbox
from shared.events import topics as all_topics
from shared.kafka import ensure_topics, make_producer
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.settings import Settings
from shared.tasks import stop_task
from shared.web import METRICS_KEY, SETTINGS_KEY

log = get_logger(__name__)

RELAY_LOCK_ID = 0x417474756E65_02
MAX_BACKOFF_S = 5.0

_SELECT = """
SELECT seq, id, topic, key, event_type, value FROM outbox
WHERE sent_at IS NULL ORDER BY seq LIMIT $1
"""
_MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE seq = any($1::bigint[])"
_PURGE = """
DELETE FROM outbox WHERE seq IN (
    SELECT seq FROM outbox WHERE sent_at < now() - make_interval(secs => $1) LIMIT 5000
)
"""

# Errors that mean "a dependency is unavailable right now": back off and try again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError, *DATABASE_UNAVAILABLE)


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        metrics: Metrics,
        *,
        topics: Sequence[str] = all_topics.ALL,
        producer_factory: Callable[[Settings], AIOKafkaProducer] = make_producer,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._metrics = metrics
        self._topics = tuple(topics)
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()

    async def _get_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            if self._settings.kafka_create_topics:
                await ensure_topics(self._settings, self._topics)
            producer = self._producer_factory(self._settings)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            log.info("outbox_producer_started")
        return self._producer

    async def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), 5)
            except (KafkaError, OSError, TimeoutError):
                pass

    async def publish_once(self) -> int | None:
        """Publish one batch. Returns rows published, or None when another relay holds the turn."""
        timeout = self._settings.kafka_request_timeout_ms / 1000 * 2
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK_ID):
                return None
            rows = await conn.fetch(_SELECT, self._settings.outbox_batch_size)
            self._metrics.outbox_pending.labels(self._metrics.service).set(len(rows))
            if not rows:
                return 0
            producer = await self._get_producer()
            await asyncio.wait_for(self._send(producer, rows), timeout)
            await conn.execute(_MARK_SENT, [r["seq"] for r in rows])
        for row in rows:
            self._metrics.outbox_published.labels(self._metrics.service, row["topic"]).inc()
        return len(rows)

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]) -> None:
        futures = []
        for row in rows:
            headers = [
                ("event_id", str(row["id"]).encode()),
                ("event_type", row["event_type"].encode()),
            ]
            futures.append(
                await producer.send(row["topic"], row["value"], key=row["key"], headers=headers)
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def purge_sent(self) -> int:
        """Delete sent rows older than the retention period (bounded per call)."""
        result = await self._pool.execute(_PURGE, self._settings.outbox_retention_hours * 3600)
        return int(result.split()[-1])

    def wake(self) -> None:
        """Publish soon: rows were written in this process (``outbox.wake_relays``)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled."""
        poll = self._settings.outbox_poll_interval_ms / 1000
        linger = self._settings.outbox_linger_ms / 1000
        backoff = 0.1
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + 60
        outbox.register_relay(self.wake)
        try:
            while True:
                try:
                    published = await self.publish_once()
                    if loop.time() >= next_purge:
                        next_purge = loop.time() + 60
                        await self.purge_sent()
                except TRANSIENT_ERRORS as exc:
                    reason = type(exc).__name__
                    self._metrics.outbox_failures.labels(self._metrics.service, reason).inc()
                    log.warning(
                        "outbox_publish_failed", reason=reason, retry_in_s=round(backoff, 2)
                    )
                    if isinstance(exc, KafkaError | TimeoutError):
                        await self._reset_producer()
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                except Exception:
                    # The relay must outlive any single failure: a bug here must delay events,
                    # not stop their delivery for the life of the process.
                    self._metrics.outbox_failures.labels(self._metrics.service, "unexpected").inc()
                    log.exception("outbox_relay_error")
                    await self._reset_producer()
                    await asyncio.sleep(MAX_BACKOFF_S)
                    continue
                backoff = 0.1
                if published == self._settings.outbox_batch_size:
                    continue  # more rows are waiting
                if published is None:
                    # Another replica's relay holds the turn and may have read before this
                    # process's rows committed: try again shortly rather than at the next poll.
                    await asyncio.sleep(linger or 0.05)
                    continue
                try:  # not wait_for: on 3.11 it swallows a cancellation racing the wake-up
                    async with asyncio.timeout(poll):
                        await self._wake.wait()
                except TimeoutError:
                    continue  # the poll: rows written by other processes
                self._wake.clear()  # a writer waking us from now on gets another round
                # Woken by a writer: let its transaction commit, and the commits right behind
                # it join the same batch (under load: tens of events per batch, not one).
                await asyncio.sleep(linger or 0.005)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the producer (``run`` does this when cancelled)."""
        outbox.unregister_relay(self.wake)
        await self._reset_producer()


RELAY_KEY = web.AppKey("outbox_relay", OutboxRelay)


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context running the outbox relay for the app's lifetime (needs ``pool_ctx``)."""
    relay = OutboxRelay(app[POOL_KEY], app[SETTINGS_KEY], app[METRICS_KEY])
    app[RELAY_KEY] = relay
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    yield
    await stop_task(task)
