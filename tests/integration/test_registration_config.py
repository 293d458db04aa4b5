"""The Canvas JSON configuration against the seed's field table, and manual registration
(Moodle's "Configure a tool manually"; a Canvas global developer key) round trips: the values
shown are the ones the LMS needs, the values given are the ones stored, and launches work."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from services.registration.app import create_app
from services.registration.cli import create_token
from shared.events.envelope import Event
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform, new_key, weak_key
from tests.fakes.registration_platform import outbox_settled, serve_app
from tests.lti_support import LtiStack, browser, error_code, full_launch, login, start_stack

pytestmark = pytest.mark.integration

# "Anatomy of a JSON configuration" (seeds/canvas-lti-configuring.txt).
TOP_LEVEL = {
    "title": ("required", str),
    "description": ("required", str),
    "oidc_initiation_url": ("required", str),
    "oidc_initiation_urls": ("optional", dict),
    "target_link_uri": ("required", str),
    "scopes": ("optional", list),
    "extensions": ("optional", list),
    "public_jwk": ("optional", dict),
    "public_jwk_url": ("optional", str),
    "custom_fields": ("optional", dict),
    # Newer Canvas: the developer key's redirect URIs (Lti::CreateRegistrationService, else
    # [target_link_uri]); Canvas's ToolConfiguration schema allows further keys.
    "redirect_uris": ("optional", list),
}
ALLOWED_SCOPES = {
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://canvas.instructure.com/lti/public_jwk/scope/update",
}
CANVAS_REGIONS = {
    "us-east-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
}
EXTENSION_FIELDS = {"domain", "tool_id", "platform", "privacy_level", "settings"}
SETTINGS_FIELDS = {
    "custom_fields",
    "icon_url",
    "labels",
    "placements",
    "required_permissions",
    "selection_height",
    "selection_width",
    "text",
}
PLACEMENT_FIELDS = SETTINGS_FIELDS - {"placements"} | {
    "placement",
    "enabled",
    "message_type",
    "target_link_uri",
    "default",
    "windowTarget",
    "use_tray",
}


def check_canvas_json(doc: dict[str, Any]) -> None:
    """Validate against the field table: names, types, required fields, allowed values."""
    for name, value in doc.items():
        assert name in TOP_LEVEL, f"unknown field {name}"
        assert isinstance(value, TOP_LEVEL[name][1]), name
    for name, (need, _) in TOP_LEVEL.items():
        if need == "required":
            assert doc.get(name), f"{name} is required"
    assert "public_jwk" in doc or "public_jwk_url" in doc, "public_jwk or public_jwk_url"
    assert set(doc.get("scopes", [])) <= ALLOWED_SCOPES
    assert set(doc.get("oidc_initiation_urls", {})) <= CANVAS_REGIONS
    for extension in doc.get("extensions", []):
        assert set(extension) <= EXTENSION_FIELDS
        assert extension["privacy_level"] in ("anonymous", "public", "name_only", "email_only")
        settings = extension.get("settings", {})
        assert set(settings) <= SETTINGS_FIELDS
        for placement in settings.get("placements", []):
            assert set(placement) <= PLACEMENT_FIELDS, placement
            assert placement["placement"]
            assert placement.get("message_type", "LtiResourceLinkRequest") in (
                "LtiResourceLinkRequest",
                "LtiDeepLinkingRequest",
            )
            if "default" in placement:
                assert placement["default"] in ("enabled", "disabled")


async def serve(settings: Any) -> tuple[web.AppRunner, str]:
    """The registration service, once it answers ``/readyz`` (its relay has settled in)."""
    runner, url = await serve_app(create_app(settings))
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            async with s.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
    return runner, url


async def test_canvas_json_configuration(infra: Infra) -> None:
    settings = infra.settings(
        allow_insecure_urls=False,
        public_url="https://attune.example.edu",
        region="eu-west-1",
        regions="eu-west-1=https://eu.attune.example.edu,"
        "us-east-1=https://us.attune.example.edu,ap-southeast-2=https://au.attune.example.edu",
    )
    runner, url = await serve(settings)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/lti/config/canvas.json") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("application/json")
            doc = await resp.json()
    finally:
        await runner.cleanup()
    check_canvas_json(doc)
    assert doc["title"] == "Attune"
    assert doc["oidc_initiation_url"] == "https://eu.attune.example.edu/lti/login"
    assert doc["oidc_initiation_urls"] == {
        "eu-west-1": "https://eu.attune.example.edu/lti/login",
        "us-east-1": "https://us.attune.example.edu/lti/login",
        "ap-southeast-2": "https://au.attune.example.edu/lti/login",
    }
    assert doc["target_link_uri"] == "https://attune.example.edu/app"
    # Every region's launch URL: without them newer Canvas defaults the redirect URIs to the
    # target_link_uri (the app) and refuses every launch's auth request.
    assert doc["redirect_uris"] == [
        "https://eu.attune.example.edu/lti/launch",
        "https://us.attune.example.edu/lti/launch",
        "https://au.attune.example.edu/lti/launch",
    ]
    assert doc["public_jwk_url"] == "https://attune.example.edu/.well-known/jwks.json"
    assert "public_jwk" not in doc
    assert doc["scopes"] == [
        "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
    ]
    [extension] = doc["extensions"]
    assert extension["platform"] == "canvas.instructure.com"
    assert extension["privacy_level"] == "name_only"
    assert extension["domain"] == "attune.example.edu"
    placements = {p["placement"]: p["message_type"] for p in extension["settings"]["placements"]}
    assert placements == {
        "course_navigation": "LtiResourceLinkRequest",
        "editor_button": "LtiDeepLinkingRequest",
        "link_selection": "LtiDeepLinkingRequest",
    }
    assert doc["custom_fields"] == {
        "canvas_user_id": "$Canvas.user.id",
        "canvas_course_id": "$Canvas.course.id",
    }


async def test_canvas_json_asks_for_ags_when_enabled(infra: Infra) -> None:
    runner, url = await serve(infra.settings(ags_enabled=True, canvas_privacy_level="anonymous"))
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/lti/config/canvas.json") as resp:
            doc = await resp.json()
    finally:
        await runner.cleanup()
    check_canvas_json(doc)
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in doc["scopes"]
    assert doc["extensions"][0]["privacy_level"] == "anonymous"


# --- manual registration -------------------------------------------------------------------------


@dataclass
class Env:
    stack: LtiStack
    url: str
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    admin: dict[str, str]

    async def post_platform(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        return await self.session.post(
            f"{self.url}/api/admin/platforms", json=body, headers=self.admin
        )


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    stack, exits = await start_stack(infra, pool, ("us-east-1", "eu-west-1"))
    runner, url = await serve(stack.settings["us-east-1"])
    try:
        token = await create_token(pool, f"manual-{secrets.token_hex(4)}")
        async with aiohttp.ClientSession() as session:
            yield Env(stack, url, pool, session, {"Authorization": f"Bearer {token}"})
    finally:
        await outbox_settled(pool)
        await runner.cleanup()
        await exits.aclose()


async def test_moodle_manual_registration_round_trip(env: Env, moodle: FakePlatform) -> None:
    page = await env.session.get(f"{env.url}/admin/register/manual")
    html = await page.text()
    assert page.status == 200
    values = await (await env.session.get(f"{env.url}/lti/config/moodle.json")).json()
    stack = env.stack
    # The values shown are the ones Moodle needs.
    assert values["tool_url"] == f"{stack.url}/app"
    assert values["lti_version"] == "LTI 1.3"
    assert values["public_keyset_url"] == f"{stack.url}/.well-known/jwks.json"
    # A Moodle is served by one region's cell: by default the home region's login and
    # launch URLs (launches in another region are refused: its data stays in its region).
    assert values["initiate_login_url"] == f"{stack.url}/lti/login"
    assert values["redirection_uris"] == [f"{stack.url}/lti/launch"]
    assert values["region"] == "us-east-1"
    for field in values["fields"]:
        assert f'data-field="{field["label"]}">{field["value"]}</code>' in html.replace(
            "&#39;", "'"
        ), field

    # The Moodle admin types them into "Configure a tool manually" ...
    client = moodle.add_client(values["redirection_uris"])
    # ... and gives Moodle's "Tool configuration details" back.
    given = {
        "product": "moodle",
        "issuer": moodle.issuer,
        "client_id": client.client_id,
        "deployment_id": client.deployment_id,
        "jwks_url": moodle.jwks_url,
        "auth_url": moodle.auth_url,
        "token_url": moodle.token_url,
        "name": "Moodle High School",
    }
    resp = await env.post_platform(given)
    body = await resp.json()
    assert resp.status == 201, body
    assert body["created"] is True and body["warnings"] == {}
    row = await env.pool.fetchrow(
        "SELECT * FROM platforms WHERE issuer = $1 AND client_id = $2",
        moodle.issuer,
        client.client_id,
    )
    stored = {
        "product": row["product"],
        "issuer": row["issuer"],
        "client_id": row["client_id"],
        "jwks_url": row["jwks_url"],
        "auth_url": row["auth_url"],
        "token_url": row["token_url"],
        "name": row["name"],
    }
    assert stored == {k: v for k, v in given.items() if k != "deployment_id"}
    assert row["deployment_policy"] == "accept" and row["registration_method"] == "manual"
    assert [
        (r["deployment_id"], r["status"])
        for r in await env.pool.fetch(
            "SELECT deployment_id, status FROM deployments WHERE platform_id = $1", row["id"]
        )
    ] == [(client.deployment_id, "active")]
    [event] = [
        Event.decode(r["value"])
        for r in await env.pool.fetch(
            "SELECT value FROM outbox WHERE topic = 'attune.registration.v1'"
        )
    ]
    assert event.type == "registration.created"
    assert event.data["issuer"] == moodle.issuer and event.data["client_id"] == client.client_id
    assert event.data["deployment_ids"] == [client.deployment_id]
    assert env.admin["Authorization"].split()[1] not in json.dumps(event.to_dict())

    assert row["region"] == "us-east-1"
    async with browser() as b:
        launched = await full_launch(b, stack.url, moodle, client)
        assert launched.status == 303, await launched.text()

    # The same (issuer, client_id) again updates the registration.
    again = await env.post_platform({**given, "name": "Moodle HS"})
    assert again.status == 200 and (await again.json())["created"] is False
    assert (
        await env.pool.fetchval("SELECT count(*) FROM platforms WHERE issuer = $1", moodle.issuer)
        == 1
    )


async def test_moodle_registered_in_another_region_is_served_only_there(
    env: Env, moodle: FakePlatform
) -> None:
    """The region chosen at registration: the values to give Moodle are that region's, its
    login and launch serve the registration, every other region refuses it (its data stays
    where the school chose), and an admin can move it."""
    stack = env.stack
    eu = stack.regions[1]
    page = await env.session.get(f"{env.url}/admin/register/manual?region={eu.name}")
    html = await page.text()
    assert page.status == 200 and f'name="region" value="{eu.name}"' in html
    values = await (
        await env.session.get(f"{env.url}/lti/config/moodle.json?region={eu.name}")
    ).json()
    assert values["initiate_login_url"] == f"{eu.url}/lti/login"
    assert values["redirection_uris"] == [f"{eu.url}/lti/launch"]
    unknown = await env.session.get(
        f"{env.url}/lti/config/moodle.json?region=mars-1", headers={"Accept": "application/json"}
    )
    assert unknown.status == 400 and (await unknown.json())["error"]["code"] == "region_unknown"

    client = moodle.add_client(values["redirection_uris"])
    given = {
        "product": "moodle",
        "issuer": moodle.issuer,
        "client_id": client.client_id,
        "deployment_id": client.deployment_id,
        "jwks_url": moodle.jwks_url,
        "auth_url": moodle.auth_url,
        "region": eu.name,
    }
    bad = await env.post_platform({**given, "region": "mars-1"})
    assert bad.status == 400
    assert "region" in (await bad.json())["error"]["fields"]
    resp = await env.post_platform(given)
    body = await resp.json()
    assert resp.status == 201, body
    platform_id = body["platform"]["id"]
    assert body["platform"]["region"] == eu.name
    json_headers = {"Accept": "application/json"}
    async with browser() as b:
        launched = await full_launch(b, eu.url, moodle, client)
        assert launched.status == 303, await launched.text()
        # The app of the region that launched: its cell alone holds the launch.
        assert launched.headers["Location"].startswith(f"{eu.url}/app/?f=")
        refused = await login(b, stack.url, moodle, client, headers=json_headers)
        assert refused.status == 403
        assert await error_code(refused) == "platform_other_region"
        assert eu.url in (await refused.json())["error"]["hint"]

    # An admin moves it (null: any region); a bad region changes nothing.
    wrong = await env.session.put(
        f"{env.url}/api/admin/platforms/{platform_id}/region",
        json={"region": "mars-1"},
        headers=env.admin,
    )
    assert wrong.status == 400
    moved = await env.session.put(
        f"{env.url}/api/admin/platforms/{platform_id}/region",
        json={"region": None},
        headers=env.admin,
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["platform"]["previous_region"] == eu.name
    assert (
        await env.pool.fetchval("SELECT region FROM platforms WHERE id = $1", platform_id) is None
    )
    audit = await env.pool.fetchval(
        "SELECT details FROM registration_audit WHERE platform_id = $1 "
        "AND action = 'registration.region_changed'",
        platform_id,
    )
    assert json.loads(audit) == {"region": None, "previous_region": eu.name}


async def test_canvas_global_developer_key(env: Env, canvas: FakePlatform) -> None:
    """Canvas: the admin records the developer key's client_id; the issuer is shared and the
    endpoints are Canvas's; deployments are recorded at their first launch (policy accept)."""
    resp = await env.post_platform(
        {"issuer": "https://canvas.instructure.com", "client_id": "10000000000042"}
    )
    body = await resp.json()
    assert resp.status == 201, body
    platform = body["platform"]
    assert platform["product"] == "canvas" and platform["deployment_policy"] == "accept"
    assert platform["auth_url"] == "https://sso.canvaslms.com/api/lti/authorize_redirect"
    assert platform["jwks_url"] == "https://sso.canvaslms.com/api/lti/security/jwks"
    assert platform["token_url"] == "https://sso.canvaslms.com/login/oauth2/token"
    assert platform["deployments"] == []
    assert "jwks_url" in body["warnings"]  # not reachable from the test machine

    # Hosted Canvas's issuer only ever gets Instructure's documented endpoints: an admin's
    # request naming others is refused field by field, and nothing is stored.
    refused = await env.post_platform(
        {
            "issuer": "https://canvas.instructure.com",
            "client_id": "10000000000043",
            "auth_url": "https://school.instructure.com/api/lti/authorize_redirect",
            "jwks_url": "https://evil.example/jwks",
            "token_url": "https://sso.beta.canvaslms.com/login/oauth2/token",
        }
    )
    fields = (await refused.json())["error"]["fields"]
    assert refused.status == 400 and set(fields) == {"auth_url", "jwks_url", "token_url"}
    assert "https://sso.canvaslms.com/api/lti/security/jwks" in fields["jwks_url"]
    refused = await env.post_platform(
        {"issuer": "https://canvas.instructure.com", "client_id": "1001", "product": "generic"}
    )
    assert "product" in (await refused.json())["error"]["fields"]
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM platforms WHERE client_id IN ('10000000000043', '1001')"
        )
        == 0
    )

    # Against a (fake, self-hosted) Canvas reachable here: a first launch of a new deployment
    # is accepted.
    canvas.issuer = canvas.base_url
    client = canvas.add_client(env.stack.redirect_uris())
    resp = await env.post_platform(
        {
            "product": "canvas",
            "issuer": canvas.issuer,
            "client_id": client.client_id,
            "auth_url": canvas.auth_url,
            "jwks_url": canvas.jwks_url,
            "token_url": canvas.token_url,
        }
    )
    assert resp.status in (200, 201), await resp.text()
    async with browser() as b:
        launched = await full_launch(b, env.stack.url, canvas, client)
        assert launched.status == 303, await launched.text()
    platforms = await (
        await env.session.get(f"{env.url}/api/admin/platforms", headers=env.admin)
    ).json()
    [mine] = [p for p in platforms["platforms"] if p["client_id"] == client.client_id]
    assert [(d["deployment_id"], d["status"], d["source"]) for d in mine["deployments"]] == [
        (client.deployment_id, "active", "launch")
    ]


