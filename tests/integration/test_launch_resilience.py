"""Launches keep working while the platform rotates keys or its JWKS endpoint fails, and
registration changes reach the login and launch caches through events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.events import topics
from shared.events.envelope import Event
from shared.events.outbox import enqueue
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform
from tests.lti_support import (
    LtiStack,
    auth_params,
    browser,
    error_code,
    full_launch,
    login,
    post_launch,
    start_stack,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[LtiStack]:
    s, exits = await start_stack(infra, pool, platform_jwks_cooldown_s=1.0, http_timeout_s=1.0)
    try:
        yield s
    finally:
        await exits.aclose()


async def test_platform_key_rotation_mid_traffic(stack: LtiStack, canvas: FakePlatform) -> None:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    outcomes: list[int] = []

    async def one_browser(n: int) -> None:
        async with browser() as b:
            for _ in range(n):
                resp = await full_launch(b, stack.url, canvas, client)
                outcomes.append(resp.status)

    first = asyncio.create_task(one_browser(10))
    await asyncio.sleep(0.2)
    canvas.rotate()  # the platform starts signing with a kid Attune has never seen
    await asyncio.gather(first, one_browser(10))
    assert outcomes == [303] * 20
    # One fetch when cold, one refresh for the new kid (at most a second one racing it).
    assert 2 <= canvas.jwks_requests <= 3


async def test_warm_cache_survives_jwks_outage(stack: LtiStack, canvas: FakePlatform) -> None:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    async with browser() as b:
        assert (await full_launch(b, stack.url, canvas, client)).status == 303
        canvas.jwks_mode = "down"
        for _ in range(3):
            assert (await full_launch(b, stack.url, canvas, client)).status == 303
        # A new kid during the outage cannot be verified: fail fast with a clear code, and
        # keep the last good set for the old kid.
        canvas.rotate()
        params = await auth_params(b, stack.url, canvas, client)
        token = canvas.id_token(client, nonce=params["nonce"])
        started = time.monotonic()
        resp = await post_launch(b, stack.url, {"id_token": token, "state": params["state"]})
        assert resp.status == 400
        assert await error_code(resp) == "jwt_kid_unknown"
        assert time.monotonic() - started < 3


async def test_unknown_kid_flood_is_rate_limited(stack: LtiStack, canvas: FakePlatform) -> None:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    async with browser() as b:
        assert (await full_launch(b, stack.url, canvas, client)).status == 303
    before = canvas.jwks_requests

    async def bogus(i: int) -> str:
        async with browser() as b:
            params = await auth_params(b, stack.url, canvas, client)
            claims = canvas.claims(client, nonce=params["nonce"])
            token = canvas.sign(claims, headers={"kid": f"bogus-{i}"})
            resp = await post_launch(b, stack.url, {"id_token": token, "state": params["state"]})
            return await error_code(resp)

    started = time.monotonic()
    codes = await asyncio.gather(*(bogus(i) for i in range(20)))
    elapsed = time.monotonic() - started
    assert codes == ["jwt_kid_unknown"] * 20
    # At most one fetch per cooldown (1 s here), however many tokens carry unknown kids.
    assert canvas.jwks_requests - before <= 1 + elapsed / 1.0


async def test_registration_event_refreshes_login_and_launch_caches(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client)
    async with browser() as b:
        assert (await full_launch(b, stack.url, canvas, client)).status == 303
        # The registration service disables the deployment and announces it.
        async with stack.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE deployments SET status = 'disabled' WHERE platform_id = $1", platform_id
            )
            await enqueue(
                conn,
                topics.REGISTRATION,
                Event(
                    type="deployment.disabled",
                    source="registration",
                    subject=f"platform:{platform_id}",
                    data={
                        "issuer": canvas.issuer,
                        "client_id": client.client_id,
                        "deployment_id": client.deployment_id,
                    },
                ),
            )
        deadline = time.monotonic() + 15
        while True:
            resp = await login(b, stack.url, canvas, client, lti_deployment_id=client.deployment_id)
            if resp.status == 403:
                break
            assert time.monotonic() < deadline, "login cache was not invalidated"
            await asyncio.sleep(0.2)


async def test_a_database_that_hangs_answers_503_not_500_and_writes_nothing(
    infra: Infra, pool: asyncpg.Pool, canvas: FakePlatform
) -> None:
    """Postgres up but not answering in time (here: the nonce table locked by a stuck
    transaction): the launch statement hits the statement timeout; every launch waiting in the
    group-commit queue gets 503 database_unavailable with Retry-After, nothing is written, and
    launches work again once the lock is gone."""
    stack, exits = await start_stack(infra, pool, db_statement_timeout_ms=300)
    try:
        client = canvas.add_client(stack.redirect_uris())
        platform_id = await stack.register(canvas, client)
        before = await pool.fetchval(
            "SELECT count(*) FROM launches WHERE platform_id = $1", platform_id
        )
        async with pool.acquire() as blocker:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE used_nonces IN ACCESS EXCLUSIVE MODE")

            async def one() -> tuple[int, str, str | None]:
                async with browser() as b:
                    resp = await full_launch(b, stack.url, canvas, client)
                    return resp.status, await resp.text(), resp.headers.get("Retry-After")

            results = await asyncio.gather(*(one() for _ in range(4)))
            await tx.rollback()
        for status, body, retry_after in results:
            assert status == 503, body[:300]
            assert "database_unavailable" in body and retry_after
        after = await pool.fetchval(
            "SELECT count(*) FROM launches WHERE platform_id = $1", platform_id
        )
        assert after == before  # nothing half-written
        async with browser() as b:
            assert (await full_launch(b, stack.url, canvas, client)).status == 303
    finally:
        await exits.aclose()
