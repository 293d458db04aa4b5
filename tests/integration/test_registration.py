"""Dynamic registration end to end: fake Moodle and fake Canvas register Attune through the real
registration service, then the STORED registration is launched through the real gateway,
login and launch services (no row inserted by the test)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from services.registration.cli import create_install_code, create_token, revoke_token
from shared.events.envelope import Event
from tests.conftest import Infra
from tests.fakes.registration_platform import (
    CANVAS_PLACEMENTS,
    CANVAS_PRIVACY,
    CANVAS_TOOL_ID,
    NRPS,
    TOOL_CONFIG,
    RegistrationPlatform,
    form_value,
    install,
    open_install_page,
    registration_platform,
    submit_install,
)
from tests.lti_support import (
    RegistrationEnv,
    browser,
    error_code,
    full_launch,
    login,
    registration_env,
)

JSON = {"Accept": "application/json"}

pytestmark = pytest.mark.integration

RL, DL = "LtiResourceLinkRequest", "LtiDeepLinkingRequest"
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"


Env = RegistrationEnv
REGIONS = ("us-east-1", "eu-west-1")


async def _env(infra: Infra, pool: asyncpg.Pool, **update: object) -> AsyncIterator[Env]:
    async for e in registration_env(infra, pool, REGIONS, **update):
        yield e


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    async for e in _env(infra, pool, ags_enabled=True):
        yield e


@pytest.fixture
async def moodle() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("moodle"):
        yield p


@pytest.fixture
async def canvas() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("canvas"):
        yield p


def assert_no_inline_script(page: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script found"
    assert not re.search(r"\son[a-z]+=", page), "inline event handler found"


def script_src(csp: str) -> str:
    directives = {d.split()[0]: d for d in (p.strip() for p in csp.split(";")) if d}
    return directives.get("script-src", directives["default-src"])


async def registration_events(pool: asyncpg.Pool) -> list[Event]:
    rows = await pool.fetch(
        "SELECT value FROM outbox WHERE topic = 'attune.registration.v1' ORDER BY seq"
    )
    return [Event.decode(r["value"]) for r in rows]


async def register(
    env: Env,
    platform: RegistrationPlatform,
    placements: list[str],
    *,
    code: str | None = None,
) -> tuple[aiohttp.ClientResponse, str]:
    code = code or (await create_install_code(env.pool, label="test", ttl_s=3600))[0]
    return await install(
        env.session, env.url, platform, placements=placements, credential=("install_code", code)
    )


async def test_moodle_dynamic_registration_then_launch(
    env: Env, moodle: RegistrationPlatform
) -> None:
    code, _ = await create_install_code(env.pool, label="Moodle HS", ttl_s=3600)
    resp, page = await open_install_page(env.session, env.url, moodle)
    assert resp.status == 200, page
    assert moodle.config_authorizations == [f"Bearer {moodle.token}"]
    csp = resp.headers["Content-Security-Policy"]
    assert "form-action 'self'" in csp and "'unsafe-inline'" not in script_src(csp)
    # The page lives in Moodle's iframe: framed by the Moodle site that opened it, nobody else.
    moodle_origin = moodle.base_url
    assert csp.endswith(f"frame-ancestors 'self' {moodle_origin}"), csp
    assert 'value="activity_chooser"' in page and 'value="deep_linking"' in page
    assert 'name="install_code"' in page
    assert moodle.token not in page.replace(form_value(page), "")  # only inside the signed value
    assert_no_inline_script(page)

    done = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=["activity_chooser", "deep_linking"],
        credential=("install_code", code),
    )
    body = await done.text()
    assert done.status == 200, body
    assert_no_inline_script(body)
    assert '<script src="/lti/register/static/close.js"></script>' in body
    assert "'unsafe-inline'" not in script_src(done.headers["Content-Security-Policy"])
    assert "script-src 'self'" in done.headers["Content-Security-Policy"]
    assert done.headers["Content-Security-Policy"].endswith(
        f"frame-ancestors 'self' {moodle_origin}"
    )
    close_js = await env.session.get(f"{env.url}/lti/register/static/close.js")
    script = await close_js.text()
    assert close_js.status == 200 and "javascript" in close_js.headers["Content-Type"]
    assert "window.parent" in script and "org.imsglobal.lti.close" in script

    # What Moodle received: its required fields, its domain rule, and the login and launch
    # URLs of the region it was registered in (the home region: none was chosen).
    sent = moodle.registrations[-1]
    assert moodle.registration_authorizations[-1] == f"Bearer {moodle.token}"
    stack = env.stack
    assert sent["application_type"] == "web"
    assert sent["response_types"] == ["id_token"]
    assert set(sent["grant_types"]) == {"implicit", "client_credentials"}
    assert sent["initiate_login_uri"] == f"{stack.url}/lti/login"
    assert sent["redirect_uris"] == [f"{stack.url}/lti/launch"]
    assert len(stack.regions) == 2
    assert sent["client_name"] == "Attune"
    assert sent["jwks_uri"] == f"{stack.url}/.well-known/jwks.json"
    assert sent["token_endpoint_auth_method"] == "private_key_jwt"
    assert NRPS in sent["scope"].split() and AGS_SCORE in sent["scope"].split()
    tool = sent[TOOL_CONFIG]
    assert tool["domain"] == urlsplit(stack.url).netloc
    assert tool["target_link_uri"] == f"{stack.url}/app"
    assert [m["type"] for m in tool["messages"]] == [RL, DL]
    assert tool["messages"][1]["placements"] == ["ContentArea"]
    assert "name" in tool["claims"]
    assert CANVAS_PRIVACY not in tool and CANVAS_PLACEMENTS not in tool["messages"][0]

    client = moodle.client
    row = await env.pool.fetchrow("SELECT * FROM platforms WHERE issuer = $1", moodle.issuer)
    assert row["client_id"] == client.client_id
    assert (row["product"], row["deployment_policy"]) == ("moodle", "accept")
    assert row["registration_method"] == "dynamic"
    assert row["auth_url"] == moodle.lms.auth_url and row["jwks_url"] == moodle.lms.jwks_url
    assert row["token_url"] == moodle.lms.token_url
    assert row["frame_origins"] == [moodle.base_url]  # the site that opened the registration
    assert row["region"] == stack.regions[0].name  # its data lives in the home region
    assert json.loads(row["requested"])["scopes"] == sorted(sent["scope"].split())
    assert NRPS in json.loads(row["granted"])["scopes"]
    deployments = await env.pool.fetch(
        "SELECT deployment_id, status FROM deployments WHERE platform_id = $1", row["id"]
    )
    assert [(d["deployment_id"], d["status"]) for d in deployments] == [
        (client.deployment_id, "active")
    ]
    used = await env.pool.fetchrow(
        "SELECT used_at, platform_id FROM install_codes WHERE label = 'Moodle HS'"
    )
    assert used["used_at"] is not None and used["platform_id"] == row["id"]
    audit = await env.pool.fetchrow(
        "SELECT actor, action FROM registration_audit WHERE platform_id = $1", row["id"]
    )
    assert (audit["actor"], audit["action"]) == ("install-code", "registration.created")
    [event] = await registration_events(env.pool)
    assert event.type == "registration.created"
    assert event.data["issuer"] == moodle.issuer
    assert event.data["client_id"] == client.client_id
    assert event.data["platform_id"] == row["id"]
    assert event.data["deployment_ids"] == [client.deployment_id]
    raw = json.dumps(event.to_dict())
    assert moodle.token not in raw and code not in raw

    # The stored registration launches in its region, and only there.
    async with browser() as b:
        resp = await full_launch(b, stack.url, moodle.lms, client)
        assert resp.status == 303, await resp.text()
        assert resp.headers["Location"].startswith(f"{stack.url}/app/?f=")
        other = stack.regions[1].url
        refused = await login(b, other, moodle.lms, client, headers=JSON)
        assert refused.status == 403
        assert await error_code(refused) == "platform_other_region"


async def test_moodle_dynamic_registration_in_the_region_chosen(
    env: Env, moodle: RegistrationPlatform
) -> None:
    """The install page asks where the Moodle's data is kept; the registration sent to Moodle
    and stored names that region's cell, which alone serves it."""
    code, _ = await create_install_code(env.pool, label="EU school", ttl_s=3600)
    resp, page = await open_install_page(env.session, env.url, moodle)
    assert resp.status == 200, page
    home, eu = env.stack.regions
    assert f'name="region" value="{home.name}" aria-describedby="region-help" checked' in page
    assert f'name="region" value="{eu.name}" aria-describedby="region-help">' in page
    fields = [("form", form_value(page)), ("placement", "activity_chooser")]
    wrong = await env.session.post(
        f"{env.url}/lti/register",
        data=[*fields, ("install_code", code), ("region", "mars-1")],
        headers=JSON,
    )
    assert wrong.status == 400 and (await wrong.json())["error"]["code"] == "region_unknown"
    done = await env.session.post(
        f"{env.url}/lti/register", data=[*fields, ("install_code", code), ("region", eu.name)]
    )
    assert done.status == 200, await done.text()
    sent = moodle.registrations[-1]
    assert sent["initiate_login_uri"] == f"{eu.url}/lti/login"
    assert sent["redirect_uris"] == [f"{eu.url}/lti/launch"]
    region = await env.pool.fetchval(
        "SELECT region FROM platforms WHERE issuer = $1", moodle.issuer
    )
    assert region == eu.name
    async with browser() as b:
        launched = await full_launch(b, eu.url, moodle.lms, moodle.client)
        assert launched.status == 303, await launched.text()
        refused = await login(b, home.url, moodle.lms, moodle.client, headers=JSON)
        assert await error_code(refused) == "platform_other_region"

    # Moodle's "Update" with a re-registration code, the page's choice left as it opens (the
    # home region): the registration keeps its region, and Moodle keeps signing in there.
    platform_id, client_id = await env.pool.fetchrow(
        "SELECT id, client_id FROM platforms WHERE issuer = $1", moodle.issuer
    )
    update_code, _ = await create_install_code(
        env.pool, label="update", ttl_s=3600, for_platform_id=platform_id
    )
    moodle.fixed_client_id = client_id
    moodle.new_token()
    resp, page = await open_install_page(env.session, env.url, moodle)
    assert resp.status == 200, page
    again = await env.session.post(
        f"{env.url}/lti/register",
        data=[
            ("form", form_value(page)),
            ("placement", "activity_chooser"),
            ("install_code", update_code),
            ("region", home.name),
        ],
    )
    assert again.status == 200, await again.text()
    assert moodle.registrations[-1]["initiate_login_uri"] == f"{eu.url}/lti/login"
    assert await env.pool.fetchval("SELECT region FROM platforms WHERE id = $1", platform_id) == (
        eu.name
    )


