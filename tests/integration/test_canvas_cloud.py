"""Canvas as Instructure hosts it, against the real registration, login, launch and checkins
services: the LMS emulator's Canvas (devstack/emulator, in-process) plays hosted Canvas — its
issuers and auth domains on one origin (``http://localhost:<port>``, announced to Attune as
ATTUNE_DEV_CANVAS_CLOUD exactly as ``attune dev`` does), the school's pages on another
(``http://127.0.0.1:<port>/canvas``).

- dynamic registration: the install and done pages may be framed by the school's host (the
  registration endpoint's), not the issuer's; that is what is stored; no registration token
  is stored;
- launches post the login from the school's page (its Origin), go through Platform Storage,
  and a launch from a page origin nobody recorded is let through without the storage page
  and then learned for that deployment from the verified launch (event, next login);
- beta and test launches of the production registration, with their own keys and token
  endpoint;
- what Canvas shares (the admin's edits after the registration answer) reaches the app and
  the admin API.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from devstack.embedded import free_port
from devstack.emulator.app import EMULATOR_KEY, create_emulator
from devstack.emulator.lti import INSTRUCTOR, launch_claims
from services.registration.cli import create_install_code, create_token
from tests.conftest import Infra
from tests.fakes.platform import parse_autopost
from tests.fakes.registration_platform import form_value, submit_install
from tests.lti_support import (
    Browser,
    RegistrationEnv,
    browser,
    error_code,
    post_launch,
    registration_env,
)

pytestmark = pytest.mark.integration


@dataclass
class Cloud:
    env: RegistrationEnv
    school: str  # http://127.0.0.1:<port>: the school's Canvas pages
    cloud: str  # http://localhost:<port>: issuers and OIDC auth domains
    app: web.Application

    @property
    def issuer(self) -> str:
        return f"{self.cloud}/canvas"

    @property
    def canvas(self) -> Any:
        return self.app[EMULATOR_KEY].lms["canvas"]


@pytest.fixture
async def cloud(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Cloud]:
    port = free_port()
    school, instructure = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
    async for env in registration_env(infra, pool, every_service={"dev_canvas_cloud": instructure}):
        app = create_emulator(base_url=school, tool_url=env.stack.url)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Cloud(env, school, instructure, app)
        finally:
            await runner.cleanup()


def frame_ancestors(resp: aiohttp.ClientResponse) -> list[str]:
    csp = resp.headers["Content-Security-Policy"]
    return csp.split("frame-ancestors", 1)[1].split(";", 1)[0].split()


def iframe_src(page: str, frame_id: str) -> str:
    src = page.split(f'id="{frame_id}"', 1)[1].split('src="', 1)[1].split('"', 1)[0]
    return html.unescape(src)


async def register(c: Cloud, http: aiohttp.ClientSession) -> str:
    """Dynamic registration as the Canvas admin does it; returns the client_id."""
    async with http.get(
        f"{c.school}/canvas/admin/register", params={"url": f"{c.env.url}/lti/register"}
    ) as resp:
        page = await resp.text()
    src = iframe_src(page, "registration")
    query = {k: v[0] for k, v in parse_qs(urlsplit(src).query).items()}
    # Canvas puts the configuration on the issuer's host (with the token in its query).
    assert query["openid_configuration"].startswith(f"{c.issuer}/api/lti/security/")
    async with http.get(src) as install:
        text = await install.text()
        assert install.status == 200, text
        # Framed by the school's Canvas page, not by the issuer's host.
        assert frame_ancestors(install) == ["'self'", c.school]
    code, _ = await create_install_code(c.env.pool, label="school", ttl_s=3600)
    done = await submit_install(
        http,
        c.env.url,
        form_value(text),
        placements=["course_navigation", "editor_button"],
        credential=("install_code", code),
    )
    assert done.status == 200, await done.text()
    assert frame_ancestors(done) == ["'self'", c.school]
    [client_id] = list(c.canvas.clients)
    return str(client_id)


@dataclass
class Launched:
    login: aiohttp.ClientResponse
    storage: bool  # the login showed its Platform Storage page
    launch: aiohttp.ClientResponse
    auth_url: str

    @property
    def token(self) -> str:
        return self.launch.headers["Location"].split("#lt=", 1)[1]

    @property
    def ref(self) -> str:
        location = self.launch.headers["Location"].split("#", 1)[0]
        return parse_qs(urlsplit(location).query)["f"][0]


async def launch(
    c: Cloud, b: Browser, user: str, *, env: str = "production", host: str | None = None
) -> Launched:
    """The course page's frame as a browser runs it: Canvas's launch page (served from
    ``host``, the school's host by default) posts the login with its Origin; Attune answers
    with its Platform Storage page or a redirect; the auth domain posts the id_token back."""
    page_host = host or urlsplit(c.school).netloc
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{c.school}/canvas/course", params={"user": user, "env": env}) as r:
            src = iframe_src(await r.text(), "tool")
        async with http.get(c.school + src, headers={"Host": page_host}) as r:
            action, fields = parse_autopost(await r.text())
    login = await b.post(action, data=fields, headers={"Origin": f"http://{page_host}"})
    body = await login.text()
    if login.status == 200:  # the Platform Storage page: it goes on to data-next
        found = re.search(r'data-next="([^"]+)"', body)
        assert found is not None, body
        auth_url = html.unescape(found.group(1))
    else:
        assert login.status == 302, body
        auth_url = login.headers["Location"]
    auth = await b.get(auth_url)
    assert auth.status == 200, await auth.text()
    to, posted = parse_autopost(await auth.text())
    done = await b.post(to, data=posted, headers={"Accept": "application/json"})
    assert done.status == 303, await done.text()
    return Launched(login, login.status == 200, done, auth_url)


async def wait_for(condition: Any, what: str) -> Any:
    """Poll ``condition`` (an async callable) until it returns something truthy."""
    for _ in range(600):
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never happened")


async def test_dynamic_registration_frames_and_stores_the_school_host(cloud: Cloud) -> None:
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
    row = await cloud.env.pool.fetchrow(
        "SELECT * FROM platforms WHERE issuer = $1 AND client_id = $2", cloud.issuer, client_id
    )
    assert row is not None
    assert (row["environment"], row["product"]) == ("production", "canvas")
    assert list(row["frame_origins"]) == [cloud.school]
    assert row["jwks_url"] == f"{cloud.cloud}/sso/api/lti/security/jwks"
    config = json.loads(row["platform_config"])
    assert "registration_token" not in json.dumps(config)
    assert config["openid_configuration"] == f"{cloud.issuer}/api/lti/security/openid-configuration"
    audit = await cloud.env.pool.fetchval(
        "SELECT details FROM registration_audit WHERE platform_id = $1", row["id"]
    )
    assert "registration_token" not in audit


async def test_launch_from_the_school_page_uses_platform_storage(cloud: Cloud) -> None:
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
    async with browser() as b:
        done = await launch(cloud, b, "teacher-1")
    # The school's page is one the registration allows: the login's storage page is shown,
    # and the login goes to the production auth domain.
    assert done.storage and cloud.school in frame_ancestors(done.login)
    assert done.auth_url.startswith(f"{cloud.cloud}/sso/api/lti/authorize_redirect?")
    platform_id = await cloud.env.pool.fetchval(
        "SELECT id FROM platforms WHERE client_id = $1", client_id
    )
    seen = await cloud.env.pool.fetchrow(
        "SELECT * FROM deployment_observations WHERE platform_id = $1", platform_id
    )
    assert list(seen["frame_origins"]) == []  # nothing new to learn
    assert (seen["roster_shared"], seen["names_shared"]) == (True, True)


async def test_a_page_origin_nobody_recorded_is_learned_from_the_verified_launch(
    cloud: Cloud,
) -> None:
    """One client_id, a school on its own (vanity) domain: the login cannot show a storage
    page that domain may not frame, so it redirects straight away (the partitioned cookie
    binds it); the verified launch proves the domain (its signed return URL), which is then
    allowed for this deployment — the app at once, the next login's storage page after the
    event reached the login service."""
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
    port = urlsplit(cloud.school).port
    vanity = f"canvas.school.test:{port}"
    async with browser() as b:
        first = await launch(cloud, b, "student-a", host=vanity)
    assert not first.storage and first.login.status == 302
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cloud.env.stack.url}/app/?f={first.ref}") as app:
            assert f"http://{vanity}" in frame_ancestors(app)
    pool = cloud.env.pool
    platform_id = await pool.fetchval("SELECT id FROM platforms WHERE client_id = $1", client_id)
    learned = await pool.fetchval(
        "SELECT frame_origins FROM deployment_observations WHERE platform_id = $1", platform_id
    )
    assert list(learned) == [f"http://{vanity}"]
    learned_events = (
        "SELECT count(*) FROM outbox WHERE event_type = 'deployment.frame_origin_learned' "
        "AND convert_from(value, 'UTF8') LIKE '%' || $1 || '%'"
    )
    assert await pool.fetchval(learned_events, client_id) == 1

    async def storage_page() -> Launched | None:
        async with browser() as b:
            again = await launch(cloud, b, "student-b", host=vanity)
        return again if again.storage else None

    again = await wait_for(storage_page, "a storage page for the learned origin")
    assert f"http://{vanity}" in frame_ancestors(again.login)
    # Learned once: no second event, the origin not repeated.
    assert await pool.fetchval(learned_events, client_id) == 1


async def test_beta_and_test_launch_the_production_registration(cloud: Cloud) -> None:
    """Beta and test are copies of production under their own issuer: the same client_id and
    deployment, that environment's auth domain, keys and token endpoint."""
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
    pool = cloud.env.pool
    for env in ("beta", "test"):
        async with browser() as b:
            done = await launch(cloud, b, "teacher-1", env=env)
        assert done.auth_url.startswith(f"{cloud.cloud}/sso-{env}/api/lti/authorize_redirect?")
        async with aiohttp.ClientSession() as http:
            me = await http.get(
                f"{cloud.env.stack.url}/api/checkins/me",
                headers={"Authorization": f"Bearer {done.token}"},
            )
            assert me.status == 200, await me.text()
    # No registration of the beta or test issuer was made for them.
    assert await pool.fetchval(
        "SELECT array_agg(issuer) FROM platforms WHERE client_id = $1", client_id
    ) == [cloud.issuer]
    launches = await pool.fetchval(
        "SELECT count(*) FROM launches l JOIN platforms p ON p.id = l.platform_id "
        "WHERE p.client_id = $1",
        client_id,
    )
    assert launches == 2

    test_token_url = f"{cloud.cloud}/sso-test/login/oauth2/token"

    async def synced() -> bool:
        found = await pool.fetchval(
            "SELECT s.token_url FROM checkin_nrps_sync s JOIN platforms p "
            "ON p.id = s.platform_id WHERE p.client_id = $1",
            client_id,
        )
        return bool(found == test_token_url)

    # The roster sync of the last (test) launch uses the test environment's token endpoint.
    await wait_for(synced, "an NRPS sync request with the test environment's token endpoint")


async def test_what_canvas_shares_reaches_the_teacher_and_the_admin(cloud: Cloud) -> None:
    """Canvas answers the registration with what was asked; the admin turns the roster and
    names off afterwards. The launch shows it: the teacher's app says so, the admin API too."""
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
        async with http.post(
            f"{cloud.school}/canvas/admin/overlay",
            data={"client_id": client_id, "privacy_level": "anonymous",
                  "placement": "course_navigation"},
        ) as resp:  # fmt: skip
            assert resp.status == 200
    granted = await cloud.env.pool.fetchval(
        "SELECT granted FROM platforms WHERE client_id = $1", client_id
    )
    assert "contextmembership" in granted  # the registration answer could not tell
    async with browser() as b:
        done = await launch(cloud, b, "teacher-1")
    async with aiohttp.ClientSession() as http:
        me = await http.get(
            f"{cloud.env.stack.url}/api/checkins/me",
            headers={"Authorization": f"Bearer {done.token}"},
        )
        body = await me.json()
        assert body["lms_shares"] == {"roster": False, "names": False}, body
        token = await create_token(cloud.env.pool, "operator")
        listed = await http.get(
            f"{cloud.env.url}/api/admin/platforms", headers={"Authorization": f"Bearer {token}"}
        )
        [platform] = [p for p in (await listed.json())["platforms"] if p["client_id"] == client_id]
    [deployment] = platform["deployments"]
    assert deployment["launches_show"]["roster_shared"] is False
    assert deployment["launches_show"]["names_shared"] is False


async def _login_only(c: Cloud, b: Browser, user: str, env: str) -> dict[str, str]:
    """The login step of a launch from the school's page: the auth request's parameters."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{c.school}/canvas/course", params={"user": user, "env": env}) as r:
            src = iframe_src(await r.text(), "tool")
        async with http.get(c.school + src) as r:
            action, fields = parse_autopost(await r.text())
    login = await b.post(action, data=fields, headers={"Origin": c.school})
    body = await login.text()
    found = re.search(r'data-next="([^"]+)"', body)
    auth_url = html.unescape(found.group(1)) if found else login.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(auth_url).query).items()}


async def test_one_environment_never_answers_for_another(cloud: Cloud) -> None:
    """A beta token for a production login, and a beta token signed with production's keys:
    refused. The environment is the issuer's, and each verifies with its own keys."""
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
    client = cloud.canvas.clients[client_id]

    def token(issuer_env: str, signing_env: str, nonce: str) -> str:
        claims = launch_claims(
            flavour="canvas",
            issuer=f"{cloud.cloud}/canvas"
            + ("" if issuer_env == "production" else f"-{issuer_env}"),
            platform_url=cloud.school,
            client=client,
            nonce=nonce,
            sub="teacher-1",
            name="Tess Teacher",
            roles=[INSTRUCTOR],
            target_link_uri=f"{cloud.env.stack.url}/app",
        )
        return str(cloud.canvas.keys_for(signing_env)[-1].sign(claims))

    async with browser() as b:
        auth = await _login_only(cloud, b, "teacher-1", "production")
        fields = {"id_token": token("beta", "beta", auth["nonce"]), "state": auth["state"]}
        resp = await post_launch(b, cloud.env.stack.url, fields)
        assert (resp.status, await error_code(resp)) == (403, "registration_mismatch")
    async with browser() as b:
        auth = await _login_only(cloud, b, "teacher-1", "beta")
        fields = {"id_token": token("beta", "production", auth["nonce"]), "state": auth["state"]}
        resp = await post_launch(b, cloud.env.stack.url, fields)
        assert await error_code(resp) == "jwt_kid_unknown"
        # Control: the same launch signed by beta's own keys.
        fields = {"id_token": token("beta", "beta", auth["nonce"]), "state": auth["state"]}
        resp = await b.post(f"{cloud.env.stack.url}/lti/launch", data=fields)
        assert resp.status == 303, await resp.text()


async def test_learned_origins_are_bounded_per_deployment(cloud: Cloud) -> None:
    """At most 10 learned page origins per deployment: the 11th origin's launch still works
    (the cookie binds it) but its pages are not allowed to frame Attune."""
    async with aiohttp.ClientSession() as http:
        client_id = await register(cloud, http)
    port = urlsplit(cloud.school).port
    refs: list[str] = []
    for i in range(11):
        async with browser() as b:
            done = await launch(cloud, b, "student-a", host=f"school-{i}.test:{port}")
        refs.append(done.ref)
    learned = await cloud.env.pool.fetchval(
        "SELECT o.frame_origins FROM deployment_observations o JOIN platforms p "
        "ON p.id = o.platform_id WHERE p.client_id = $1",
        client_id,
    )
    assert list(learned) == [f"http://school-{i}.test:{port}" for i in range(10)]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cloud.env.stack.url}/app/?f={refs[9]}") as app:
            assert f"http://school-9.test:{port}" in frame_ancestors(app)
        async with http.get(f"{cloud.env.stack.url}/app/?f={refs[10]}") as app:
            assert f"http://school-10.test:{port}" not in frame_ancestors(app)


async def test_self_hosted_region_never_refuses_a_login(cloud: Cloud) -> None:
    async with aiohttp.ClientSession() as http:
        await register(cloud, http)
    cloud.canvas.self_hosted = True
    async with browser() as b:
        done = await launch(cloud, b, "student-c")
    assert done.launch.status == 303
