"""The registration state and a cell's mirror of it (shared/cells/registrations.py), against
two real databases: one plays the home region (the registration service's tables and outbox),
the other a cell (its own copy, written only by the mirror).

The states are taken from the home database's outbox exactly as the relay would publish them
and applied to the cell's, so both sides of the one column list meet here."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from services.checkins.deployments import apply_registration
from shared.cells.registrations import (
    PLATFORM_COLUMNS,
    SNAPSHOT,
    STATE,
    apply_event,
    apply_snapshot,
    apply_state,
    mirror_bootstrapped,
    publish_state,
    republish,
)
from shared.events import topics
from shared.events.envelope import Event
from shared.migrate import upgrade
from tests.conftest import Infra

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


async def _database(infra: Infra) -> str:
    url = await infra.new_database("attune_mirror")
    await asyncio.to_thread(upgrade, url)
    return url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dbs(infra: Infra) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    home_url, cell_url = await _database(infra), await _database(infra)
    home = await asyncpg.create_pool(home_url, min_size=1, max_size=4)
    cell = await asyncpg.create_pool(cell_url, min_size=1, max_size=4)
    try:
        yield home, cell
    finally:
        await home.close()
        await cell.close()
        for url in (home_url, cell_url):
            await infra.drop_database(url)


async def new_platform(home: asyncpg.Pool, **values: Any) -> int:
    row = {
        "issuer": f"https://lms-{uuid.uuid4().hex[:6]}.example.edu",
        "client_id": "c-1",
        "auth_url": "https://lms.example.edu/auth",
        "jwks_url": "https://lms.example.edu/jwks",
        "token_url": "https://lms.example.edu/token",
        "product": "moodle",
        "frame_origins": ["https://lms.example.edu"],
        "region": "eu-west-1",
        **values,
    }
    async with home.acquire() as conn, conn.transaction():
        platform_id: int = await conn.fetchval(
            f"INSERT INTO platforms ({', '.join(row)}) VALUES "
            f"({', '.join(f'${i}' for i in range(1, len(row) + 1))}) RETURNING id",
            *row.values(),
        )
        await conn.execute(
            "INSERT INTO deployments (platform_id, deployment_id, status) VALUES ($1, 'd-1', "
            "'active')",
            platform_id,
        )
        await publish_state(conn, platform_id)
    return platform_id


async def published(home: asyncpg.Pool) -> list[Event]:
    """What the relay would publish next on the state topic (and mark it taken)."""
    rows = await home.fetch(
        "UPDATE outbox SET sent_at = now() WHERE topic = $1 AND sent_at IS NULL "
        "RETURNING seq, value",
        topics.REGISTRATION_STATE,
    )
    return [Event.decode(bytes(r["value"])) for r in sorted(rows, key=lambda r: r["seq"])]


async def apply(cell: asyncpg.Pool, events: list[Event]) -> list[Event]:
    """Apply as the mirror does (one transaction each); returns the local events it wrote."""
    before = await cell.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")
    for event in events:
        async with cell.acquire() as conn, conn.transaction():
            await apply_event(conn, event)
    rows = await cell.fetch("SELECT topic, value FROM outbox WHERE seq > $1 ORDER BY seq", before)
    assert {r["topic"] for r in rows} <= {topics.REGISTRATION}
    return [Event.decode(bytes(r["value"])) for r in rows]


async def local(cell: asyncpg.Pool, platform_id: int) -> dict[str, Any] | None:
    row = await cell.fetchrow(
        f"SELECT {', '.join(PLATFORM_COLUMNS)} FROM platforms WHERE id = $1", platform_id
    )
    return dict(row) if row is not None else None


async def at_home(home: asyncpg.Pool, platform_id: int) -> dict[str, Any]:
    row = await home.fetchrow(
        f"SELECT {', '.join(PLATFORM_COLUMNS)} FROM platforms WHERE id = $1", platform_id
    )
    return dict(row)


async def test_a_state_becomes_the_cells_copy_and_is_announced_there(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    home, cell = dbs
    platform_id = await new_platform(home)
    [state] = await published(home)
    assert (state.type, state.subject) == (STATE, f"platform:{platform_id}")
    assert set(state.data["platform"]) == set(PLATFORM_COLUMNS)
    announced = await apply(cell, [state])
    assert await local(cell, platform_id) == await at_home(home, platform_id)
    assert (
        await cell.fetchval(
            "SELECT status FROM deployments WHERE platform_id = $1 AND deployment_id = 'd-1'",
            platform_id,
        )
        == "active"
    )
    [created] = announced
    assert created.type == "registration.created"
    assert created.data["platform_id"] == platform_id
    assert created.data["issuer"] == state.data["platform"]["issuer"]
    assert created.data["deployment_ids"] == ["d-1"]
    # The same state again (a redelivery, a snapshot) changes and announces nothing.
    assert await apply(cell, [state]) == []


async def test_deployment_changes_reach_the_cells_projections(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    home, cell = dbs
    platform_id = await new_platform(home)
    await apply(cell, await published(home))

    async def set_status(status: str) -> list[Event]:
        async with home.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deployments SET status = $2 WHERE platform_id = $1", platform_id, status
            )
            await publish_state(conn, platform_id)
        return await apply(cell, await published(home))

    disabled = await set_status("disabled")
    assert [e.type for e in disabled] == ["registration.updated", "deployment.disabled"]
    # checkins' read-only projection in the cell understands what the mirror announced.
    async with cell.acquire() as conn, conn.transaction():
        for event in disabled:
            await apply_registration(conn, event)
    read_only = "SELECT read_only FROM checkin_deployment_status WHERE platform_id = $1"
    assert await cell.fetchval(read_only, platform_id) is True
    approved = await set_status("active")
    assert [e.type for e in approved] == ["registration.updated", "deployment.approved"]
    async with cell.acquire() as conn, conn.transaction():
        for event in approved:
            await apply_registration(conn, event)
    assert await cell.fetchval(read_only, platform_id) is False


async def test_an_older_state_never_overwrites_a_newer_one(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    home, cell = dbs
    platform_id = await new_platform(home, region=None)
    [old] = await published(home)
    async with home.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE platforms SET region = 'eu-west-1' WHERE id = $1", platform_id)
        await publish_state(conn, platform_id)
    [new] = await published(home)
    assert new.data["version"] > old.data["version"]
    await apply(cell, [new])
    assert await apply(cell, [old]) == []  # a replay delivered late
    assert (await local(cell, platform_id) or {})["region"] == "eu-west-1"


async def test_a_deletion_removes_the_copy_and_a_late_state_cannot_bring_it_back(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    home, cell = dbs
    platform_id = await new_platform(home)
    [state] = await published(home)
    await apply(cell, [state])
    async with home.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM platforms WHERE id = $1", platform_id)
        await publish_state(conn, platform_id)
    [deleted] = await published(home)
    assert deleted.data["deleted"] is True and "platform" not in deleted.data
    [announced] = await apply(cell, [deleted])
    assert announced.type == "registration.deleted"
    assert announced.data["deployment_ids"] == ["d-1"]  # checkins makes them read-only
    assert await local(cell, platform_id) is None
    assert await apply(cell, [state]) == []
    assert await local(cell, platform_id) is None


async def test_a_key_taken_over_by_a_new_registration_moves_to_it(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """Home deleted a registration and made a new one for the same (issuer, client_id): the
    cell ends with the new id whatever order the two arrive in."""
    home, cell = dbs
    first = await new_platform(home)
    await apply(cell, await published(home))
    issuer = (await at_home(home, first))["issuer"]
    async with home.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM platforms WHERE id = $1", first)
        await publish_state(conn, first)
    [deletion] = await published(home)
    second = await new_platform(home, issuer=issuer)
    [creation] = await published(home)
    kinds = [e.type for e in await apply(cell, [creation])]  # the deletion not seen yet
    assert kinds == ["registration.deleted", "registration.created"]
    assert await local(cell, first) is None
    assert (await local(cell, second) or {})["issuer"] == issuer
    assert await apply(cell, [deletion]) == []  # late: nothing left to do


async def test_a_snapshot_bootstraps_a_cell_and_removes_what_home_no_longer_has(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    home, cell = dbs
    await published(home)  # earlier tests' leftovers
    kept = await new_platform(home)
    await published(home)  # the cell never hears of these two by their own events
    # A registration the cell holds but home lost without the cell hearing of it.
    gone = await new_platform(home)
    await apply(cell, await published(home))
    await home.execute("DELETE FROM platforms WHERE id = $1", gone)

    count = await republish(home)
    events = await published(home)
    assert len(events) == count + 1
    assert [e.type for e in events[-1:]] == [SNAPSHOT]  # the manifest comes last
    manifest = events[-1].data
    assert kept in manifest["platform_ids"] and gone not in manifest["platform_ids"]
    await apply(cell, events)
    assert await local(cell, kept) == await at_home(home, kept)
    assert await local(cell, gone) is None
    assert await mirror_bootstrapped(cell)
    # Home's tables and the cell's copy now agree on every registration.
    ids = "SELECT id FROM platforms ORDER BY id"
    assert [r["id"] for r in await cell.fetch(ids)] == [r["id"] for r in await home.fetch(ids)]


async def test_a_manifest_never_removes_a_registration_newer_than_itself(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    home, cell = dbs
    await apply(cell, await published(home))
    older = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    newer = await new_platform(home)
    await apply(cell, await published(home))
    async with cell.acquire() as conn, conn.transaction():
        await apply_snapshot(conn, {"version": older, "platform_ids": []})  # a replayed one
    assert await local(cell, newer) is not None


async def test_states_from_an_older_or_newer_home_apply_what_both_know(
    dbs: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """A rolling upgrade: a state without a column this cell knows keeps the cell's value; a
    column this cell does not know is ignored."""
    home, cell = dbs
    platform_id = await new_platform(home)
    [state] = await published(home)
    await apply(cell, [state])
    platform = {k: v for k, v in state.data["platform"].items() if k != "region"}
    platform["auth_url"] = "https://lms.example.edu/auth2"
    platform["a_column_from_the_future"] = "x"
    later = (datetime.fromisoformat(state.data["version"]) + timedelta(seconds=1)).isoformat()
    async with cell.acquire() as conn, conn.transaction():
        await apply_state(
            conn, {"platform_id": platform_id, "version": later, "platform": platform}
        )
    copy = await local(cell, platform_id) or {}
    assert copy["auth_url"] == "https://lms.example.edu/auth2"
    assert copy["region"] == "eu-west-1"
    assert json.loads(json.dumps(copy["frame_origins"])) == ["https://lms.example.edu"]
