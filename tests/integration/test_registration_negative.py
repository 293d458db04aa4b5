"""Every refusal of dynamic registration and of the admin API: a 4xx with a stable code, and
nothing stored — no platform, deployment, audit or outbox row, and the install code unused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from services.registration.app import FORM_PURPOSE, create_app
from services.registration.cli import create_install_code, create_token, revoke_token
from shared.settings import Settings
from shared.signing import TokenSigner, parse_secrets
from tests.conftest import Infra
from tests.fakes.registration_platform import (
    ConnectionCounter,
    RegistrationPlatform,
    form_value,
    open_install_page,
    outbox_settled,
    registration_platform,
    serve_app,
    submit_install,
)

pytestmark = pytest.mark.integration


@dataclass
class Env:
    url: str
    settings: Settings
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    code: str

    def sign(self, payload: dict[str, object]) -> str:
        return TokenSigner(parse_secrets(self.settings.secret_keys), FORM_PURPOSE).sign(payload)


async def _env(infra: Infra, pool: asyncpg.Pool, **overrides: object) -> AsyncIterator[Env]:
    settings = infra.settings(**overrides)
    runner: web.AppRunner | None = None
    try:
        runner, url = await serve_app(create_app(settings))
        code, _ = await create_install_code(pool, label="negative", ttl_s=3600)
        async with aiohttp.ClientSession() as session:
            yield Env(url, settings, pool, session, code)
    finally:
        await outbox_settled(pool)
        if runner is not None:
            await runner.cleanup()


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    """Insecure URLs allowed (the fake platforms are plain http on loopback)."""
    async for e in _env(infra, pool):
        yield e


@pytest.fixture
async def secure(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    """As in production: https only, public addresses only."""
    async for e in _env(
        infra, pool, allow_insecure_urls=False, public_url="https://attune.example.edu"
    ):
        yield e


@pytest.fixture
async def moodle() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("moodle"):
        yield p


@pytest.fixture
async def canvas() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("canvas"):
        yield p


@pytest.fixture
async def listener() -> AsyncIterator[ConnectionCounter]:
    counter = ConnectionCounter()
    await counter.start()
    yield counter
    await counter.stop()


async def assert_refused(resp: aiohttp.ClientResponse, status: int, code: str) -> str:
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


async def assert_nothing_stored(env: Env, platform: RegistrationPlatform | None = None) -> None:
    if platform is not None:
        # Since it started: its issuer is its address, which an earlier test's platform may
        # have had.
        issuer, since = platform.issuer, platform.started_at
        assert not await env.pool.fetchval(
            "SELECT count(*) FROM platforms WHERE issuer = $1 AND created_at >= $2", issuer, since
        )
        assert not await env.pool.fetchval(
            "SELECT count(*) FROM registration_audit WHERE issuer = $1 AND at >= $2", issuer, since
        )
    assert await env.pool.fetchval("SELECT count(*) FROM outbox") == 0
    used = await env.pool.fetchval(
        "SELECT used_at FROM install_codes WHERE code_hash = sha256($1::text::bytea)", env.code
    )
    assert used is None


async def start(env: Env, platform: RegistrationPlatform, **params: str) -> aiohttp.ClientResponse:
    query = {**platform.start_params(), **params}
    return await env.session.get(
        f"{env.url}/lti/register", params=query, headers={"Accept": "application/json"}
    )


# --- the registration token ----------------------------------------------------------------------


async def test_missing_registration_token(env: Env, moodle: RegistrationPlatform) -> None:
    resp = await env.session.get(
        f"{env.url}/lti/register",
        params={"openid_configuration": moodle.openid_configuration_url},
        headers={"Accept": "application/json"},
    )
    await assert_refused(resp, 400, "registration_token_missing")
    assert moodle.config_requests == 0
    await assert_nothing_stored(env, moodle)


async def test_missing_openid_configuration(env: Env) -> None:
    resp = await env.session.get(
        f"{env.url}/lti/register",
        params={"registration_token": "abc"},
        headers={"Accept": "application/json"},
    )
    await assert_refused(resp, 400, "openid_configuration_missing")


@pytest.mark.parametrize("token", ["wrong-token", "has spaces in it"])
async def test_invalid_registration_token(
    env: Env, moodle: RegistrationPlatform, token: str
) -> None:
    resp = await start(env, moodle, registration_token=token)
    await assert_refused(resp, 400, "registration_token_invalid")
    await assert_nothing_stored(env, moodle)


async def test_registration_token_refused_by_platform(
    env: Env, canvas: RegistrationPlatform
) -> None:
    _, page = await open_install_page(env.session, env.url, canvas)
    form = form_value(page)
    # Refused when the configuration is fetched again at POST (never trusted from the form) ...
    canvas.used_tokens.add(canvas.token)
    resp = await submit_install(
        env.session,
        env.url,
        form,
        placements=["course_navigation"],
        credential=("install_code", env.code),
        json_errors=True,
    )
    await assert_refused(resp, 400, "registration_token_invalid")
    assert canvas.registrations == []
    # ... and when the registration endpoint refuses it.
    canvas.used_tokens.clear()
    canvas.reject = (401, "text/plain", "Unauthorized")
    resp = await submit_install(
        env.session,
        env.url,
        form,
        placements=["course_navigation"],
        credential=("install_code", env.code),
        json_errors=True,
    )
    await assert_refused(resp, 400, "registration_token_invalid")
    assert len(canvas.registrations) == 1
    await assert_nothing_stored(env, canvas)


# --- where the configuration lives ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ("http://127.0.0.1:{port}/config", "openid_configuration_url_invalid"),
        ("https://127.0.0.1:{port}/config", "openid_configuration_private_address"),
        ("https://10.0.0.1/config", "openid_configuration_private_address"),
        ("https://169.254.169.254/latest/meta-data", "openid_configuration_private_address"),
        ("https://[::1]:{port}/config", "openid_configuration_private_address"),
        ("https://localhost:{port}/config", "openid_configuration_private_address"),
        ("ftp://lms.example.org/config", "openid_configuration_url_invalid"),
        ("not a url", "openid_configuration_url_invalid"),
    ],
)
async def test_private_or_insecure_configuration_url(
    secure: Env, listener: ConnectionCounter, template: str, code: str
) -> None:
    url = template.format(port=listener.port)
    resp = await secure.session.get(
        f"{secure.url}/lti/register",
        params={"openid_configuration": url, "registration_token": "tok"},
        headers={"Accept": "application/json"},
    )
    await assert_refused(resp, 400, code)
    assert listener.connections == 0
    await assert_nothing_stored(secure)


async def test_hidden_url_is_revalidated_on_post(secure: Env, listener: ConnectionCounter) -> None:
    """A validly signed form naming a private address is still refused at POST."""
    form = secure.sign(
        {
            "oc": f"https://localhost:{listener.port}/config",
            "rt": "tok",
            "exp": int(time.time()) + 60,
        }
    )
    resp = await submit_install(
        secure.session,
        secure.url,
        form,
        placements=[],
        credential=("install_code", secure.code),
        json_errors=True,
    )
    await assert_refused(resp, 400, "openid_configuration_private_address")
    assert listener.connections == 0
    await assert_nothing_stored(secure)


async def test_issuer_on_another_site(env: Env, moodle: RegistrationPlatform) -> None:
    moodle.config_mode = "foreign_issuer"
    await assert_refused(await start(env, moodle), 400, "openid_configuration_issuer_mismatch")
    await assert_nothing_stored(env, moodle)


async def test_oversized_configuration(env: Env, canvas: RegistrationPlatform) -> None:
    canvas.config_mode = "huge"
    await assert_refused(await start(env, canvas), 400, "openid_configuration_too_large")
    await assert_nothing_stored(env, canvas)


@pytest.mark.parametrize("mode", ["not_json", "not_object", "no_registration_endpoint"])
async def test_malformed_configuration(env: Env, moodle: RegistrationPlatform, mode: str) -> None:
    moodle.config_mode = mode  # type: ignore[assignment]
    message = await assert_refused(await start(env, moodle), 400, "openid_configuration_malformed")
    if mode == "no_registration_endpoint":
        assert "registration_endpoint" in message
    await assert_nothing_stored(env, moodle)


# --- the platform says no ------------------------------------------------------------------------


async def test_moodle_rejects_registration(env: Env, moodle: RegistrationPlatform) -> None:
    moodle.reject = (400, "text/plain", "missing required attribute client_name")
    _, page = await open_install_page(env.session, env.url, moodle)
    form = form_value(page)
    resp = await submit_install(
        env.session,
        env.url,
        form,
        placements=["deep_linking"],
        credential=("install_code", env.code),
        json_errors=True,
    )
    message = await assert_refused(resp, 400, "registration_rejected")
    assert "HTTP 400: missing required attribute client_name" in message
    await assert_nothing_stored(env, moodle)
    assert len(moodle.registrations) == 1


async def test_canvas_rejection_shown_to_admin_sanitised(
    env: Env, canvas: RegistrationPlatform
) -> None:
    canvas.reject = (
        422,
        "application/json",
        '{"errors": ["<script>alert(1)</script> scope is invalid\\u0000\\n", '
        + '"'
        + "x" * 2000
        + '"]}',
    )
    _, page = await open_install_page(env.session, env.url, canvas)
    resp = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=["course_navigation"],
        credential=("install_code", env.code),
    )
    html = await resp.text()
    assert resp.status == 400
    assert "registration_rejected" in html
    assert "scope is invalid" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x" * 400 not in html  # bounded
    assert "\x00" not in html
    await assert_nothing_stored(env, canvas)


async def test_unknown_placement(env: Env, canvas: RegistrationPlatform) -> None:
    _, page = await open_install_page(env.session, env.url, canvas)
    resp = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=["global_navigation"],
        credential=("install_code", env.code),
        json_errors=True,
    )
    await assert_refused(resp, 400, "placements_invalid")
    assert canvas.registrations == []
    await assert_nothing_stored(env, canvas)


# --- the signed form -----------------------------------------------------------------------------


async def test_tampered_and_expired_form(env: Env, moodle: RegistrationPlatform) -> None:
    _, page = await open_install_page(env.session, env.url, moodle)
    form = form_value(page)
    body, _, mac = form.partition(".")
    forged = env.sign({"oc": moodle.openid_configuration_url, "rt": moodle.token, "exp": 1})
    for value, code in (
        (body[:-2] + "AA." + mac, "registration_form_invalid"),
        ("", "registration_form_invalid"),
        (forged, "registration_form_expired"),
    ):
        resp = await submit_install(
            env.session,
            env.url,
            value,
            placements=[],
            credential=("install_code", env.code),
            json_errors=True,
        )
        await assert_refused(resp, 400, code)
    assert moodle.registrations == []
    await assert_nothing_stored(env, moodle)


# --- install codes -------------------------------------------------------------------------------


async def test_replayed_install_code(env: Env, moodle: RegistrationPlatform) -> None:
    _, page = await open_install_page(env.session, env.url, moodle)
    first = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=[],
        credential=("install_code", env.code),
    )
    assert first.status == 200, await first.text()
    platforms = await env.pool.fetchval("SELECT count(*) FROM platforms")
    outbox = await env.pool.fetchval("SELECT count(*) FROM outbox")

    moodle.new_token()
    _, page = await open_install_page(env.session, env.url, moodle)
    replay = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=[],
        credential=("install_code", env.code),
        json_errors=True,
    )
    await assert_refused(replay, 403, "install_code_used")
    assert len(moodle.registrations) == 1  # the platform was never asked a second time
    assert await env.pool.fetchval("SELECT count(*) FROM platforms") == platforms
    assert await env.pool.fetchval("SELECT count(*) FROM outbox") == outbox


@pytest.mark.parametrize(
    ("credential", "status", "code"),
    [
        (None, 401, "install_code_missing"),
        (("install_code", "attune_ic_notarealcodeatall00"), 403, "install_code_invalid"),
        (("install_code", "short"), 403, "install_code_invalid"),
        (("install_code", "EXPIRED"), 403, "install_code_expired"),
    ],
)
async def test_bad_install_codes(
    env: Env,
    moodle: RegistrationPlatform,
    credential: tuple[str, str] | None,
    status: int,
    code: str,
) -> None:
    if credential == ("install_code", "EXPIRED"):
        expired, _ = await create_install_code(env.pool, label="old", ttl_s=300)
        await env.pool.execute(
            "UPDATE install_codes SET expires_at = now() - interval '1 second' WHERE label = 'old'"
        )
        credential = ("install_code", expired)
    _, page = await open_install_page(env.session, env.url, moodle)
    resp = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=[],
        credential=credential,
        json_errors=True,
    )
    await assert_refused(resp, status, code)
    assert moodle.registrations == []
    await assert_nothing_stored(env, moodle)


# --- the admin API -------------------------------------------------------------------------------

ADMIN_CALLS = [
    ("GET", "/api/admin/me", None),
    ("GET", "/api/admin/platforms", None),
    ("POST", "/api/admin/platforms", {"issuer": "https://moodle.example.org", "client_id": "c"}),
    ("GET", "/api/admin/platforms/1", None),
    ("DELETE", "/api/admin/platforms/1", None),
    ("POST", "/api/admin/platforms/1/deployments/approve", {"deployment_id": "1"}),
    ("POST", "/api/admin/platforms/1/deployments/disable", {"deployment_id": "1"}),
    ("GET", "/api/admin/audit", None),
    ("GET", "/api/admin/install-codes", None),
    ("POST", "/api/admin/install-codes", {}),
    ("GET", "/api/admin/tokens", None),
]


async def test_admin_api_refuses_missing_invalid_and_revoked_tokens(env: Env) -> None:
    revoked = await create_token(env.pool, "leaver")
    await revoke_token(env.pool, "leaver")
    codes_before = await env.pool.fetchval("SELECT count(*) FROM install_codes")
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "admin_token_missing"),
        ({"Authorization": "Bearer"}, "admin_token_missing"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "admin_token_missing"),
        ({"Authorization": "Bearer attune_at_" + "A" * 43}, "admin_token_invalid"),
        ({"Authorization": "Bearer ../../etc"}, "admin_token_invalid"),
        ({"Authorization": f"Bearer {revoked}"}, "admin_token_revoked"),
    ]
    for method, path, body in ADMIN_CALLS:
        for headers, code in cases:
            resp = await env.session.request(method, f"{env.url}{path}", headers=headers, json=body)
            await assert_refused(resp, 401, code)
    assert await env.pool.fetchval("SELECT count(*) FROM install_codes") == codes_before
    assert not await env.pool.fetchval(
        "SELECT count(*) FROM platforms WHERE issuer = 'https://moodle.example.org'"
    )
    await assert_nothing_stored(env)
