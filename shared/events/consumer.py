"""Consuming events.

``EventConsumer`` is for *work* consumers (one consumer group; each event's effect happens
once): for every message it opens a transaction, records the event id in ``consumed_events``
(a duplicate delivery stops there), runs the handler on the same connection, commits, and only
then commits the Kafka offset. Transient failures (database or broker unavailable, or the
handler raising ``RetriableError``) are retried with capped exponential backoff without moving
past the message; anything else makes the message a dead letter: stored with its error in
``dead_letters`` and skipped, so one poison message cannot stall the partition.

``EventListener`` is for *cache* consumers (login and launch refreshing registration caches):
every replica reads every partition without a group and without commits, starting at the end.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from shared.events.envelope import Event, MalformedEvent
from shared.events.relay import TRANSIENT_ERRORS
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.settings import Settings

log = get_logger(__name__)

Handler = Callable[[asyncpg.Connection, Event], Awaitable[None]]
ListenerHandler = Callable[[Event], Awaitable[None]]
MAX_BACKOFF_S = 5.0


class RetriableError(Exception):
    """Raised by a handler when the event should be retried later (a dependency is down)."""


RETRIABLE: tuple[type[BaseException], ...] = (RetriableError, *TRANSIENT_ERRORS)


_MARK_CONSUMED = """
INSERT INTO consumed_events (consumer, event_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING true
"""
_DEAD_LETTER = """
INSERT INTO dead_letters (consumer, topic, partition, "offset", key, value, error)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
"""


class _Backoff:
    def __init__(self) -> None:
        self.delay = 0.1

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay * (0.5 + random.random()))
        self.delay = min(self.delay * 2, MAX_BACKOFF_S)

    def reset(self) -> None:
        self.delay = 0.1


class EventConsumer:
    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        handler: Handler,
        pool: asyncpg.Pool,
        settings: Settings,
        metrics: Metrics,
        group_id: str | None = None,
        dedupe: bool = True,
        after_commit: Callable[[Event], None] | None = None,
    ) -> None:
        """``dedupe=False``: the handler is idempotent by itself (it compares versions), so
        event ids are not recorded in ``consumed_events`` (a state republished every hour
        would otherwise grow that table forever). ``after_commit``: called with each event
        applied, once its transaction committed (to wake a cache that reads what it wrote)."""
        self.name = name
        self._dedupe = dedupe
        self._after_commit = after_commit
        self._topics = tuple(topics)
        self._handler = handler
        self._pool = pool
        self._settings = settings
        self._metrics = metrics
        self._group_id = group_id or f"attune.{name}"

    def _count(self, outcome: str) -> None:
        self._metrics.consumer_events.labels(self._metrics.service, self.name, outcome).inc()

    def _make_consumer(self) -> AIOKafkaConsumer:
        session = self._settings.kafka_session_timeout_ms
        options = self._settings.kafka_client_options()
        # A JoinGroup request legitimately waits up to the rebalance timeout for other members;
        # a shorter request timeout would abort every join and the group would never form.
        options["request_timeout_ms"] = max(options["request_timeout_ms"], session + 5000)
        return AIOKafkaConsumer(
            *self._topics,
            **options,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session,
            heartbeat_interval_ms=max(100, session // 4),
            rebalance_timeout_ms=max(session, 2000),
            max_poll_records=200,
            metadata_max_age_ms=5000,
        )

    async def run(self) -> None:
        """Consume until cancelled, reconnecting after broker failures."""
        backoff = _Backoff()
        while True:
            consumer = self._make_consumer()
            try:
                await consumer.start()
                backoff.reset()
                log.info("consumer_started", consumer=self.name, topics=list(self._topics))
                await self._consume(consumer)
            except KafkaError as exc:
                log.warning("consumer_restarting", consumer=self.name, reason=type(exc).__name__)
            except Exception:
                # Outermost loop of a background task: restart rather than die silently.
                log.exception("consumer_error", consumer=self.name)
            finally:
                try:
                    await asyncio.wait_for(consumer.stop(), 10)
                except (KafkaError, OSError, TimeoutError):
                    pass
            await backoff.sleep()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for message in messages:
                    await self.handle(message)
                await consumer.commit({tp: messages[-1].offset + 1})

    async def handle(self, message: ConsumerRecord[bytes, bytes]) -> str:
        """Apply one message exactly once in effect; returns the outcome."""
        try:
            event = Event.decode(message.value)
        except MalformedEvent as exc:
            await self._dead_letter(message, None, f"malformed event: {exc}")
            return "dead_letter"
        backoff = _Backoff()
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    fresh = not self._dedupe or await conn.fetchval(
                        _MARK_CONSUMED, self.name, event.id
                    )
                    if not fresh:
                        self._count("duplicate")
                        return "duplicate"
                    await self._handler(conn, event)
                if self._after_commit is not None:
                    self._after_commit(event)
                self._count("processed")
                return "processed"
            except RETRIABLE as exc:
                self._count("retried")
                log.warning(
                    "event_retry",
                    consumer=self.name,
                    event_id=str(event.id),
                    reason=type(exc).__name__,
                )
                await backoff.sleep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A handler failing for a reason that retrying will not fix: park the message
                # with its error rather than loop on it and stall the partition.
                log.exception("event_dead_lettered", consumer=self.name, event_id=str(event.id))
                await self._dead_letter(message, event, f"{type(exc).__name__}: {exc}")
                return "dead_letter"

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], event: Event | None, error: str
    ) -> None:
        backoff = _Backoff()
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        _DEAD_LETTER,
                        self.name,
                        message.topic,
                        message.partition,
                        message.offset,
                        message.key,
                        message.value,
                        error[:4000],
                    )
                    if event is not None:
                        await conn.execute(_MARK_CONSUMED, self.name, event.id)
                self._count("dead_letter")
                return
            except TRANSIENT_ERRORS:
                await backoff.sleep()


class EventListener:
    """Broadcast consumption for in-memory caches: every replica sees every event."""

    def __init__(
        self, *, name: str, topics: Sequence[str], handler: ListenerHandler, settings: Settings
    ) -> None:
        self.name = name
        self._topics = tuple(topics)
        self._handler = handler
        self._settings = settings

    async def run(self) -> None:
        backoff = _Backoff()
        while True:
            consumer = AIOKafkaConsumer(
                *self._topics,
                **self._settings.kafka_client_options(),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                metadata_max_age_ms=5000,
            )
            try:
                await consumer.start()
                backoff.reset()
                async for message in consumer:
                    try:
                        event = Event.decode(message.value)
                    except MalformedEvent:
                        log.warning("listener_skipped_malformed", listener=self.name)
                        continue
                    await self._handler(event)
            except KafkaError as exc:
                log.warning("listener_restarting", listener=self.name, reason=type(exc).__name__)
            except Exception:
                log.exception("listener_error", listener=self.name)
            finally:
                try:
                    await asyncio.wait_for(consumer.stop(), 10)
                except (KafkaError, OSError, TimeoutError):
                    pass
            await backoff.sleep()
