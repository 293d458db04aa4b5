"""SQL of the launch service. Connection (or pool) first; the caller owns the transaction."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.batching import GroupWriter
from shared.cells.sightings import sighting_events
from shared.dberrors import DATABASE_UNAVAILABLE
from shared.events import outbox, topics
from shared.events.envelope import Event

# One statement, one round trip, atomic, for a batch of verified launches (``GroupWriter``:
# under load, the launches that arrived while the previous statement ran). For each launch:
# use up the nonce; only if that inserted a row, write the launch record, the deployment
# sighting (first launch of a new deployment) and the outbox event. A replayed nonce inserts
# nothing at all. The batch never holds one nonce twice (the writer keys on it). Roles travel
# as a JSON array per launch: unnest cannot take an array of arrays of different lengths.
_RECORD_LAUNCHES = f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::float8[], $3::uuid[], $4::bigint[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::bool[], $13::uuid[], $14::bytea[], $15::text[],
                         $16::bytea[])
        WITH ORDINALITY AS i (nonce, expires, launch_id, platform_id, deployment_id,
                              message_type, subject, context_id, resource_link_id, roles,
                              region, new_deployment, event_id, event_key, event_type,
                              event_value, n)
), nonce AS (
    -- In nonce order: two replicas' batches that share nonces (one token posted to both)
    -- then lock them in the same order and cannot deadlock.
    INSERT INTO used_nonces (nonce, expires_at)
    SELECT nonce, to_timestamp(expires) FROM input ORDER BY nonce
    ON CONFLICT DO NOTHING
    RETURNING nonce
), used AS (
    SELECT input.* FROM input JOIN nonce USING (nonce)
), launch AS (
    INSERT INTO launches (id, platform_id, deployment_id, message_type, subject, context_id,
                          resource_link_id, roles, region)
    SELECT launch_id, platform_id, deployment_id, message_type, subject, context_id,
           resource_link_id,
           ARRAY(SELECT r FROM jsonb_array_elements_text(roles::jsonb) WITH ORDINALITY
                 AS role (r, i) ORDER BY i),
           region
    FROM used
), sighting AS (
    INSERT INTO deployment_sightings (platform_id, deployment_id, policy)
    SELECT DISTINCT platform_id, deployment_id, 'accept' FROM used WHERE new_deployment
    ORDER BY platform_id, deployment_id
    ON CONFLICT DO NOTHING
    RETURNING platform_id, deployment_id, policy, first_seen_at
), sighted AS (
    -- First sightings only (rare): they go home (shared/cells/sightings.py).
    {sighting_events("sighting", topic="$18", region="$19", source="launch")}
), event AS (
    INSERT INTO outbox (id, topic, key, event_type, value)
    SELECT event_id, $17, event_key, event_type, event_value FROM used ORDER BY n
)
SELECT nonce FROM nonce
"""  # noqa: S608 - constant identifiers only


@dataclass(frozen=True, slots=True)
class LaunchRecord:
    """A verified launch to record: its nonce, the launch row and its event."""

    nonce: str
    nonce_expires_at: float
    launch_id: uuid.UUID
    platform_id: int
    deployment_id: str
    message_type: str
    subject: str | None
    context_id: str | None
    resource_link_id: str | None
    roles: list[str]
    region: str
    new_deployment: bool
    event: Event
    event_key: str


async def record_launches(
    conn: asyncpg.Connection | asyncpg.Pool, records: Sequence[LaunchRecord], region: str
) -> list[bool]:
    """Record verified launches in one statement. For each: False (and nothing written for
    it) if its nonce was already used. The nonces must be distinct (the statement would record
    a nonce given twice twice). ``region``: this cell's, named in first sightings."""
    if len({r.nonce for r in records}) != len(records):
        raise ValueError("a batch of launches must not hold the same nonce twice")
    used = await conn.fetch(
        _RECORD_LAUNCHES,
        [r.nonce for r in records],
        [r.nonce_expires_at for r in records],
        [r.launch_id for r in records],
        [r.platform_id for r in records],
        [r.deployment_id for r in records],
        [r.message_type for r in records],
        [r.subject for r in records],
        [r.context_id for r in records],
        [r.resource_link_id for r in records],
        [json.dumps(r.roles) for r in records],
        [r.region for r in records],
        [r.new_deployment for r in records],
        [r.event.id for r in records],
        [r.event_key.encode() for r in records],
        [r.event.type for r in records],
        [r.event.encode() for r in records],
        topics.LAUNCH,
        topics.SIGHTING,
        region,
    )
    if used:
        outbox.wake_relays()  # one statement: committed already
    fresh = {row[0] for row in used}
    return [r.nonce in fresh for r in records]


