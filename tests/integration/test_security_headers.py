"""Security headers on every route of every service, enumerated from the apps' own routers.

``ROUTES`` classifies each (service, method, path) the routers declare; a route added without
being classified here fails ``test_every_route_is_classified``, and every HTML page of the table
must be reached by a real flow in ``test_every_html_response_has_the_headers`` (login and launch
Platform Storage pages, the app page, the deep-linking return page, the dynamic-registration
install and done pages, the admin pages) — plus a bare request to every route, so error pages
are checked too. Rules for each HTML response: a CSP whose script-src has no 'unsafe-inline'
(nor 'unsafe-eval'), ``X-Content-Type-Options: nosniff``, a frame-ancestors directive (the
registered platform's origin on pages the LMS frames, 'none' on pages nobody frames), and HSTS
exactly when the request came over TLS (here: through a trusted proxy saying https).
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from devstack.embedded import free_port
from services.checkins.app import create_app as checkins_app
from services.jwks.app import create_app as jwks_app
from services.launch.app import create_app as launch_app
from services.login.app import create_app as login_app
from services.registration.app import create_app as registration_app
from services.registration.cli import create_install_code, create_token
from services.registration.queries import PlatformRecord, set_frame_origins, upsert_platform
from shared.settings import Settings
from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform, parse_autopost
from tests.fakes.registration_platform import (
    RegistrationPlatform,
    form_value,
    outbox_settled,
    registration_platform,
)
from tests.integration.test_checkins import INSTRUCTOR
from tests.lti_support import Browser, LtiStack, _serve

pytestmark = pytest.mark.integration

FACTORIES: dict[str, Callable[[Settings], web.Application]] = {
    "jwks": jwks_app,  # first: the tool key the deep-linking page signs with
    "login": login_app,
    "launch": launch_app,
    "checkins": checkins_app,
    "registration": registration_app,
}

PAGE = "html page"  # a page the test reaches by a real flow and checks
JSON = "json"  # API / documents: never HTML except as an error page
TEXT = "text"  # /metrics
REDIRECT = "redirect"
STATIC = "static"  # files: no HTML (or SVG) among them; nosniff

BASE = {("GET", "/healthz"): JSON, ("GET", "/readyz"): JSON, ("GET", "/metrics"): TEXT}
ROUTES: dict[tuple[str, str, str], str] = {
    **{("login", m, p): k for (m, p), k in BASE.items()},
    ("login", "GET", "/lti/login"): PAGE,
    ("login", "POST", "/lti/login"): PAGE,
    ("login", "GET", "/lti/login/assets"): STATIC,
    **{("launch", m, p): k for (m, p), k in BASE.items()},
    ("launch", "POST", "/lti/launch"): PAGE,
    ("launch", "GET", "/lti/launch/assets"): STATIC,
    **{("checkins", m, p): k for (m, p), k in BASE.items()},
    ("checkins", "GET", "/app/"): PAGE,
    ("checkins", "POST", "/app/deep-link"): PAGE,
    ("checkins", "GET", "/api/checkins/me"): JSON,
    ("checkins", "GET", "/api/checkins/checkins"): JSON,
    ("checkins", "POST", "/api/checkins/checkins"): JSON,
    ("checkins", "GET", "/api/checkins/checkins/{checkin_id}"): JSON,
    ("checkins", "PATCH", "/api/checkins/checkins/{checkin_id}"): JSON,
    ("checkins", "DELETE", "/api/checkins/checkins/{checkin_id}"): JSON,
    ("checkins", "POST", "/api/checkins/checkins/{checkin_id}/close"): JSON,
    ("checkins", "PUT", "/api/checkins/checkins/{checkin_id}/response"): JSON,
    ("checkins", "GET", "/api/checkins/history"): JSON,
    ("checkins", "GET", "/api/checkins/insights"): JSON,
    ("checkins", "GET", "/api/checkins/students"): JSON,
    ("checkins", "GET", "/api/checkins/export"): JSON,
    ("checkins", "GET", "/api/checkins/history/export"): JSON,
    ("checkins", "GET", "/static"): STATIC,
    **{("registration", m, p): k for (m, p), k in BASE.items()},
    ("registration", "GET", "/lti/register"): PAGE,
    ("registration", "POST", "/lti/register"): PAGE,
    ("registration", "GET", "/lti/config/canvas.json"): JSON,
    ("registration", "GET", "/lti/config/moodle.json"): JSON,
    ("registration", "GET", "/api/admin/me"): JSON,
    ("registration", "GET", "/api/admin/platforms"): JSON,
    ("registration", "POST", "/api/admin/platforms"): JSON,
    ("registration", "GET", "/api/admin/platforms/{platform_id}"): JSON,
    ("registration", "DELETE", "/api/admin/platforms/{platform_id}"): JSON,
    ("registration", "POST", "/api/admin/platforms/{platform_id}/deployments/approve"): JSON,
    ("registration", "POST", "/api/admin/platforms/{platform_id}/deployments/disable"): JSON,
    ("registration", "PUT", "/api/admin/platforms/{platform_id}/frame-origins"): JSON,
    ("registration", "PUT", "/api/admin/platforms/{platform_id}/region"): JSON,
    ("registration", "GET", "/api/admin/audit"): JSON,
    ("registration", "GET", "/api/admin/install-codes"): JSON,
    ("registration", "POST", "/api/admin/install-codes"): JSON,
    ("registration", "GET", "/api/admin/tokens"): JSON,
    ("registration", "GET", "/admin"): REDIRECT,
    ("registration", "GET", "/admin/"): PAGE,
    ("registration", "GET", "/admin/register/manual"): PAGE,
    ("registration", "GET", "/lti/register/static"): STATIC,
    ("registration", "GET", "/admin/static"): STATIC,
    **{("jwks", m, p): k for (m, p), k in BASE.items()},
    ("jwks", "GET", "/.well-known/jwks.json"): JSON,
}


def declared_routes(apps: dict[str, web.Application]) -> dict[tuple[str, str, str], Any]:
    found: dict[tuple[str, str, str], Any] = {}
    for service, app in apps.items():
        for route in app.router.routes():
            if route.method == "HEAD":  # aiohttp's automatic twin of a GET
                continue
            assert route.resource is not None
            found[(service, route.method, route.resource.canonical)] = route.resource
    return found


def directives(csp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            assert words[0] not in out, f"directive {words[0]} twice in {csp!r}"
            out[words[0]] = words[1:]
    return out


@dataclass
class Walk:
    tls: bool
    urls: dict[str, str]
    apps: dict[str, web.Application]
    pool: asyncpg.Pool
    public: str
    browser: Browser
    checked: list[str] = field(default_factory=list)
    pages: set[tuple[str, str, str]] = field(default_factory=set)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # What the ingress adds: the original scheme. Trusted only with ATTUNE_TRUSTED_PROXY_HOPS.
        return {"X-Forwarded-Proto": "https" if self.tls else "http", **(extra or {})}

    async def call(
        self, service: str, method: str, path: str, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        headers = self.headers(kwargs.pop("headers", None))
        return await self.browser.request(
            method, self.urls[service] + path, headers=headers, **kwargs
        )

    def check(
        self, what: str, resp: aiohttp.ClientResponse, *, frame_ancestors: list[str] | None = None
    ) -> None:
        """The rules for every response; ``frame_ancestors``: the exact sources expected."""
        headers = resp.headers
        self.checked.append(what)
        assert headers.get("X-Content-Type-Options") == "nosniff", what
        if self.tls:
            assert headers.get("Strict-Transport-Security", "").startswith("max-age="), what
        else:
            assert "Strict-Transport-Security" not in headers, what
        if not headers.get("Content-Type", "").startswith("text/html"):
            assert frame_ancestors is None, f"{what}: expected an HTML page, got {resp.status}"
            return
        csp = headers.get("Content-Security-Policy")
        assert csp, f"{what}: HTML without a CSP"
        d = directives(csp)
        scripts = d.get("script-src", d.get("default-src"))
        assert scripts is not None, f"{what}: {csp}"
        assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, what
        assert "*" not in scripts and "data:" not in scripts, what
        assert "frame-ancestors" in d, f"{what}: no frame-ancestors in {csp!r}"
        if frame_ancestors is not None:
            assert d["frame-ancestors"] == frame_ancestors, f"{what}: {csp!r}"

    def page(self, key: tuple[str, str, str]) -> None:
        assert ROUTES[key] == PAGE
        self.pages.add(key)


@pytest.fixture(params=[False, True], ids=["plain-http", "behind-tls"])
async def walk(
    infra: Infra, pool: asyncpg.Pool, request: pytest.FixtureRequest
) -> AsyncIterator[Walk]:
    async for w in _walk(infra, pool, tls=request.param):
        yield w


@pytest.fixture
async def services(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Walk]:
    async for w in _walk(infra, pool, tls=False):
        yield w


async def _walk(infra: Infra, pool: asyncpg.Pool, *, tls: bool) -> AsyncIterator[Walk]:
    await pool.execute("TRUNCATE tool_keys")
    public = f"http://127.0.0.1:{free_port()}"  # the ingress's origin (not contacted here)
    settings = infra.settings(public_url=public, trusted_proxy_hops=1 if tls else 0)
    runners: list[web.AppRunner] = []
    apps: dict[str, web.Application] = {}
    urls: dict[str, str] = {}
    try:
        for name, factory in FACTORIES.items():
            apps[name] = factory(settings)
            runner, urls[name] = await _serve(apps[name])
            runners.append(runner)
        async with Browser() as b:
            yield Walk(tls, urls, apps, pool, public, b)
    finally:
        await outbox_settled(pool)
        for runner in reversed(runners):
            await runner.cleanup()


@pytest.fixture
async def moodle() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("moodle"):
        yield p


def test_every_route_is_classified(infra: Infra) -> None:
    apps = {name: factory(infra.settings()) for name, factory in FACTORIES.items()}
    declared = declared_routes(apps)
    unclassified = sorted(set(declared) - set(ROUTES))
    assert not unclassified, (
        "classify these routes in ROUTES (and, for HTML pages, reach them in the walk): "
        f"{unclassified}"
    )
    gone = sorted(set(ROUTES) - set(declared))
    assert not gone, f"routes in ROUTES that no app declares any more: {gone}"
    for key, resource in declared.items():
        if ROUTES[key] == STATIC:
            directory = Path(resource.get_info()["directory"])
            served = [p.suffix.lower() for p in directory.rglob("*") if p.is_file()]
            # A static HTML or SVG file would be a page without the per-page headers.
            assert not {".html", ".htm", ".svg", ".xhtml"} & set(served), (key, served)


# --- the flows that reach each page ----------------------------------------------------------


def login_params(w: Walk, canvas: FakePlatform, client: Client, **extra: str) -> dict[str, str]:
    return {
        "iss": canvas.issuer,
        "login_hint": extra.pop("login_hint", "teacher-1"),
        "client_id": client.client_id,
        "target_link_uri": f"{w.public}/app",
        "lti_deployment_id": client.deployment_id,
        "lti_storage_target": "_parent",
        **extra,
    }


def data_next(page: str) -> str:
    found = re.search(r'data-next="([^"]+)"', page)
    assert found is not None, page[:800]
    return html.unescape(found.group(1))


async def lti_pages(w: Walk, canvas: FakePlatform) -> None:
    client = canvas.add_client([f"{w.public}/lti/launch"])
    await LtiStack([], {}, w.pool).register(canvas, client)
    lms = [canvas.base_url]  # the fake LMS's pages (its issuer is hosted Canvas's shared one)
    framed_by = ["'self'", *lms]

    hint = json.dumps({"roles": [INSTRUCTOR], "message_type": "LtiDeepLinkingRequest"})
    params = login_params(w, canvas, client, lti_message_hint=hint)
    resp = await w.call("login", "GET", "/lti/login?" + urlencode(params))
    assert resp.status == 200, await resp.text()
    w.check("GET /lti/login (Platform Storage put)", resp, frame_ancestors=framed_by)
    w.page(("login", "GET", "/lti/login"))
    resp = await w.call("login", "POST", "/lti/login", data=params)
    assert resp.status == 200, await resp.text()
    w.check("POST /lti/login (Platform Storage put)", resp, frame_ancestors=framed_by)
    w.page(("login", "POST", "/lti/login"))
    auth = await w.browser.get(data_next(await resp.text()))
    action, fields = parse_autopost(await auth.text())
    assert urlsplit(action).path == "/lti/launch"

    # No cookie came back (all cookies blocked): the relaunch page reads Platform Storage.
    async with Browser() as cookieless:
        resp = await cookieless.post(
            w.urls["launch"] + "/lti/launch", data=fields, headers=w.headers()
        )
        assert resp.status == 200, await resp.text()
        assert 'data-mode="get"' in await resp.text()
    w.check("POST /lti/launch (Platform Storage get)", resp, frame_ancestors=framed_by)
    w.page(("launch", "POST", "/lti/launch"))

    resp = await w.call("launch", "POST", "/lti/launch", data=fields)
    assert resp.status == 303, await resp.text()
    w.check("POST /lti/launch (303 to the app)", resp)
    location = resp.headers["Location"]
    app_path = location.removeprefix(w.public).split("#", 1)[0]
    token = location.split("#lt=", 1)[1]
    assert app_path.startswith("/app/?f=")

    resp = await w.call("checkins", "GET", app_path)
    assert resp.status == 200
    w.check("GET /app/?f=<ref>", resp, frame_ancestors=framed_by)
    w.page(("checkins", "GET", "/app/"))
    for what, path in [
        ("GET /app/ without a reference", "/app/"),
        ("GET /app/ with a forged reference", app_path.split("&", 1)[0][:-3] + "AAA"),
        ("GET /app/ with garbage", "/app/?f=%22%3B%20script-src%20*"),
    ]:
        resp = await w.call("checkins", "GET", path)
        assert resp.status == 200
        w.check(what, resp, frame_ancestors=["'self'"])

    # The deep-linking return page (an auto-post to the platform, inside its frame).
    api = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    resp = await w.call(
        "checkins", "POST", "/api/checkins/checkins", json={"question": "How?"}, headers=api
    )
    assert resp.status == 201, await resp.text()
    w.check("POST /api/checkins/checkins", resp)
    checkin_id = (await resp.json())["id"]
    resp = await w.call(
        "checkins", "POST", "/app/deep-link", data={"lt": token, "checkin_id": str(checkin_id)}
    )
    assert resp.status == 200, await resp.text()
    w.check("POST /app/deep-link", resp, frame_ancestors=framed_by)
    w.page(("checkins", "POST", "/app/deep-link"))


async def registration_pages(w: Walk, moodle: RegistrationPlatform) -> None:
    code, _ = await create_install_code(w.pool, label="walk", ttl_s=3600)
    query = urlencode(moodle.start_params())
    resp = await w.call("registration", "GET", f"/lti/register?{query}")
    page = await resp.text()
    assert resp.status == 200, page
    framed_by = ["'self'", moodle.base_url]
    w.check("GET /lti/register (install page)", resp, frame_ancestors=framed_by)
    w.page(("registration", "GET", "/lti/register"))
    resp = await w.call(
        "registration",
        "POST",
        "/lti/register",
        data=[
            ("form", form_value(page)),
            ("placement", "activity_chooser"),
            ("install_code", code),
        ],
    )
    assert resp.status == 200, await resp.text()
    w.check("POST /lti/register (done page)", resp, frame_ancestors=framed_by)
    w.page(("registration", "POST", "/lti/register"))

    for path in ("/admin/", "/admin/register/manual"):
        resp = await w.call("registration", "GET", path)
        assert resp.status == 200
        w.check(f"GET {path}", resp, frame_ancestors=["'none'"])
        w.page(("registration", "GET", path))
    token = await create_token(w.pool, f"walker-{secrets.token_hex(4)}")
    resp = await w.call(
        "registration", "GET", "/api/admin/platforms", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    w.check("GET /api/admin/platforms", resp)


async def bare_requests(w: Walk) -> None:
    """Every declared route, as a stranger's browser would hit it: no parameters, no
    credentials. Whatever comes back (mostly error pages) obeys the rules."""
    for (service, method, path), kind in sorted(declared_routes(w.apps).items()):
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        if kind == STATIC:
            concrete += "/missing.js"
        resp = await w.call(service, method, concrete, headers={"Accept": "text/html"})
        what = f"bare {method} {path} -> {resp.status}"
        if resp.headers.get("Content-Type", "").startswith("text/html"):
            lms_facing = path.startswith(("/lti/", "/app/"))
            # An LMS-facing error page is shown in the LMS's frame (it may be framed by any
            # origin: no script, no form, nothing to click); any other keeps 'none'.
            expected = ["*"] if lms_facing and resp.status >= 400 else None
            if not lms_facing:
                expected = ["'none'"]
            w.check(what, resp, frame_ancestors=expected)
        else:
            w.check(what, resp)
    resp = await w.call("registration", "GET", "/no/such/page", headers={"Accept": "text/html"})
    assert resp.status == 404
    w.check("GET unknown path", resp, frame_ancestors=["'none'"])


async def test_every_html_response_has_the_headers(
    walk: Walk, canvas: FakePlatform, moodle: RegistrationPlatform
) -> None:
    await lti_pages(walk, canvas)
    await registration_pages(walk, moodle)
    await bare_requests(walk)
    expected_pages = {k for k, v in ROUTES.items() if v == PAGE}
    assert walk.pages == expected_pages, sorted(expected_pages - walk.pages)
    assert len(walk.checked) > 60


# --- where the origins come from, and how changes reach the pages ------------------------------


async def app_frame_ancestors(w: Walk, app_path: str) -> list[str]:
    resp = await w.call("checkins", "GET", app_path)
    assert resp.status == 200
    return directives(resp.headers["Content-Security-Policy"])["frame-ancestors"]


async def eventually(probe: Callable[[], Any], expected: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await probe()) != expected:
        assert loop.time() < deadline, f"still {got!r}, expected {expected!r}"
        await asyncio.sleep(0.2)


async def test_admin_edits_frame_origins_and_pages_follow(
    services: Walk, canvas: FakePlatform
) -> None:
    w = services
    token = await create_token(w.pool, f"origins-{secrets.token_hex(4)}")
    admin = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    # Hosted Canvas recorded by client_id only (the JSON URL path): no school host known.
    client = canvas.add_client([f"{w.public}/lti/launch"])
    platform_id = await LtiStack([], {}, w.pool).register(canvas, client, frame_origins=[])
    params = login_params(w, canvas, client)
    params.pop("lti_storage_target")
    resp = await w.call("login", "GET", "/lti/login?" + urlencode(params))
    assert resp.status == 302
    auth = await w.browser.get(resp.headers["Location"])
    _, fields = parse_autopost(await auth.text())
    resp = await w.call("launch", "POST", "/lti/launch", data=fields)
    assert resp.status == 303, await resp.text()
    app_path = resp.headers["Location"].removeprefix(w.public).split("#", 1)[0]
    assert await app_frame_ancestors(w, app_path) == ["'self'", "https://*.instructure.com"]

    # Refused: anything but origins, and the list is left alone.
    for bad in (["https://a.example; script-src *"], "https://a.example", [42]):
        resp = await w.call(
            "registration",
            "PUT",
            f"/api/admin/platforms/{platform_id}/frame-origins",
            json={"frame_origins": bad},
            headers=admin,
        )
        assert resp.status == 400
        body = await resp.json()
        assert body["error"]["code"] == "validation_failed" and "frame_origins" in str(body)
    stored = await w.pool.fetchval("SELECT frame_origins FROM platforms WHERE id = $1", platform_id)
    assert stored == []

    school = "https://School.Instructure.com/"
    resp = await w.call(
        "registration",
        "PUT",
        f"/api/admin/platforms/{platform_id}/frame-origins",
        json={"frame_origins": [school, canvas.base_url]},
        headers=admin,
    )
    assert resp.status == 200, await resp.text()
    wanted = ["https://school.instructure.com", canvas.base_url]
    assert (await resp.json())["platform"]["frame_origins"] == wanted
    resp = await w.call("registration", "GET", f"/api/admin/platforms/{platform_id}", headers=admin)
    shown = (await resp.json())["platform"]
    assert shown["frame_origins"] == wanted and shown["frame_ancestors"] == wanted
    audit = await w.pool.fetchrow(
        "SELECT actor, details FROM registration_audit WHERE platform_id = $1 "
        "AND action = 'registration.frame_origins_changed'",
        platform_id,
    )
    assert audit["actor"].startswith("admin:origins-")
    assert json.loads(audit["details"])["previous_frame_origins"] == []

    # The event reaches the app's cache and the login service's registration cache.
    await eventually(lambda: app_frame_ancestors(w, app_path), ["'self'", *wanted])

    async def login_page_ancestors() -> list[str]:
        query = urlencode(login_params(w, canvas, client))
        page = await w.call("login", "GET", "/lti/login?" + query)
        return directives(page.headers["Content-Security-Policy"])["frame-ancestors"]

    await eventually(login_page_ancestors, ["'self'", *wanted])

    # Deleted: the reference names no platform any more, so 'self' only.
    resp = await w.call(
        "registration", "DELETE", f"/api/admin/platforms/{platform_id}", headers=admin
    )
    assert resp.status == 200
    await eventually(lambda: app_frame_ancestors(w, app_path), ["'self'"])


async def test_manual_registration_records_frame_origins(services: Walk) -> None:
    w = services
    token = await create_token(w.pool, f"manual-{secrets.token_hex(4)}")
    admin = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def create(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = await w.call(
            "registration", "POST", "/api/admin/platforms", json=body, headers=admin
        )
        return resp.status, await resp.json()

    client_id = f"1000000{secrets.randbelow(10**6)}"
    status, body = await create(
        {
            "issuer": "https://canvas.instructure.com",
            "client_id": client_id,
            "frame_origins": ["https://canvas.school.edu", "https://school.instructure.com"],
        }
    )
    assert status == 201, body
    assert body["platform"]["frame_origins"] == [
        "https://canvas.school.edu",
        "https://school.instructure.com",
    ]
    status, body = await create(
        {
            "issuer": "https://canvas.instructure.com",
            "client_id": client_id + "9",
            "frame_origins": ["https://canvas.school.edu/courses/1"],
        }
    )
    assert status == 400 and "frame_origins" in body["error"]["fields"], body
    # Moodle: the site (the issuer's origin) is where its pages come from.
    status, body = await create(
        {
            "product": "moodle",
            "issuer": "https://moodle.school.edu/lms",
            "client_id": "abc" + secrets.token_hex(4),
            "deployment_id": "1",
            "auth_url": "https://moodle.school.edu/lms/mod/lti/auth.php",
            "jwks_url": "https://moodle.school.edu/lms/mod/lti/certs.php",
        }
    )
    assert status == 201, body
    assert body["platform"]["frame_origins"] == ["https://moodle.school.edu"]


async def test_reregistration_adds_origins_and_keeps_the_admins(pool: asyncpg.Pool) -> None:
    record = PlatformRecord(
        issuer=f"https://moodle-{secrets.token_hex(4)}.example.org",
        client_id="c1",
        auth_url="https://moodle.example.org/mod/lti/auth.php",
        jwks_url="https://moodle.example.org/mod/lti/certs.php",
        token_url=None,
        product="moodle",
        deployment_policy="accept",
        environment="production",
        name=None,
        method="dynamic",
        frame_origins=["https://a.example"],
    )
    async with pool.acquire() as conn:
        platform_id, created = await upsert_platform(conn, record)
        assert created
        await set_frame_origins(conn, platform_id, ["https://admin.example", "https://a.example"])
        again = dataclasses.replace(
            record, frame_origins=["https://b.example", "https://a.example"]
        )
        assert await upsert_platform(conn, again) == (platform_id, False)
        stored = await conn.fetchval(
            "SELECT frame_origins FROM platforms WHERE id = $1", platform_id
        )
        assert stored == ["https://admin.example", "https://a.example", "https://b.example"]
        many = [f"https://s{i}.example" for i in range(30)]
        await upsert_platform(conn, dataclasses.replace(record, frame_origins=many))
        stored = await conn.fetchval(
            "SELECT frame_origins FROM platforms WHERE id = $1", platform_id
        )
        assert len(stored) == 20 and stored[:3] == [
            "https://admin.example",
            "https://a.example",
            "https://b.example",
        ]
        await conn.execute("DELETE FROM platforms WHERE id = $1", platform_id)
