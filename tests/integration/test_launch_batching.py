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
from shared.events.envelope import Event
from shared.ids import uuid7

pytestmark = pytest.mark.integration

ROLES = [
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",
    'odd "role", with {braces} and, commas',
    "ünïcode ✓",
]


def record(nonce: str, *, deployment: str = "d-1", new: bool = False) -> queries.LaunchRecord:
    launch_id = uuid7()
    return queries.LaunchRecord(
        nonce=nonce,
        nonce_expires_at=time.time() + 600,
        launch_id=launch_id,
        platform_id=4242,
        deployment_id=deployment,
        message_type="LtiResourceLinkRequest",
        subject=f"sub-{nonce}",
        context_id="course-1",
        resource_link_id="rl-1",
        roles=ROLES,
        region="us-east-1",
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
    assert await queries.record_launches(pool, [used_before]) == [True]
    batch = [record(f"{tag}-a", new=True), used_before, record(f"{tag}-b", new=True)]
    batch[1] = record(f"{tag}-used")  # same nonce, another launch: a replay
    assert await queries.record_launches(pool, batch) == [True, False, True]

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
    # Two new launches of one new deployment in one batch: one sighting.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM deployment_sightings WHERE platform_id = 4242"
            " AND deployment_id = 'd-1'"
        )
        == 1
    )
    # The replay's launch id was never written.
    assert not await pool.fetchval(
        "SELECT count(*) FROM launches WHERE id = $1", batch[1].launch_id
    )


async def test_concurrent_launches_share_statements_and_replays_lose(pool: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex
    writer = queries.launch_writer(pool)
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
        await queries.record_launches(pool, [good, bad])
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM used_nonces WHERE nonce = any($1)", [good.nonce, bad.nonce]
        )
        == 0
    )
    assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE id = $1", good.event.id)
    # Its nonce is still unused: the browser's retry of the same launch succeeds.
    assert await queries.record_launches(pool, [good]) == [True]
