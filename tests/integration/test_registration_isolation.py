"""One school can never change another's registration through dynamic registration.

The attack (issue #15): an install code issued for school B, used with an openid configuration
that claims hosted Canvas's shared issuer and a registration endpoint answering school A's
client_id. A fake platform on loopback plays the attacker against the real registration service;
school A (the victim) is a hosted Canvas registration that launches through the real gateway,
login and launch services. Afterwards the victim's row — every column, its frame origins, its
deployments — is byte for byte what it was, nothing else was written but the audit row of the
attempt, the install code is still unused, no page showed the victim's data, and the victim
still launches.

Also here: re-registration codes (the only way an install code updates a registration), the
admin token's re-registration (audited with what it changed), and platform keys under 2048
bits at dynamic registration.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.registration.app import FORM_PURPOSE
from services.registration.cli import create_install_code, create_token
from shared.signing import TokenSigner, parse_secrets
from tests.conftest import Infra
from tests.fakes.platform import CANVAS_ISSUER, Client, FakePlatform, new_key, weak_key
from tests.fakes.registration_platform import (
    RegistrationPlatform,
    install,
    open_install_page,
    registration_platform,
    submit_install,
)
from tests.lti_support import (
    RegistrationEnv,
    browser,
    full_launch,
    platform_server,
    registration_env,
)

pytestmark = pytest.mark.integration

SSO = "https://sso.canvaslms.com"
DOCUMENTED = {
    "authorization_endpoint": f"{SSO}/api/lti/authorize_redirect",
    "jwks_uri": f"{SSO}/api/lti/security/jwks",
    "token_endpoint": f"{SSO}/login/oauth2/token",
}


class Env(RegistrationEnv):
    def sign(self, payload: dict[str, object]) -> str:
        return TokenSigner(parse_secrets(self.settings.secret_keys), FORM_PURPOSE).sign(payload)

    async def admin(self) -> dict[str, str]:
        token = await create_token(self.pool, f"operator-{secrets.token_hex(4)}")
        return {"Authorization": f"Bearer {token}"}

    async def code(self, label: str, platform_id: int | None = None) -> tuple[str, int]:
        code, result = await create_install_code(
            self.pool, label=label, ttl_s=3600, for_platform_id=platform_id
        )
        return code, int(result["id"])


async def _env(infra: Infra, pool: asyncpg.Pool, **update: object) -> AsyncIterator[Env]:
    async for e in registration_env(infra, pool, **update):
        yield Env(e.stack, e.url, e.settings, e.pool, e.session)


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    async for e in _env(infra, pool):
        yield e


@pytest.fixture
async def victim_lms() -> AsyncIterator[FakePlatform]:
    """School A's hosted Canvas (the shared issuer; endpoints of a fake on loopback)."""
    async for p in platform_server("canvas"):
        yield p


@pytest.fixture
async def attacker() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("canvas"):
        yield p


@pytest.fixture
async def moodle() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("moodle"):
        yield p


@dataclass
class Victim:
    lms: FakePlatform
    platform_id: int
    client: Client
    row: dict[str, Any]
    deployments: list[dict[str, Any]]


async def snapshot(pool: asyncpg.Pool, platform_id: int) -> tuple[dict[str, Any], list[Any]]:
    row = await pool.fetchrow("SELECT * FROM platforms WHERE id = $1", platform_id)
    deployments = await pool.fetch(
        "SELECT * FROM deployments WHERE platform_id = $1 ORDER BY deployment_id", platform_id
    )
    return dict(row), [dict(d) for d in deployments]


async def school_a(env: Env, lms: FakePlatform) -> Victim:
    client = lms.add_client(env.stack.redirect_uris())
    platform_id = await env.stack.register(
        lms, client, frame_origins=["https://school-a.instructure.com", lms.base_url]
    )
    await env.pool.execute(
        "UPDATE platforms SET name = 'School A', registration_method = 'dynamic' WHERE id = $1",
        platform_id,
    )
    async with browser() as b:  # the victim launches before the attack
        resp = await full_launch(b, env.stack.url, lms, client)
        assert resp.status == 303, await resp.text()
    row, deployments = await snapshot(env.pool, platform_id)
    return Victim(lms, platform_id, client, row, deployments)


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {
        "platforms": await pool.fetchval("SELECT count(*) FROM platforms"),
        "deployments": await pool.fetchval("SELECT count(*) FROM deployments"),
        "outbox": await pool.fetchval("SELECT count(*) FROM outbox"),
        "used_codes": await pool.fetchval(
            "SELECT count(*) FROM install_codes WHERE used_at IS NOT NULL"
        ),
    }


