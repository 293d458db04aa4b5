"""A deployment disabled by the registration service makes its courses read-only in the app,
through the real registration event on the broker; re-approving it lifts that."""

from __future__ import annotations

import asyncpg
import pytest

from shared.events import topics
from shared.events.envelope import Event
from shared.events.outbox import enqueue
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import Api, launch_token, wait_for
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration


async def announce(pool: asyncpg.Pool, kind: str, platform_id: int, client: Client) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(
            conn,
            topics.REGISTRATION,
            Event(
                type=kind,
                source="registration",
                subject=f"platform:{platform_id}",
                data={"platform_id": platform_id, "deployment_id": client.deployment_id},
            ),
        )


async def test_disabled_deployment_is_read_only(stack: LtiStack, canvas: FakePlatform) -> None:
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client)
    teacher = Api(stack.url, await launch_token(stack.url, canvas, client, "t1", teacher=True))
    status, created = await teacher.call("POST", "/checkins", {"question": "Before?"})
    assert status == 201, created
    student = Api(stack.url, await launch_token(stack.url, canvas, client, "s1"))
    answer = f"/checkins/{created['id']}/response"

    await announce(stack.pool, "deployment.disabled", platform_id, client)

    async def refused() -> bool:
        status, body = await teacher.call("POST", "/checkins", {"question": "During?"})
        return status == 403 and body["error"]["code"] == "deployment_read_only"

    await wait_for(refused, timeout=30)
    status, body = await teacher.call("DELETE", f"/checkins/{created['id']}")
    assert status == 403 and body["error"]["code"] == "deployment_read_only"
    # Answering checks read-only in its own statement (not the middleware): refused too, and
    # nothing stored.
    status, body = await student.call("PUT", answer, {"emotion": "happy"})
    assert status == 403 and body["error"]["code"] == "deployment_read_only", body
    stored = "SELECT count(*) FROM checkin_responses WHERE checkin_id = $1"
    assert await stack.pool.fetchval(stored, created["id"]) == 0
    status, listing = await teacher.call("GET", "/checkins")  # reading still works
    assert status == 200 and "Before?" in [c["question"] for c in listing["checkins"]]

    await announce(stack.pool, "deployment.approved", platform_id, client)

    async def allowed() -> bool:
        status, _ = await teacher.call("POST", "/checkins", {"question": "After?"})
        return status == 201

    await wait_for(allowed, timeout=30)
    assert (await student.call("PUT", answer, {"emotion": "happy"}))[0] == 201


async def test_an_older_event_never_overwrites_a_newer_state(pool: asyncpg.Pool) -> None:
    """Regression: the projection applied events in delivery order only. After a broker loss
    and ``attune events replay``, an older ``deployment.disabled`` can arrive after a newer
    ``deployment.approved`` the consumer already applied (and now skips as a duplicate):
    the course stayed read-only. The newest event wins, whatever the delivery order."""
    from datetime import UTC, datetime, timedelta

    from services.checkins.deployments import apply_registration

    earlier = datetime.now(UTC) - timedelta(minutes=5)

    def change(kind: str, at: datetime) -> Event:
        data = {"platform_id": 424242, "deployment_id": "d-order"}
        return Event(kind, "registration", "platform:424242", data, occurred_at=at)

    read_only = "SELECT read_only FROM checkin_deployment_status WHERE platform_id = 424242"
    async with pool.acquire() as conn:
        await apply_registration(conn, change("deployment.approved", earlier + timedelta(1)))
        await apply_registration(conn, change("deployment.disabled", earlier))  # replayed late
        assert await conn.fetchval(read_only) is False
        await apply_registration(conn, change("deployment.disabled", earlier + timedelta(2)))
        assert await conn.fetchval(read_only) is True
        await conn.execute("DELETE FROM checkin_deployment_status WHERE platform_id = 424242")