async def test_canvas_dynamic_registration_then_launch_new_deployment(
    env: Env, canvas: RegistrationPlatform
) -> None:
    # The Canvas admin trims the registration in Canvas's own review screen.
    canvas.admin_edits = {
        "drop_scopes": [AGS_SCORE],
        "drop_placements": ["link_selection"],
        "privacy_level": "anonymous",
    }
    resp, page = await open_install_page(env.session, env.url, canvas)
    assert resp.status == 200, page
    assert "Test University" in page
    for placement in ("course_navigation", "editor_button", "link_selection"):
        assert f'value="{placement}"' in page
    assert 'name="region"' not in page  # Canvas sends each school to its own region
    done, body = await register(
        env, canvas, ["course_navigation", "editor_button", "link_selection"]
    )
    assert done.status == 200, body

    sent = canvas.registrations[-1]
    tool = sent[TOOL_CONFIG]
    messages = {m["type"]: m for m in tool["messages"]}
    assert messages[RL][CANVAS_PLACEMENTS] == ["course_navigation"]
    assert messages[DL][CANVAS_PLACEMENTS] == ["editor_button", "link_selection"]
    assert tool[CANVAS_PRIVACY] == "name_only"
    assert tool[CANVAS_TOOL_ID] == "attune"
    assert tool["custom_parameters"]["canvas_user_id"] == "$Canvas.user.id"
    assert sent["redirect_uris"] == env.stack.redirect_uris()

    # What was not granted is shown to the admin and kept.
    assert "did not grant" in body and "Module item / link selection" in body
    assert "Privacy level: Anonymous instead of Name only" in body
    assert "sending grade scores" in body
    assert "none yet" in body  # Canvas named no deployment
    row = await env.pool.fetchrow("SELECT * FROM platforms WHERE issuer = $1", canvas.issuer)
    assert (row["product"], row["deployment_policy"], row["name"]) == (
        "canvas",
        "accept",
        "Test University",
    )
    assert json.loads(row["granted"])["privacy_level"] == "anonymous"
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM deployments WHERE platform_id = $1", row["id"]
        )
        == 0
    )
    [event] = await registration_events(env.pool)
    assert event.type == "registration.created" and event.data["deployment_ids"] == []

    token = await create_token(env.pool, "canvas-reviewer")
    api = await env.session.get(
        f"{env.url}/api/admin/platforms/{row['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert api.status == 200
    platform = (await api.json())["platform"]
    assert platform["not_granted"] == {
        "scopes_missing": [AGS_SCORE],
        "placements_missing": ["link_selection"],
        "privacy_level": {"requested": "name_only", "granted": "anonymous"},
    }
    assert platform["not_granted_summary"] == [  # what the admin page shows
        "Not granted: sending grade scores (Assignment and Grade Services)",
        "Not shown in: Module item / link selection (add a check-in to a module)",
        "Privacy level: Anonymous instead of Name only",
    ]

    # Global developer key: the first launch of a deployment records it (policy accept).
    async with browser() as b:
        resp = await full_launch(b, env.stack.url, canvas.lms, canvas.client)
        assert resp.status == 303, await resp.text()
    seen = await env.pool.fetchrow(
        "SELECT policy FROM deployment_sightings WHERE platform_id = $1 AND deployment_id = $2",
        row["id"],
        canvas.client.deployment_id,
    )
    assert seen is not None and seen["policy"] == "accept"


async def test_reregistration_updates_instead_of_duplicating(
    env: Env, moodle: RegistrationPlatform
) -> None:
    """Moodle's "Update" re-registers the same client_id, with a re-registration code the
    admin issued for that platform."""
    moodle.fixed_client_id = "moodle-client-1"
    first, body = await register(env, moodle, ["deep_linking"])
    assert first.status == 200, body
    first_deployment = moodle.client.deployment_id
    platform_id = await env.pool.fetchval(
        "SELECT id FROM platforms WHERE issuer = $1", moodle.issuer
    )
    moodle.new_token()  # Moodle issues a new registration token for the new attempt
    code, _ = await create_install_code(
        env.pool, label="update", ttl_s=3600, for_platform_id=platform_id
    )
    second, body = await register(env, moodle, [], code=code)
    assert second.status == 200, body
    assert "registration with Moodle is updated" in body
    rows = await env.pool.fetch("SELECT id FROM platforms WHERE issuer = $1", moodle.issuer)
    assert len(rows) == 1
    ids = await env.pool.fetch(
        "SELECT deployment_id FROM deployments WHERE platform_id = $1 ORDER BY created_at",
        rows[0]["id"],
    )
    assert [r["deployment_id"] for r in ids] == [first_deployment, moodle.client.deployment_id]
    events = await registration_events(env.pool)
    assert [e.type for e in events] == ["registration.created", "registration.updated"]
    assert events[1].data["deployment_ids"] == [first_deployment, moodle.client.deployment_id]
    # Without deep linking chosen, only the resource link message was asked for.
    assert [m["type"] for m in moodle.registrations[-1][TOOL_CONFIG]["messages"]] == [RL]
    async with browser() as b:
        resp = await full_launch(b, env.stack.url, moodle.lms, moodle.client)
        assert resp.status == 303, await resp.text()


async def test_registration_guarded_by_admin_token(
    infra: Infra, pool: asyncpg.Pool, moodle: RegistrationPlatform
) -> None:
    async for env in _env(infra, pool, registration_auth="admin_token"):
        token = await create_token(env.pool, "installer")
        old = await create_token(env.pool, "departed")
        await revoke_token(env.pool, "departed")
        resp, page = await open_install_page(env.session, env.url, moodle)
        assert resp.status == 200 and 'name="admin_token"' in page
        form = form_value(page)
        refused = await submit_install(
            env.session,
            env.url,
            form,
            placements=[],
            credential=("admin_token", old),
            json_errors=True,
        )
        assert refused.status == 401
        assert (await refused.json())["error"]["code"] == "admin_token_revoked"
        assert moodle.registrations == []
        done = await submit_install(
            env.session, env.url, form, placements=[], credential=("admin_token", token)
        )
        assert done.status == 200, await done.text()
        actor = await env.pool.fetchval(
            "SELECT actor FROM registration_audit WHERE issuer = $1", moodle.issuer
        )
        assert actor == "admin:installer"