def launch_writer(pool: asyncpg.Pool, region: str) -> GroupWriter[LaunchRecord, bool]:
    """Records launches as they come, batching those that arrive while a statement runs.

    A batch the database refuses for a reason other than being unreachable (a value it
    rejects, a deadlock) is written again one launch at a time, so one launch's error is never
    its neighbours'. While the database is unreachable, the launches queued behind a failed
    batch fail with it (503 ``database_unavailable``) instead of each waiting its own timeout.
    """

    async def write(records: Sequence[LaunchRecord]) -> list[bool | Exception]:
        try:
            return list(await record_launches(pool, records, region))
        except asyncpg.PostgresError as exc:
            if len(records) == 1 or isinstance(exc, DATABASE_UNAVAILABLE):
                raise
        results: list[bool | Exception] = []
        for record in records:
            try:
                results.extend(await record_launches(pool, [record], region))
            except asyncpg.PostgresError as exc:
                if isinstance(exc, DATABASE_UNAVAILABLE):
                    raise
                results.append(exc)
        return results

    return GroupWriter(
        write,
        key=lambda r: r.nonce,
        fails_queue=lambda exc: isinstance(exc, DATABASE_UNAVAILABLE),
    )


_RECORD_HELD = f"""
WITH sighting AS (
    INSERT INTO deployment_sightings (platform_id, deployment_id, policy)
    VALUES ($1, $2, 'hold') ON CONFLICT DO NOTHING
    RETURNING platform_id, deployment_id, policy, first_seen_at
)
{sighting_events("sighting", topic="$3", region="$4", source="launch")}
"""  # noqa: S608 - constant identifiers only


async def record_held_deployment(
    pool: asyncpg.Pool, platform_id: int, deployment_id: str, region: str
) -> None:
    """A deployment waiting for an administrator's approval; the first sighting goes home."""
    result = await pool.execute(_RECORD_HELD, platform_id, deployment_id, topics.SIGHTING, region)
    if result.split()[-1] != "0":
        outbox.wake_relays()


PURGE_BATCH = 500


# One bounded batch each: replicas skip each other's rows instead of waiting for them.
_PURGE_NONCES = """
DELETE FROM used_nonces WHERE nonce IN (
    SELECT nonce FROM used_nonces WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED)
"""
_PURGE_LAUNCHES = """
DELETE FROM launches WHERE id IN (
    SELECT id FROM launches WHERE created_at < now() - make_interval(days => $2)
    LIMIT $1 FOR UPDATE SKIP LOCKED)
"""


async def _drain(pool: asyncpg.Pool, sql: str, *args: object, pause_s: float) -> int:
    """Run a bounded DELETE of ``PURGE_BATCH`` rows until a batch comes back short (under load
    more rows expire per minute than one batch holds), pausing between batches so none holds
    locks, a connection or the CPU for long. Returns how many rows were deleted."""
    total = 0
    while True:
        deleted = int((await pool.execute(sql, PURGE_BATCH, *args)).split()[-1])
        total += deleted
        if deleted < PURGE_BATCH:
            return total
        await asyncio.sleep(pause_s)


async def purge_expired_nonces(pool: asyncpg.Pool, *, pause_s: float = 0.15) -> int:
    """Delete every used nonce that can no longer stop a replay."""
    return await _drain(pool, _PURGE_NONCES, pause_s=pause_s)


async def purge_expired_launches(
    pool: asyncpg.Pool, retention_days: int, *, pause_s: float = 0.15
) -> int:
    """Delete every launch record older than ``retention_days``."""
    return await _drain(pool, _PURGE_LAUNCHES, retention_days, pause_s=pause_s)


async def erase_launches(
    pool: asyncpg.Pool,
    platform_id: int,
    *,
    subject: str | None = None,
    context_id: str | None = None,
) -> int:
    """Delete one user's (``subject``) or one course's (``context_id``) launch records on a
    platform; returns how many. Exactly one of the two must be given."""
    if (subject is None) == (context_id is None):
        raise ValueError("give a subject or a context id")
    column = "subject" if subject is not None else "context_id"
    result = await pool.execute(
        f"DELETE FROM launches WHERE platform_id = $1 AND {column} = $2",  # noqa: S608
        platform_id,
        subject if subject is not None else context_id,
    )
    return int(result.split()[-1])