async def test_manual_registration_field_errors(env: Env, moodle: FakePlatform) -> None:
    resp = await env.post_platform(
        {
            "product": "moodle",
            "issuer": "ftp://moodle.example.org?x=1",
            "client_id": "has space",
            "deployment_id": "",
            "jwks_url": "https://moodle.example.org/certs#frag",
            "auth_url": "not a url",
            "token_url": "https://user:pw@moodle.example.org/token",
            "colour": "blue",
        }
    )
    body = await resp.json()
    assert resp.status == 400
    error = body["error"]
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {
        "issuer",
        "client_id",
        "deployment_id",
        "jwks_url",
        "auth_url",
        "token_url",
        "colour",
    }
    assert "Platform ID" in error["fields"]["issuer"]
    assert "fragment" in error["fields"]["jwks_url"]
    assert "user name or password" in error["fields"]["token_url"]

    # A reachable JWKS without a usable RS256 key is refused, against its field.
    moodle.jwks_mode = "empty"
    client = moodle.add_client(env.stack.redirect_uris())
    good = {
        "product": "moodle",
        "issuer": moodle.issuer,
        "client_id": client.client_id,
        "deployment_id": client.deployment_id,
        "jwks_url": moodle.jwks_url,
        "auth_url": moodle.auth_url,
    }
    resp = await env.post_platform(good)
    body = await resp.json()
    assert resp.status == 400
    assert body["error"]["fields"] == {"jwks_url": "Public keyset URL has no usable RS256 key"}
    assert (
        await env.pool.fetchval("SELECT count(*) FROM platforms WHERE issuer = $1", moodle.issuer)
        == 0
    )
    assert await env.pool.fetchval("SELECT count(*) FROM outbox") == 0

    # RSA keys under 2048 bits are not usable keys: a key set of only those is refused, and
    # one next to a 2048-bit key is accepted with a warning (it is never used at launch).
    moodle.jwks_mode = "ok"
    weak = weak_key(1024)
    moodle.keys = [weak]
    resp = await env.post_platform(good)
    body = await resp.json()
    assert resp.status == 400, body
    assert "shorter than 2048 bits" in body["error"]["fields"]["jwks_url"]
    assert await env.pool.fetchval("SELECT count(*) FROM outbox") == 0
    moodle.keys.append(new_key())
    resp = await env.post_platform(good)
    body = await resp.json()
    assert resp.status == 201, body
    assert weak.kid in body["warnings"]["jwks_url"]

    # An unreachable JWKS is only a warning: launches fetch it again.
    good["client_id"] += "-2"
    moodle.jwks_mode = "down"
    resp = await env.post_platform(good)
    body = await resp.json()
    assert resp.status == 201, body
    assert "could not be fetched" in body["warnings"]["jwks_url"]


async def test_manual_registration_https_only_in_production(
    infra: Infra, pool: asyncpg.Pool
) -> None:
    settings = infra.settings(allow_insecure_urls=False, public_url="https://attune.example.edu")
    runner, url = await serve(settings)
    try:
        token = await create_token(pool, "secure-manual")
        async with aiohttp.ClientSession() as s:
            resp = await s.post(
                f"{url}/api/admin/platforms",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "product": "moodle",
                    "issuer": "http://moodle.example.org",
                    "client_id": "abc",
                    "deployment_id": "1",
                    "jwks_url": "https://10.1.2.3/mod/lti/certs.php",
                    "auth_url": "https://moodle.example.org/mod/lti/auth.php",
                },
            )
            body = await resp.json()
    finally:
        await runner.cleanup()
    assert resp.status == 400
    assert body["error"]["fields"] == {
        "issuer": "Platform ID (issuer) must use https",
        "jwks_url": "Public keyset URL points at a private or loopback address",
    }
