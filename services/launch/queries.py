"""SQL of the launch service. Connection (or pool) first; the caller owns the transaction."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shared.events import outbox, topics
from shared.events.envelope import Event

# One statement, one round trip, atomic: use up the nonce; only if that inserted a row, write
# the launch record, the deployment sighting (first launch of a new deployment) and the
# outbox event. A replayed nonce inserts nothing at all.
_RECORD_LAUNCH = """
WITH nonce AS (
    INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, to_timestamp($2))
    ON CONFLICT DO NOTHING
    RETURNING 1
), launch AS (
    INSERT INTO launches (id, platform_id, deployment_id, message_type, subject, context_id,
                          resource_link_id, roles, region)
    SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM nonce
    RETURNING id
), sighting AS (
    INSERT INTO deployment_sightings (platform_id, deployment_id, policy)
    SELECT $4, $5, 'accept' FROM launch WHERE $12
    ON CONFLICT DO NOTHING
), event AS (
    INSERT INTO outbox (id, topic, key, event_type, value)
    SELECT $13, $14, $15, $16, $17 FROM launch
)
SELECT count(*) FROM nonce
"""


async def record_launch(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    nonce: str,
    nonce_expires_at: float,
    launch_id: uuid.UUID,
    platform_id: int,
    deployment_id: str,
    message_type: str,
    subject: str | None,
    context_id: str | None,
    resource_link_id: str | None,
    roles: list[str],
    region: str,
    new_deployment: bool,
    event: Event,
    event_key: str,
) -> bool:
    """Record a verified launch. Returns False (and writes nothing) if the nonce was used."""
    used = await conn.fetchval(
        _RECORD_LAUNCH,
        nonce,
        nonce_expires_at,
        launch_id,
        platform_id,
        deployment_id,
        message_type,
        subject,
        context_id,
        resource_link_id,
        roles,
        region,
        new_deployment,
        event.id,
        topics.LAUNCH,
        event_key.encode(),
        event.type,
        event.encode(),
    )
    if used:
        outbox.wake_relays()  # one statement: committed already
    return bool(used)


async def record_held_deployment(pool: asyncpg.Pool, platform_id: int, deployment_id: str) -> None:
    await pool.execute(
        "INSERT INTO deployment_sightings (platform_id, deployment_id, policy) "
        "VALUES ($1, $2, 'hold') ON CONFLICT DO NOTHING",
        platform_id,
        deployment_id,
    )


PURGE_BATCH = 1000


async def purge_nonces(pool: asyncpg.Pool) -> int:
    """Delete one bounded batch of expired nonces; returns how many. Replicas skip each
    other's rows instead of waiting for them."""
    result = await pool.execute(
        "DELETE FROM used_nonces WHERE nonce IN ("
        " SELECT nonce FROM used_nonces WHERE expires_at < now()"
        " LIMIT $1 FOR UPDATE SKIP LOCKED)",
        PURGE_BATCH,
    )
    return int(result.split()[-1])


async def purge_expired_nonces(pool: asyncpg.Pool, *, pause_s: float = 0.1) -> int:
    """Delete every expired nonce in bounded batches (under load more nonces expire per minute
    than one batch holds), pausing between batches so none holds locks, a connection or the
    CPU for long. Returns how many were deleted."""
    total = 0
    while True:
        deleted = await purge_nonces(pool)
        total += deleted
        if deleted < PURGE_BATCH:
            return total
        await asyncio.sleep(pause_s)