async def assert_untouched(env: Env, victim: Victim, before: dict[str, int]) -> None:
    row, deployments = await snapshot(env.pool, victim.platform_id)
    assert row == victim.row  # every column, frame_origins and updated_at included
    assert deployments == victim.deployments
    assert await counts(env.pool) == before
    async with browser() as b:  # and school A still launches
        resp = await full_launch(b, env.stack.url, victim.lms, victim.client)
        assert resp.status == 303, await resp.text()


async def refusals(pool: asyncpg.Pool, platform_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT actor, platform_id, issuer, client_id, details FROM registration_audit "
        "WHERE action = 'registration.refused' AND platform_id = $1 ORDER BY id",
        platform_id,
    )


async def post_install(
    env: Env, platform: RegistrationPlatform, code: str, *, json_errors: bool = True
) -> aiohttp.ClientResponse:
    """What the attacker's browser posts: Attune's own signed form for his configuration."""
    form = env.sign({"oc": platform.openid_configuration_url, "rt": platform.token, "exp": 2**40})
    return await submit_install(
        env.session,
        env.url,
        form,
        placements=["course_navigation"],
        credential=("install_code", code),
        json_errors=json_errors,
    )


async def test_attack_with_the_shared_canvas_issuer_and_own_endpoints(
    env: Env, victim_lms: FakePlatform, attacker: RegistrationPlatform
) -> None:
    """The issue's reproduction: hosted Canvas's issuer, an Instructure auth endpoint, a JWKS
    on some Instructure host, the token endpoint on the attacker's server, product generic,
    and school A's client_id in the answer. Refused before anything is sent to the platform."""
    victim = await school_a(env, victim_lms)
    attacker.claims = {
        "issuer": CANVAS_ISSUER,
        "authorization_endpoint": DOCUMENTED["authorization_endpoint"],
        "jwks_uri": "https://attacker.instructure.com/api/lti/security/jwks",
        "token_endpoint": attacker.lms.token_url,
    }
    attacker.platform_claims = {"product_family_code": "generic-lms"}
    attacker.fixed_client_id = victim.client.client_id
    attacker.return_deployment = True
    code, _ = await env.code("school B")
    before = await counts(env.pool)

    page, text = await open_install_page(env.session, env.url, attacker, json_errors=True)
    assert page.status == 400, text
    assert json.loads(text)["error"]["code"] == "openid_configuration_issuer_mismatch"
    # The POST re-validates the configuration: the same refusal, nothing sent to the platform.
    resp = await post_install(env, attacker, code)
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"]["code"] == "openid_configuration_issuer_mismatch"
    assert attacker.registrations == []
    await assert_untouched(env, victim, before)


async def test_hosted_canvas_configuration_only_from_instructure(
    env: Env, victim_lms: FakePlatform, attacker: RegistrationPlatform
) -> None:
    """Everything about the configuration is as hosted Canvas documents it — except that it
    comes from the attacker's server, whose registration endpoint would answer school A's
    client_id (or a client_id nobody registered yet, whose frame origins he would then own:
    issue #15's residual risk). Canvas serves its shared issuer's configuration from the
    issuer's host only, so this is refused before the platform is asked anything."""
    victim = await school_a(env, victim_lms)
    attacker.claims = {"issuer": CANVAS_ISSUER, **DOCUMENTED}
    attacker.account_name = "School B"
    code, _ = await env.code("school B")
    before = await counts(env.pool)
    for client_id in (victim.client.client_id, "10000000099999"):
        attacker.fixed_client_id = client_id
        attacker.new_token()
        page, text = await open_install_page(env.session, env.url, attacker, json_errors=True)
        assert page.status == 400, text
        assert json.loads(text)["error"]["code"] == "openid_configuration_issuer_mismatch"
        resp = await post_install(env, attacker, code)
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (
            400,
            "openid_configuration_issuer_mismatch",
        ), body
    assert attacker.registrations == []
    await assert_untouched(env, victim, before)


