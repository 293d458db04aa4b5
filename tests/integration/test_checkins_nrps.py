"""NRPS end to end: a launch carrying a memberships URL makes the checkins service fetch the
course roster (client-credentials token with a private_key_jwt assertion the platform verifies
against the tool's JWKS, three pages), store it, and count participation against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import LEARNER, Api, wait_for
from tests.integration.test_checkins_deep_linking import course, launch, tool_jwks
from tests.lti_support import LtiStack, platform_server, start_stack

pytestmark = pytest.mark.integration

__all__ = ["course", "tool_jwks"]  # fixtures shared with the deep-linking tests

INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
MEMBERS = [
    {"user_id": "s-1", "name": "Ada", "status": "Active", "roles": [LEARNER]},
    {"user_id": "s-2", "name": "Ben", "roles": ["Learner"]},  # short role, default status
    {"user_id": "s-3", "name": "Cy", "status": "Active", "roles": [LEARNER]},
    {"user_id": "s-4", "name": "Dee", "status": "Inactive", "roles": [LEARNER]},
    {"user_id": "t-1", "name": "Prof", "status": "Active", "roles": [INSTRUCTOR]},
]


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool, tool_jwks: str) -> AsyncIterator[LtiStack]:
    await pool.execute("TRUNCATE checkin_nrps_sync")
    s, exits = await start_stack(infra, pool)
    try:
        yield s
    finally:
        await exits.aclose()


@pytest.fixture
async def canvas(tool_jwks: str) -> AsyncIterator[FakePlatform]:
    async for p in platform_server("canvas"):
        p.tool_jwks_url = tool_jwks
        p.nrps_members = list(MEMBERS)
        yield p


async def synced(pool: asyncpg.Pool, platform_id: int, times: int = 1) -> asyncpg.Record:
    """Wait until the course's sync state shows a completed sync; returns it."""
    row: asyncpg.Record | None = None

    async def done() -> bool:
        nonlocal row
        row = await pool.fetchrow(
            "SELECT * FROM checkin_nrps_sync WHERE platform_id = $1 AND context_id = 'course-1'",
            platform_id,
        )
        return row is not None and row["synced_at"] is not None and row["next_attempt_at"] is None

    await wait_for(done)
    assert row is not None
    return row


async def test_roster_from_nrps_pages_tokens_and_rate_limit(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool
) -> None:
    platform_id = await pool.fetchval("SELECT max(id) FROM platforms")
    await launch(stack, canvas, course, "s-1", teacher=False)
    state = await synced(pool, platform_id)
    assert state["members"] == 4 and state["failures"] == 0
    assert canvas.token_errors == []
    assert len(canvas.token_requests) == 1
    assert len(canvas.nrps_requests) == 3  # pages of 2, 2 and 1, by Link rel="next"
    assert canvas.nrps_requests[1].endswith("?page=2") and canvas.nrps_requests[2].endswith(
        "?page=3"
    )
    rows = {
        r["subject"]: r
        for r in await pool.fetch(
            "SELECT * FROM course_roster WHERE platform_id = $1 AND context_id = 'course-1'",
            platform_id,
        )
    }
    assert {s for s, r in rows.items() if r["nrps"]} == {"s-1", "s-2", "s-3", "t-1"}
    assert rows["s-2"]["role_kinds"] == ["learner"] and rows["t-1"]["role_kinds"] == ["instructor"]
    assert rows["s-2"]["name"] == "Ben"
    assert "s-4" not in rows  # inactive

    # Participation counts the LMS's learners (3), not just those who launched.
    teacher = Api(stack.url, await launch(stack, canvas, course, "t-1", teacher=True))
    status, _ = await teacher.call("POST", "/checkins", {"question": "Week?"})
    assert status == 201
    status, listing = await teacher.call("GET", "/checkins")
    assert listing["checkins"][0]["participation"]["learners"] == 3

    # Another launch within ATTUNE_CHECKIN_NRPS_REFRESH_S does not fetch again.
    await launch(stack, canvas, course, "s-2", teacher=False)

    async def seen() -> bool:
        got = await pool.fetchval(
            "SELECT requested_at > $2 FROM checkin_nrps_sync WHERE platform_id = $1",
            platform_id,
            state["requested_at"],
        )
        return bool(got)

    await wait_for(seen)
    await asyncio.sleep(1.5)
    assert len(canvas.nrps_requests) == 3 and len(canvas.token_requests) == 1

    # A token the platform revoked: dropped on 401, a new one fetched, the sync succeeds.
    canvas.access_tokens.clear()
    canvas.nrps_members = [m for m in MEMBERS if m["user_id"] != "s-3"]
    await pool.execute(
        "UPDATE checkin_nrps_sync SET next_attempt_at = now() WHERE platform_id = $1", platform_id
    )
    await synced(pool, platform_id)
    await wait_for(
        lambda: pool.fetchval(
            "SELECT NOT nrps FROM course_roster WHERE platform_id = $1 AND subject = 's-3'",
            platform_id,
        )
    )
    assert len(canvas.token_requests) == 2 and canvas.token_errors == []
    assert len({r["client_assertion"] for r in canvas.token_requests}) == 2
    status, listing = await teacher.call("GET", "/checkins")
    assert listing["checkins"][0]["participation"]["learners"] == 2


async def test_failing_sync_backs_off(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool
) -> None:
    platform_id = await pool.fetchval("SELECT max(id) FROM platforms")
    # A token endpoint that refuses every assertion.
    await pool.execute(
        "UPDATE platforms SET token_url = $2 WHERE id = $1",
        platform_id,
        canvas.base_url + "/nowhere",
    )
    await launch(stack, canvas, course, "s-1", teacher=False)

    async def failed() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT failures >= 1 FROM checkin_nrps_sync WHERE platform_id = $1", platform_id
            )
        )

    await wait_for(failed)
    row = await pool.fetchrow(
        "SELECT failures, last_error, next_attempt_at - now() AS wait, synced_at"
        " FROM checkin_nrps_sync WHERE platform_id = $1",
        platform_id,
    )
    assert row["failures"] == 1 and row["synced_at"] is None
    assert row["last_error"].startswith("token_http_")
    assert 20 < row["wait"].total_seconds() <= 30
    # A launch meanwhile does not cut the backoff short.
    await launch(stack, canvas, course, "s-2", teacher=False)
    await asyncio.sleep(1.5)
    assert (
        await pool.fetchval(
            "SELECT failures FROM checkin_nrps_sync WHERE platform_id = $1", platform_id
        )
        == 1
    )
    # Without NRPS members, participation falls back to the learners who launched.
    teacher = Api(stack.url, await launch(stack, canvas, course, "t-1", teacher=True))
    await teacher.call("POST", "/checkins", {"question": "Q"})
    _, listing = await teacher.call("GET", "/checkins")
    assert listing["checkins"][0]["participation"]["learners"] >= 1
