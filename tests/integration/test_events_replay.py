"""``attune events replay``: retained outbox rows published again after a broker lost them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devstack.embedded import EmbeddedBroker
from shared.events import topics
from shared.events.outbox import enqueue
from shared.events.relay import OutboxRelay
from shared.events.replay import BadTime, parse_moment, replay
from shared.kafka import ensure_topics
from shared.metrics import Metrics
from shared.settings import Settings
from tests.conftest import Infra
from tests.integration.test_events import (
    effect_counts,
    effects_table,
    event,
    make_consumer,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def _row(pool: asyncpg.Pool, topic: str, n: int, sent_ago: timedelta | None) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, topic, event(n))
    seq: int = await pool.fetchval("SELECT max(seq) FROM outbox")
    if sent_ago is not None:
        await pool.execute(
            "UPDATE outbox SET sent_at = now() - $2::interval WHERE seq = $1", seq, sent_ago
        )
    return seq


def _attune(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attune.cli", *argv],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def _unsent(pool: asyncpg.Pool) -> set[int]:
    return {r["seq"] for r in await pool.fetch("SELECT seq FROM outbox WHERE sent_at IS NULL")}


def test_moments_are_times_with_an_offset_or_durations_ago() -> None:
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert parse_moment("30m", now) == now - timedelta(minutes=30)
    assert parse_moment("2d", now) == now - timedelta(days=2)
    assert parse_moment("2026-11-23T13:05:00Z", now) == datetime(2026, 11, 23, 13, 5, tzinfo=UTC)
    for bad in ("yesterday", "2026-11-23T13:05:00", "5w", "-3h", "³h"):
        with pytest.raises(BadTime):
            parse_moment(bad, now)


async def test_replay_marks_what_the_broker_was_given_in_the_window(
    pool: asyncpg.Pool, infra: Infra
) -> None:
    old = await _row(pool, topics.LAUNCH, 1, timedelta(hours=3))
    recent = await _row(pool, topics.LAUNCH, 2, timedelta(minutes=30))
    unsent = await _row(pool, topics.LAUNCH, 3, None)
    other = await _row(pool, topics.CHECKIN, 4, timedelta(minutes=10))
    since = datetime.now(UTC) - timedelta(hours=1)

    counted = await replay(pool, [topics.LAUNCH], since, dry_run=True)
    assert counted.by_topic == {topics.LAUNCH: 1}
    assert await _unsent(pool) == {unsent}  # a dry run changes nothing

    done = await replay(pool, [topics.LAUNCH], since)
    assert done.by_topic == {topics.LAUNCH: 1} and done.total == 1
    assert done.oldest_retained is not None
    assert done.oldest_retained < since
    assert await _unsent(pool) == {recent, unsent}
    assert old not in await _unsent(pool) and other not in await _unsent(pool)

    env = {**os.environ, **infra.env}
    result = await asyncio.to_thread(
        _attune, env, "events", "replay", "--topic", topics.CHECKIN, "--since", "1h"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{topics.CHECKIN}\t1"
    assert "1 events handed to the broker since" in result.stderr
    assert await _unsent(pool) == {recent, unsent, other}

    # Further back than the outbox keeps: said plainly, not silently partial.
    result = await asyncio.to_thread(
        _attune, env, "events", "replay", "--all-topics", "--since", "5d", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "cannot be replayed" in result.stderr
    assert await _unsent(pool) == {recent, unsent, other}

    result = await asyncio.to_thread(
        _attune, env, "events", "replay", "--topic", topics.LAUNCH, "--since", "yesterday"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "attune: 'yesterday' is neither a time with its offset (2026-11-23T14:05:00Z) nor a "
        "duration ago (30m, 6h, 2d)"
    ]


async def test_a_consumer_recovers_what_a_lost_broker_had_acknowledged(
    pool: asyncpg.Pool, infra: Infra, own_broker: EmbeddedBroker
) -> None:
    """The broker acknowledges a batch (the relay marks it sent) and dies before the consumer
    reads it; the new broker is empty. Without a replay those events are gone for the
    consumer; with one, it applies exactly the missing ones (the others are duplicates it
    skips), and no effect is applied twice."""
    settings: Settings = infra.settings(
        kafka_bootstrap_servers=own_broker.bootstrap_servers, kafka_request_timeout_ms=1000
    )
    topic = topics.LAUNCH
    effects = await effects_table(pool)
    await ensure_topics(settings, [topic])
    relay = OutboxRelay(pool, settings, Metrics(service="test"), topics=[topic])
    consumer = make_consumer(settings, pool, topic, effects)
    started = datetime.now(UTC)
    for n in range(20):
        await _row(pool, topic, n, None)
    async with running(relay.run(), consumer.run()):
        await wait_for(lambda: _applied(pool, effects, 20))
    # Acknowledged by the broker, never read by the consumer: then the broker is lost.
    for n in range(20, 50):
        await _row(pool, topic, n, None)
    try:
        assert await relay.publish_once() == 30
    finally:
        await relay.close()
    own_broker.kill()
    own_broker.restart()
    await ensure_topics(settings, [topic])

    relay = OutboxRelay(pool, settings, Metrics(service="test"), topics=[topic])
    consumer = make_consumer(settings, pool, topic, effects)
    async with running(relay.run(), consumer.run()):
        await wait_for(lambda: _no_unsent(pool))
        assert await effect_counts(pool, effects) == (20, 20)  # the 30 are lost to it
        marked = await replay(pool, [topic], started)
        assert marked.total == 50
        await wait_for(lambda: _applied(pool, effects, 50))
        await wait_for(lambda: _no_unsent(pool))
    assert await effect_counts(pool, effects) == (50, 50)


async def _applied(pool: asyncpg.Pool, table: str, n: int) -> bool:
    return (await effect_counts(pool, table))[0] >= n


async def _no_unsent(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