async def test_attack_with_an_existing_client_id_is_refused_and_audited(
    env: Env, attacker: RegistrationPlatform
) -> None:
    """Two schools of one self-hosted Canvas (one issuer): school A registered it; school B's
    registration answers school A's client_id (a re-registration without the code an admin
    issues for it, or a forged answer)."""
    attacker.account_name = "School A"
    done, text = await _register(env, attacker, (await env.code("school A"))[0])
    assert done.status == 200, text
    victim_client = attacker.client
    platform_id = await env.pool.fetchval(
        "SELECT id FROM platforms WHERE issuer = $1 AND client_id = $2",
        attacker.issuer,
        victim_client.client_id,
    )
    async with browser() as b:  # the victim launches before the attack
        launched = await full_launch(b, env.stack.url, attacker.lms, victim_client)
        assert launched.status == 303, await launched.text()
    row, deployments = await snapshot(env.pool, platform_id)
    victim = Victim(attacker.lms, platform_id, victim_client, row, deployments)

    attacker.account_name = "School B"
    attacker.fixed_client_id = victim.client.client_id
    attacker.return_deployment = True
    attacker.new_token()
    code, code_id = await env.code("school B")
    before = await counts(env.pool)
    asked = len(attacker.registrations)

    resp, shown = await _register(env, attacker, code)
    assert resp.status == 409, shown
    assert "registration_collision" in shown and "text/html" in resp.headers["Content-Type"]
    # Nothing of school A's registration reaches the page.
    assert "School A" not in shown
    for d in victim.deployments:
        assert d["deployment_id"] not in shown
    assert len(attacker.registrations) == asked + 1  # the attacker's own platform was asked

    # The same attempt as JSON: the stable code, and no data of the other registration.
    attacker.new_token()
    resp = await post_install(env, attacker, code)
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "registration_collision", body
    assert set(body["error"]) <= {"code", "message", "hint", "request_id"}
    await assert_untouched(env, victim, before)

    # Audited, in a transaction of its own: which code, which (issuer, client_id), under the
    # platform it would have changed (so school A's trail shows the attempt).
    audited = await refusals(env.pool, victim.platform_id)
    assert len(audited) == 2
    for row in audited:
        details = json.loads(row["details"])
        assert (row["actor"], row["platform_id"]) == ("install-code", victim.platform_id)
        assert (row["issuer"], row["client_id"]) == (attacker.issuer, victim.client.client_id)
        assert details["install_code_id"] == code_id
        assert details["code"] == "registration_collision"
        assert details["openid_configuration"] == attacker.openid_configuration_url
    trail = await env.session.get(
        f"{env.url}/api/admin/audit?platform_id={victim.platform_id}",
        headers=await env.admin(),
    )
    actions = [a["action"] for a in (await trail.json())["audit"]]
    assert actions == ["registration.refused", "registration.refused", "registration.created"]

    # The code was not used up: school B registers its own client_id with it.
    attacker.fixed_client_id = None
    attacker.new_token()
    done, text = await _register(env, attacker, code)
    assert done.status == 200, text
    assert "School B" in text and "School A" not in text
    mine = await env.pool.fetchrow(
        "SELECT id, frame_origins FROM platforms WHERE client_id = $1", attacker.client.client_id
    )
    assert mine["id"] != victim.platform_id
    assert mine["frame_origins"] == [attacker.base_url]
    row, deployments = await snapshot(env.pool, victim.platform_id)
    assert (row, deployments) == (victim.row, victim.deployments)


async def _register(
    env: Env, platform: RegistrationPlatform, code: str, placements: list[str] | None = None
) -> tuple[aiohttp.ClientResponse, str]:
    return await install(
        env.session,
        env.url,
        platform,
        placements=placements if placements is not None else ["course_navigation"],
        credential=("install_code", code),
    )


