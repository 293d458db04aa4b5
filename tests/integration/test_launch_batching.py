"""Launch records written many per statement (services/launch/queries.py + GroupWriter),
against the real database: each launch is used up, recorded and announced exactly once, a
replay in the same batch or a later one writes nothing, and a failing batch writes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from services.launch import queries
from shared.events import topics
from shared.events.envelope import Event
from shared.ids import uuid7

pytestmark = pytest.mark.integration
REGION = "us-east-1"

ROLES = [
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",
    'odd "role", with {braces} and, commas',
    "ünïcode ✓",
]


def record(
    nonce: str,
    *,
    deployment: str = "d-1",
    new: bool = False,
    subject: str | None = "",
    roles: list[str] | None = None,
) -> queries.LaunchRecord:
    launch_id = uuid7()
    return queries.LaunchRecord(
        nonce=nonce,
        nonce_expires_at=time.time() + 600,
        launch_id=launch_id,
        platform_id=4242,
        deployment_id=deployment,
        message_type="LtiResourceLinkRequest",
        subject=f"sub-{nonce}" if subject == "" else subject,
        context_id="course-1" if subject == "" else None,
        resource_link_id="rl-1" if subject == "" else None,
        roles=ROLES if roles is None else roles,
        region=REGION,
        new_deployment=new,
        event=Event(
            type="launch.completed", source="test", subject="s", data={"launch_id": str(launch_id)}
        ),
        event_key="4242:course-1",
    )


async def test_a_batch_records_fresh_launches_and_nothing_for_used_nonces(
    pool: asyncpg.Pool,
) -> None:
    tag = uuid.uuid4().hex
    used_before = record(f"{tag}-used")
    assert await queries.record_launches(pool, [used_before], REGION) == [True]
    deployment = f"d-{tag}"
    batch = [
        record(f"{tag}-a", deployment=deployment, new=True),
        record(f"{tag}-used", deployment=deployment, new=True),  # a replay of that nonce
        record(f"{tag}-b", deployment=deployment, new=True),
    ]
    sightings = "SELECT count(*) FROM deployment_sightings WHERE deployment_id = $1"
    assert await pool.fetchval(sightings, deployment) == 0
    assert await queries.record_launches(pool, batch, REGION) == [True, False, True]

    rows = await pool.fetch(
        "SELECT id, subject, roles, deployment_id FROM launches WHERE subject LIKE $1"
        " ORDER BY subject",
        f"sub-{tag}%",
    )
    assert [r["subject"] for r in rows] == [f"sub-{tag}-{x}" for x in ("a", "b", "used")]
    assert all(r["roles"] == ROLES for r in rows)  # the JSON round trip keeps every role
    events = {
        Event.decode(r["value"]).data["launch_id"]
        for r in await pool.fetch(
            "SELECT value FROM outbox WHERE id = any($1)", [r.event.id for r in batch]
        )
    }
    assert events == {str(batch[0].launch_id), str(batch[2].launch_id)}  # not the replay's
    # Two new launches of one new deployment in one batch: one sighting, and one event that
    # takes it home (shared/cells/sightings.py): what and where, nothing about who.
    assert await pool.fetchval(sightings, deployment) == 1
    sighted = [
        Event.decode(r["value"])
        for r in await pool.fetch(
            "SELECT value FROM outbox WHERE topic = $1 AND convert_from(value, 'UTF8') LIKE $2",
            topics.SIGHTING,
            f"%{deployment}%",
        )
    ]
    assert [(e.type, e.subject) for e in sighted] == [("deployment.sighted", "platform:4242")]
    assert sighted[0].data == {
        "platform_id": 4242,
        "deployment_id": deployment,
        "policy": "accept",
        "first_seen_at": sighted[0].data["first_seen_at"],
        "region": REGION,
    }
    assert tag not in sighted[0].encode().decode().replace(deployment, "")
    # A launch of a deployment that is not new writes none.
    known = f"known-{tag}"
    assert await queries.record_launches(pool, [record(f"{tag}-c", deployment=known)], REGION) == [
        True
    ]
    assert await pool.fetchval(sightings, known) == 0
    # The replay's launch id was never written.
    assert not await pool.fetchval(
        "SELECT count(*) FROM launches WHERE id = $1", batch[1].launch_id
    )


async def test_concurrent_launches_share_statements_and_replays_lose(pool: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex
    writer = queries.launch_writer(pool, REGION)
    launches = [record(f"{tag}-{i}") for i in range(60)]
    replays = [record(f"{tag}-7") for _ in range(5)]  # five more posts of launch 7's token
    results = await asyncio.gather(*(writer.write(r) for r in launches + replays))
    await writer.close()
    assert results[:60] == [True] * 60
    assert results[60:] == [False] * 5

    stats = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT created_at) AS statements FROM launches"
        " WHERE subject LIKE $1",
        f"sub-{tag}-%",
    )
    assert stats["n"] == 60  # one record per launch, none for a replay
    assert stats["statements"] < 60  # and they shared statements (one created_at each)
    outbox = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE id = any($1)", [r.event.id for r in launches + replays]
    )
    assert outbox == 60


async def test_a_failing_batch_fails_every_launch_in_it_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    tag = uuid.uuid4().hex
    good = record(f"{tag}-good")
    bad = record(f"{tag}-bad")
    object.__setattr__(bad, "deployment_id", None)  # launches.deployment_id is NOT NULL
    with pytest.raises(asyncpg.NotNullViolationError):
        await queries.record_launches(pool, [good, bad], REGION)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM used_nonces WHERE nonce = any($1)", [good.nonce, bad.nonce]
        )
        == 0
    )
    assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE id = $1", good.event.id)
    # Its nonce is still unused: the browser's retry of the same launch succeeds.
    assert await queries.record_launches(pool, [good], REGION) == [True]


async def test_absent_claims_and_empty_roles_are_stored_as_such(pool: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex
    bare = record(f"{tag}-bare", subject=None, roles=[])  # e.g. a deep-linking request
    assert await queries.record_launches(pool, [bare, record(f"{tag}-full")], REGION) == [
        True,
        True,
    ]
    row = await pool.fetchrow(
        "SELECT subject, context_id, resource_link_id, roles FROM launches WHERE id = $1",
        bare.launch_id,
    )
    assert dict(row) == {"subject": None, "context_id": None, "resource_link_id": None, "roles": []}


async def test_a_batch_never_takes_one_nonce_twice(pool: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex
    twice = [record(f"{tag}-x"), record(f"{tag}-x")]
    with pytest.raises(ValueError, match="same nonce twice"):
        await queries.record_launches(pool, twice, REGION)
    assert not await pool.fetchval("SELECT count(*) FROM used_nonces WHERE nonce = $1", f"{tag}-x")


async def test_batches_sharing_nonces_in_opposite_orders_do_not_deadlock(
    pool: asyncpg.Pool,
) -> None:
    """One token posted to two replicas at once: their statements lock nonces in the same
    order, so one waits for the other instead of both being aborted as a deadlock."""
    async with pool.acquire() as one, pool.acquire() as two:  # both connected already
        for attempt in range(5):
            nonces = [f"{uuid.uuid4().hex}-{attempt}-{i}" for i in range(1000)]
            forward = [record(n) for n in nonces]
            backward = [record(n) for n in reversed(nonces)]
            first, second = await asyncio.gather(
                queries.record_launches(one, forward, REGION),
                queries.record_launches(two, backward, REGION),
            )
            # Every nonce used up exactly once, by one statement or the other.
            assert [a != b for a, b in zip(first, reversed(second), strict=True)] == [True] * 1000


async def test_a_launch_the_database_refuses_does_not_fail_its_neighbours(
    pool: asyncpg.Pool,
) -> None:
    tag = uuid.uuid4().hex
    writer = queries.launch_writer(pool, REGION)
    good = [record(f"{tag}-{i}") for i in range(6)]
    bad = record(f"{tag}-bad")
    object.__setattr__(bad, "deployment_id", None)  # launches.deployment_id is NOT NULL
    results = await asyncio.gather(
        *(writer.write(r) for r in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )
    await writer.close()
    assert results[:3] == [True] * 3 and results[4:] == [True] * 3
    assert isinstance(results[3], asyncpg.NotNullViolationError)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM launches WHERE id = any($1)", [r.launch_id for r in good]
        )
        == 6
    )
