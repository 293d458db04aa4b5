"""The admin API, the admin pages and the ``attune admin`` commands: approvals and disables
reach login and launch through registration events, deletion states its consequence, every
change is audited."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.registration.app import create_app
from services.registration.cli import create_token
from shared.events.envelope import Event
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform
from tests.fakes.registration_platform import outbox_settled, serve_app
from tests.lti_support import (
    LtiStack,
    browser,
    full_launch,
    login,
    start_stack,
)

pytestmark = pytest.mark.integration


@dataclass
class Env:
    stack: LtiStack
    url: str
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    admin: dict[str, str]
    admin_name: str

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.session.request(
            method, f"{self.url}/api/admin{path}", json=body, headers=self.admin
        )
        return resp.status, await resp.json()


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    stack, exits = await start_stack(infra, pool)
    runner, url = await serve_app(create_app(stack.settings["us-east-1"]))
    try:
        name = f"admin-{secrets.token_hex(4)}"
        token = await create_token(pool, name)
        async with aiohttp.ClientSession() as session:
            yield Env(stack, url, pool, session, {"Authorization": f"Bearer {token}"}, name)
    finally:
        await outbox_settled(pool)
        await runner.cleanup()
        await exits.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    """Caches follow registration events within seconds (and a 60 s TTL otherwise)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_deployment_approval_disable_delete_and_audit(env: Env, moodle: FakePlatform) -> None:
    client = moodle.add_client(env.stack.redirect_uris())
    # A generic platform: new deployments wait for an admin (policy hold).
    status, body = await env.api(
        "POST",
        "/platforms",
        {
            "product": "generic",
            "issuer": moodle.issuer,
            "client_id": client.client_id,
            "jwks_url": moodle.jwks_url,
            "auth_url": moodle.auth_url,
        },
    )
    assert status == 201, body
    platform_id = body["platform"]["id"]
    assert body["platform"]["deployment_policy"] == "hold"

    async with browser() as b:
        resp = await full_launch(b, env.stack.url, moodle, client)
        held = await resp.text()
        assert resp.status == 403 and "deployment_pending" in held, held  # recorded by launch
        status, body = await env.api("GET", f"/platforms/{platform_id}")
        assert [
            (d["deployment_id"], d["status"], d["source"]) for d in body["platform"]["deployments"]
        ] == [(client.deployment_id, "pending", "launch")]

        status, body = await env.api(
            "POST",
            f"/platforms/{platform_id}/deployments/approve",
            {"deployment_id": client.deployment_id, "label": "Year 9"},
        )
        assert status == 200, body
        assert body["deployment"]["status"] == "active"

        async def launches() -> bool:
            return (await full_launch(b, env.stack.url, moodle, client)).status == 303

        await eventually(launches, "the approved deployment to launch")

        status, body = await env.api(
            "POST",
            f"/platforms/{platform_id}/deployments/disable",
            {"deployment_id": client.deployment_id},
        )
        assert status == 200 and body["deployment"]["previous_status"] == "active"

        async def refused_at_login() -> bool:
            resp = await login(b, env.stack.url, moodle, client)
            return resp.status == 403

        await eventually(refused_at_login, "the disabled deployment to be refused")

        status, body = await env.api("DELETE", f"/platforms/{platform_id}")
        assert status == 200, body
        assert body["deleted"]["deployment_ids"] == [client.deployment_id]
        assert "audit trail keeps" in body["data_retention"]
        assert "new platform id" in body["data_retention"]

        async def unknown() -> bool:
            resp = await login(b, env.stack.url, moodle, client, lti_deployment_id="other")
            return resp.status == 403 and "platform_unknown" in await resp.text()

        await eventually(unknown, "the deleted platform to be unknown")
    assert await env.pool.fetchval("SELECT count(*) FROM platforms WHERE id = $1", platform_id) == 0
    status, body = await env.api("GET", f"/platforms/{platform_id}")
    assert status == 404 and body["error"]["code"] == "platform_not_found"

    status, body = await env.api("GET", f"/audit?platform_id={platform_id}")
    actions = [a["action"] for a in reversed(body["audit"])]
    assert actions == [
        "registration.created",
        "deployment.approved",
        "deployment.disabled",
        "registration.deleted",
    ]
    assert {a["actor"] for a in body["audit"]} == {f"admin:{env.admin_name}"}
    events = [
        Event.decode(r["value"])
        for r in await env.pool.fetch(
            "SELECT value FROM outbox WHERE topic = 'attune.registration.v1' ORDER BY seq"
        )
    ]
    assert [e.type for e in events] == actions
    for event in events:
        assert event.data["issuer"] == moodle.issuer
        assert event.data["client_id"] == client.client_id
        assert event.data["platform_id"] == platform_id