async def _json_register(
    env: Env, platform: RegistrationPlatform, code: str
) -> tuple[int, dict[str, Any]]:
    done, text = await install(
        env.session,
        env.url,
        platform,
        placements=[],
        credential=("install_code", code),
        json_errors=True,
    )
    return done.status, json.loads(text) if done.status >= 400 else {}


async def test_reregistration_code_updates_its_platform_only(
    env: Env, moodle: RegistrationPlatform
) -> None:
    moodle.fixed_client_id = "moodle-update-1"
    done, text = await _register(env, moodle, (await env.code("first"))[0], [])
    assert done.status == 200, text
    platform_id = await env.pool.fetchval(
        "SELECT id FROM platforms WHERE issuer = $1", moodle.issuer
    )
    admin = await env.admin()

    async def issue(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = await env.session.post(
            f"{env.url}/api/admin/install-codes", json=body, headers=admin
        )
        return resp.status, await resp.json()

    status, issued = await issue({"platform_id": 10**12})
    assert (status, issued["error"]["code"]) == (404, "platform_not_found")
    status, issued = await issue({"platform_id": "1"})
    assert status == 400 and "platform_id" in issued["error"]["fields"]
    status, issued = await issue({"platform_id": platform_id, "label": "Moodle update"})
    assert status == 201 and issued["for_platform_id"] == platform_id, issued
    update_code = issued["install_code"]
    listed = await env.session.get(f"{env.url}/api/admin/install-codes", headers=admin)
    [listed_code] = [c for c in (await listed.json())["install_codes"] if c["id"] == issued["id"]]
    assert listed_code["for_platform_id"] == platform_id and "install_code" not in listed_code
    before = await snapshot(env.pool, platform_id)

    # Another LMS (another issuer) cannot use it: refused before anything is sent to it.
    async for other in registration_platform("moodle"):
        status, body = await _json_register(env, other, update_code)
        assert (status, body["error"]["code"]) == (409, "reregistration_mismatch"), body
        assert other.registrations == []
    # The same LMS answering another client_id (a new tool, not an update): refused.
    moodle.fixed_client_id = "moodle-other-client"
    moodle.new_token()
    status, body = await _json_register(env, moodle, update_code)
    assert (status, body["error"]["code"]) == (409, "reregistration_mismatch"), body
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM platforms WHERE client_id = 'moodle-other-client'"
        )
        == 0
    )
    # An ordinary install code cannot update it.
    moodle.fixed_client_id = "moodle-update-1"
    moodle.new_token()
    status, body = await _json_register(env, moodle, (await env.code("plain"))[0])
    assert (status, body["error"]["code"]) == (409, "registration_collision"), body
    assert await snapshot(env.pool, platform_id) == before
    assert (
        await env.pool.fetchval("SELECT used_at FROM install_codes WHERE id = $1", issued["id"])
        is None
    )
    assert [
        (r["platform_id"], json.loads(r["details"])["reason"])
        for r in await refusals(env.pool, platform_id)
    ] == [
        (platform_id, "reregistration_mismatch"),
        (platform_id, "reregistration_mismatch"),
        (platform_id, "collision"),
    ]

    # Moodle's "Update" with the re-registration code: updated, audited with what changed.
    moodle.new_token()
    done, text = await _register(env, moodle, update_code, ["deep_linking"])
    assert done.status == 200 and "registration updated" in text, text
    audit = await env.pool.fetchrow(
        "SELECT actor, action, details FROM registration_audit WHERE platform_id = $1 "
        "ORDER BY id DESC LIMIT 1",
        platform_id,
    )
    details = json.loads(audit["details"])
    assert (audit["actor"], audit["action"]) == ("install-code", "registration.updated")
    assert (details["install_code_id"], details["for_platform_id"]) == (issued["id"], platform_id)
    used = await env.pool.fetchrow(
        "SELECT used_at, platform_id FROM install_codes WHERE id = $1", issued["id"]
    )
    assert used["used_at"] is not None and used["platform_id"] == platform_id

    # A re-registration code for a registration deleted since: refused, changes nothing.
    status, issued = await issue({"platform_id": platform_id})
    assert status == 201, issued
    await env.session.delete(f"{env.url}/api/admin/platforms/{platform_id}", headers=admin)
    moodle.new_token()
    status, body = await _json_register(env, moodle, issued["install_code"])
    assert (status, body["error"]["code"]) == (409, "reregistration_mismatch"), body
    assert (
        await env.pool.fetchval("SELECT count(*) FROM platforms WHERE issuer = $1", moodle.issuer)
        == 0
    )


