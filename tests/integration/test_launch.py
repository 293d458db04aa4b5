"""Complete LTI launches through the real gateway, login and launch services, against fake
Canvas and Moodle platforms, with registrations read from Postgres."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from shared.events.envelope import Event
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform, query_of
from tests.lti_support import (
    LtiStack,
    auth_params,
    browser,
    error_code,
    full_launch,
    post_launch,
    start_stack,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[LtiStack]:
    s, exits = await start_stack(infra, pool, ("us-east-1", "eu-west-1"))
    try:
        yield s
    finally:
        await exits.aclose()


async def launch_rows(pool: asyncpg.Pool, platform_id: int) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM launches WHERE platform_id = $1", platform_id)
    )


@pytest.mark.parametrize("flavour", ["canvas", "moodle"])
async def test_complete_launch_cookie_path(
    stack: LtiStack, canvas: FakePlatform, moodle: FakePlatform, flavour: str
) -> None:
    platform = canvas if flavour == "canvas" else moodle
    client = platform.add_client(stack.redirect_uris())
    platform_id = await stack.register(platform, client)
    async with browser() as b:
        login = await b.get(
            f"{stack.url}/lti/login",
            params={
                "iss": platform.issuer,
                "login_hint": "u1",
                "client_id": client.client_id,
                "target_link_uri": f"{stack.url}/app",
                "lti_deployment_id": client.deployment_id,
                "lti_message_hint": "hint-1",
            },
            allow_redirects=False,
        )
        assert login.status == 302
        auth = query_of(login.headers["Location"])
        assert login.headers["Location"].startswith(platform.auth_url + "?")
        assert auth["scope"] == "openid"
        assert auth["response_type"] == "id_token"
        assert auth["response_mode"] == "form_post"
        assert auth["prompt"] == "none"
        assert auth["redirect_uri"] == f"{stack.url}/lti/launch"
        assert auth["login_hint"] == "u1"
        assert auth["lti_message_hint"] == "hint-1"
        assert len(auth["nonce"]) >= 32
        cookie = login.headers["Set-Cookie"]
        for attribute in ("Secure", "HttpOnly", "SameSite=None", "Partitioned", "Path=/lti/launch"):
            assert attribute in cookie, cookie

        resp = await full_launch(b, stack.url, platform, client)
        assert resp.status == 303, await resp.text()
        location = resp.headers["Location"]
        assert location.startswith(f"{stack.url}/app/?f=")
        assert "#lt=" in location
        token = location.split("#lt=", 1)[1]
        me = await b.get(
            f"{stack.url}/api/checkins/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status == 200
        body = await me.json()
        assert body["platform_id"] == platform_id
        assert body["deployment_id"] == client.deployment_id
        assert body["roles"] == ["learner"]
        assert body["is_teacher"] is False
    assert await launch_rows(stack.pool, platform_id) == 1
    row = await stack.pool.fetchrow(
        "SELECT value FROM outbox WHERE topic = 'attune.launch.v1' ORDER BY seq DESC LIMIT 1"
    )
    event = Event.decode(row["value"])
    assert event.type == "launch.completed"
    assert event.data["platform"]["id"] == platform_id
    assert event.data["region"] == "us-east-1"
    raw = json.dumps(event.to_dict())
    assert "id_token" not in raw and auth["nonce"] not in raw


async def test_canvas_shared_issuer_many_clients_and_deployments(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    """Canvas uses one issuer for every customer: registrations differ by client_id."""
    clients = [canvas.add_client(stack.redirect_uris()) for _ in range(3)]
    ids = [await stack.register(canvas, c) for c in clients]
    extra = canvas.add_client(stack.redirect_uris())  # a second deployment of client 0:
    extra.client_id = clients[0].client_id
    await stack.pool.execute(
        "INSERT INTO deployments (platform_id, deployment_id) VALUES ($1, $2)",
        ids[0],
        extra.deployment_id,
    )
    canvas.clients[clients[0].client_id] = clients[0]
    async with browser() as b:
        for client, platform_id in zip(clients, ids, strict=True):
            resp = await full_launch(b, stack.url, canvas, client)
            assert resp.status == 303, await resp.text()
            assert await launch_rows(stack.pool, platform_id) == 1
        canvas.clients[extra.client_id] = extra
        resp = await full_launch(b, stack.url, canvas, extra)
        assert resp.status == 303, await resp.text()
    assert await launch_rows(stack.pool, ids[0]) == 2


async def test_each_region_redirects_to_its_own_launch_url(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client)
    tokens = {}
    async with browser() as b:
        for region in stack.regions:
            resp = await full_launch(b, region.url, canvas, client, canvas_region=region.name)
            assert resp.status == 303, await resp.text()
            assert canvas.auth_requests[-1]["redirect_uri"] == f"{region.url}/lti/launch"
            # The app of the same region: its cell alone holds the launch.
            assert resp.headers["Location"].startswith(f"{region.url}/app/?f=")
            tokens[region.url] = resp.headers["Location"].split("#lt=", 1)[1]
        # A launch token works in its own region's app only, even where the regions share
        # their secrets (as this stack's do).
        here, there = (r.url for r in stack.regions)
        for url, token, status in ((here, tokens[here], 200), (here, tokens[there], 401)):
            me = await b.get(
                f"{url}/api/checkins/me",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            assert me.status == status
        assert (await me.json())["error"]["code"] == "launch_token_other_region"
        # The deep-linking return page reads its token from a form: the same rule.
        page = await b.post(
            f"{here}/app/deep-link",
            data={"lt": tokens[there], "checkin_id": "1"},
            headers={"Accept": "application/json"},
        )
        assert page.status == 401
        assert (await page.json())["error"]["code"] == "launch_token_other_region"
    rows = await stack.pool.fetch(
        "SELECT region FROM launches WHERE platform_id = $1 ORDER BY created_at", platform_id
    )
    assert [r["region"] for r in rows] == ["us-east-1", "eu-west-1"]


async def test_a_login_in_one_region_cannot_launch_in_another(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    """The state a region's login issued is refused by another region's launch (its launch
    belongs where the login was), even with the secrets shared and the cookie sent along."""
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    here, there = stack.regions
    async with browser() as b:
        params = await auth_params(b, here.url, canvas, client)
        token = canvas.id_token(client, nonce=params["nonce"])
        resp = await post_launch(b, there.url, {"id_token": token, "state": params["state"]})
        assert resp.status == 400
        assert await error_code(resp) == "state_invalid"
        resp = await post_launch(b, here.url, {"id_token": token, "state": params["state"]})
        assert resp.status == 303, await resp.text()


async def test_post_login_and_new_deployment_under_accept_policy(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client, deployment_status=None)
    async with browser() as b:
        resp = await full_launch(b, stack.url, canvas, client, method="POST")
        assert resp.status == 303, await resp.text()
    sighting = await stack.pool.fetchrow(
        "SELECT policy FROM deployment_sightings WHERE platform_id = $1", platform_id
    )
    assert sighting["policy"] == "accept"


async def test_teacher_roles(stack: LtiStack, moodle: FakePlatform) -> None:
    client = moodle.add_client(stack.redirect_uris())
    await stack.register(moodle, client)
    hint = json.dumps(
        {
            "roles": [
                "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor",
                "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Faculty",
            ]
        }
    )
    async with browser() as b:
        resp = await full_launch(b, stack.url, moodle, client, lti_message_hint=hint)
        assert resp.status == 303, await resp.text()
        token = resp.headers["Location"].split("#lt=", 1)[1]
        me = await (
            await b.get(
                f"{stack.url}/api/checkins/me", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
    assert me["roles"] == ["instructor"]
    assert me["is_teacher"] is True


async def test_app_page_is_served_through_the_gateway(stack: LtiStack) -> None:
    async with browser() as b:
        resp = await b.get(f"{stack.url}/app/")
        assert resp.status == 200
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert (
            "unsafe-inline"
            not in resp.headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]
        )
        assert urlsplit(str(resp.url)).path == "/app/"


async def test_expired_nonce_backlog_is_purged_in_bounded_batches(pool: asyncpg.Pool) -> None:
    """More nonces expire per minute under load than one batch holds: the purge drains the
    whole backlog (several batches) and keeps every nonce that can still stop a replay."""
    from services.launch import queries

    expired = queries.PURGE_BATCH * 2 + 123
    await pool.execute(
        "INSERT INTO used_nonces (nonce, expires_at) "
        "SELECT 'old-' || i, now() - interval '1 minute' FROM generate_series(1, $1::int) i",
        expired,
    )
    await pool.execute(
        "INSERT INTO used_nonces (nonce, expires_at) "
        "SELECT 'live-' || i, now() + interval '5 minutes' FROM generate_series(1, 50) i"
    )
    assert await queries.purge_expired_nonces(pool, pause_s=0) >= expired
    assert await pool.fetchval("SELECT count(*) FROM used_nonces WHERE nonce LIKE 'old-%'") == 0
    assert await pool.fetchval("SELECT count(*) FROM used_nonces WHERE nonce LIKE 'live-%'") == 50