async def test_unknown_platform_and_bad_bodies(env: Env) -> None:
    status, body = await env.api(
        "POST", "/platforms/999999/deployments/approve", {"deployment_id": "x"}
    )
    assert status == 404 and body["error"]["code"] == "platform_not_found"
    status, body = await env.api("DELETE", "/platforms/999999")
    assert status == 404
    resp = await env.session.post(
        f"{env.url}/api/admin/platforms",
        data="{not json",
        headers={**env.admin, "Content-Type": "application/json"},
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"
    status, body = await env.api("POST", "/platforms/1/deployments/approve", {"deployment_id": ""})
    assert status == 400 and "deployment_id" in body["error"]["fields"]
    status, body = await env.api("POST", "/install-codes", {"ttl_s": 5})
    assert status == 400 and "ttl_s" in body["error"]["fields"]


async def test_install_codes_api(env: Env) -> None:
    status, body = await env.api("POST", "/install-codes", {"label": "Northside HS"})
    assert status == 201, body
    code = body["install_code"]
    assert code.startswith("attune_ic_") and len(code) > 30
    status, listed = await env.api("GET", "/install-codes")
    [entry] = [c for c in listed["install_codes"] if c["id"] == body["id"]]
    assert entry["label"] == "Northside HS" and entry["used_at"] is None
    assert code not in str(listed)
    stored = await env.pool.fetchval(
        "SELECT code_hash FROM install_codes WHERE id = $1", body["id"]
    )
    assert len(stored) == 32 and code.encode() not in stored
    status, audit = await env.api("GET", "/audit?limit=5")
    assert audit["audit"][0]["action"] == "install_code.created"
    assert code not in str(audit)
    status, tokens = await env.api("GET", "/tokens")
    assert all(
        set(t) == {"id", "name", "created_at", "revoked_at", "last_used_at"}
        for t in tokens["tokens"]
    )


async def test_admin_pages_have_no_inline_script_and_no_cookies(env: Env) -> None:
    for path in ("/admin/", "/admin/register/manual"):
        resp = await env.session.get(f"{env.url}{path}")
        page = await resp.text()
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        script = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert script.strip() == "script-src 'self'"
        assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
        assert "Set-Cookie" not in resp.headers
        # Script only from a file; the one inline block is data (never executed).
        assert not re.search(r'<script(?![^>]*\b(src=|type="application/json"))', page)
        assert page.count('<script type="application/json" id="admin-data">') == 1
        assert not re.search(r"\son[a-z]+=", page)
        assert '<script src="/admin/static/admin.js"></script>' in page
    redirect = await env.session.get(f"{env.url}/admin", allow_redirects=False)
    assert redirect.status == 302 and redirect.headers["Location"] == "/admin/"
    js = await env.session.get(f"{env.url}/admin/static/admin.js")
    text = await js.text()
    assert js.status == 200 and "javascript" in js.headers["Content-Type"]
    assert "sessionStorage" in text and '"Authorization": "Bearer "' in text
    assert "document.cookie" not in text and "innerHTML" not in text
    assert 'credentials: "omit"' in text


async def _cli(infra: Infra, *args: str) -> tuple[int, str, str]:
    env = {**{"PATH": os.environ["PATH"]}, **infra.env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.registration.cli",
        "admin",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_admin_cli(infra: Infra, env: Env) -> None:
    name = f"cli-{secrets.token_hex(4)}"
    code, out, err = await _cli(infra, "create-token", name)
    assert code == 0, err
    token = out.strip()
    assert token.startswith("attune_at_") and "shown only now" in err
    me = await env.session.get(
        f"{env.url}/api/admin/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert me.status == 200 and (await me.json())["name"] == name

    code, out, err = await _cli(infra, "create-token", name)
    assert code == 1 and "exists" in err  # one active token per name

    code, out, err = await _cli(infra, "create-install-code", "--label", "Eastside")
    assert code == 0, err
    assert out.strip().startswith("attune_ic_") and "valid until" in err

    code, out, err = await _cli(infra, "revoke-token", name)
    assert code == 0, err
    me = await env.session.get(
        f"{env.url}/api/admin/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert me.status == 401 and (await me.json())["error"]["code"] == "admin_token_revoked"

    code, out, err = await _cli(infra, "list-tokens")
    assert code == 0 and name in out and token not in out
    actions = [
        r["action"]
        for r in await env.pool.fetch(
            "SELECT action FROM registration_audit WHERE actor = 'cli' ORDER BY id DESC LIMIT 3"
        )
    ]
    assert actions == ["admin_token.revoked", "install_code.created", "admin_token.created"]

    # A re-registration code names the platform it may update; an unknown platform is refused.
    canvas = FakePlatform("canvas")
    client = canvas.add_client(env.stack.redirect_uris())
    platform_id = await env.stack.register(canvas, client)
    code, out, err = await _cli(infra, "create-install-code", "--platform-id", str(platform_id))
    assert code == 0, err
    assert "re-registration code for platform" in err
    row = await env.pool.fetchrow(
        "SELECT for_platform_id FROM install_codes WHERE code_hash = sha256($1::text::bytea)",
        out.strip(),
    )
    assert row["for_platform_id"] == platform_id
    audit = await env.pool.fetchrow(
        "SELECT platform_id, client_id, details FROM registration_audit WHERE actor = 'cli' "
        "ORDER BY id DESC LIMIT 1"
    )
    assert (audit["platform_id"], audit["client_id"]) == (platform_id, client.client_id)
    code, out, err = await _cli(infra, "create-install-code", "--platform-id", "999999999")
    assert code == 1 and "no registered platform" in err and not out