async def test_admin_token_reregistration_is_audited_with_its_changes(
    infra: Infra, pool: asyncpg.Pool, moodle: RegistrationPlatform
) -> None:
    """With ATTUNE_REGISTRATION_AUTH=admin_token the person registering is an operator: a
    re-registration updates, and the trail names the admin and every field it changed."""
    async for env in _env(infra, pool, registration_auth="admin_token"):
        name = f"installer-{secrets.token_hex(4)}"
        token = await create_token(env.pool, name)
        moodle.fixed_client_id = "moodle-admin-1"
        for moved in ("", "?moved=1"):  # the second registration names other endpoints
            moodle.claims = {
                "authorization_endpoint": moodle.lms.auth_url + moved,
                "token_endpoint": moodle.lms.token_url + moved,
            }
            moodle.new_token()
            done, text = await install(
                env.session, env.url, moodle, placements=[], credential=("admin_token", token)
            )
            assert done.status == 200, text
        rows = await env.pool.fetch(
            "SELECT actor, action, details FROM registration_audit WHERE issuer = $1 ORDER BY id",
            moodle.issuer,
        )
        assert [(r["actor"], r["action"]) for r in rows] == [
            (f"admin:{name}", "registration.created"),
            (f"admin:{name}", "registration.updated"),
        ]
        changed = json.loads(rows[1]["details"])["changed"]
        assert changed == {
            "auth_url": [moodle.lms.auth_url, moodle.lms.auth_url + "?moved=1"],
            "token_url": [moodle.lms.token_url, moodle.lms.token_url + "?moved=1"],
        }


async def test_platform_keys_without_a_kid_refused_at_dynamic_registration(
    env: Env, moodle: RegistrationPlatform
) -> None:
    """Launches pick the platform's key by the token's kid: a key set whose only RS256 key has
    no kid would register and then refuse every launch (jwt_kid_unknown)."""
    key = new_key()
    nameless = {k: v for k, v in key.public_jwk.items() if k != "kid"}
    moodle.lms.keys = [replace(key, public_jwk=nameless)]
    code, _ = await env.code("no-kid")
    status, body = await _json_register(env, moodle, code)
    assert (status, body["error"]["code"]) == (400, "platform_jwks_unusable"), body
    assert moodle.registrations == []
    assert not await env.pool.fetchval(
        "SELECT count(*) FROM platforms WHERE issuer = $1", moodle.issuer
    )
    # Control: the same key with its kid registers.
    moodle.lms.keys = [key]
    moodle.new_token()
    done, text = await _register(env, moodle, code, [])
    assert done.status == 200, text


async def test_platform_keys_under_2048_bits_refused_at_dynamic_registration(
    env: Env, moodle: RegistrationPlatform
) -> None:
    moodle.lms.keys = [weak_key(1024)]
    code, _ = await env.code("weak")
    status, body = await _json_register(env, moodle, code)
    assert (status, body["error"]["code"]) == (400, "platform_key_too_weak"), body
    assert moodle.registrations == []  # refused before Moodle created a tool
    assert (
        await env.pool.fetchval("SELECT count(*) FROM platforms WHERE issuer = $1", moodle.issuer)
        == 0
    )
    assert (
        await env.pool.fetchval(
            "SELECT used_at FROM install_codes WHERE code_hash = sha256($1::text::bytea)", code
        )
        is None
    )
    # Control: with a 2048-bit key next to the weak one it registers; the weak key is noted.
    moodle.lms.keys.append(new_key())
    moodle.new_token()
    done, text = await _register(env, moodle, code, [])
    assert done.status == 200, text
    details = await env.pool.fetchval(
        "SELECT details FROM registration_audit WHERE issuer = $1", moodle.issuer
    )
    assert json.loads(details)["weak_keys_ignored"] == [moodle.lms.keys[0].kid]
