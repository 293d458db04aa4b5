"""The development LMS emulator (devstack/emulator) on its own, in-process: its pages, its
dynamic registration endpoints and their rules (Canvas and Moodle), its OIDC authentication
endpoint (Moodle's single-use message hint, 60-second id_tokens, pending tools), the token
endpoint and paged NRPS, the deep-linking return verified with the tool's JWKS, state kept
across restarts, and how `attune dev` is told about it. Canvas as Instructure hosts it: the
issuer and auth domain on another origin than the school's pages, the login Canvas posts,
beta and test environments with keys of their own, the admin's edits applied after the
registration answer, Redirect URIs defaulting to target_link_uri, self-hosted regions. The
user's language, picked on the course page, in every launch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from jose import jwt

from attune.cli import build_parser
from devstack.embedded import free_port
from devstack.emulator.app import BANNER, create_emulator
from devstack.emulator.keys import SigningKey, new_key
from devstack.emulator.lti import TOOL_CONFIG
from devstack.supervisor import make_plan
from shared.lti import claims as C
from tests.fakes.platform import parse_autopost

TOOL = "http://localhost:9"  # never contacted, except the JWKS below


class Tool:
    """What the emulator needs from a tool: a JWKS URL serving the tool's key."""

    def __init__(self) -> None:
        self.key: SigningKey = new_key("tool-1")
        self.jwks_url = ""
        self.redirect_uris: list[str] | None = None  # in its Canvas JSON

    def sign(self, claims: dict[str, Any]) -> str:
        return self.key.sign(claims)


@pytest.fixture
async def tool() -> AsyncIterator[Tool]:
    t = Tool()
    app = web.Application()

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [t.key.public_jwk]})

    async def canvas_json(request: web.Request) -> web.Response:
        doc: dict[str, Any] = {
            "title": "Attune",
            "oidc_initiation_url": f"{TOOL}/lti/login",
            "target_link_uri": f"{TOOL}/app",
            "public_jwk_url": t.jwks_url,
            "scopes": ["https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"],
            "extensions": [
                {
                    "platform": "canvas.instructure.com",
                    "privacy_level": "name_only",
                    "settings": {"placements": [{"placement": "course_navigation"}]},
                }
            ],
        }
        if t.redirect_uris is not None:
            doc["redirect_uris"] = t.redirect_uris
        return web.json_response(doc)

    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/lti/config/canvas.json", canvas_json)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    t.jwks_url = f"http://127.0.0.1:{runner.addresses[0][1]}/.well-known/jwks.json"
    yield t
    await runner.cleanup()


Start = Callable[..., Any]


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def start(state: Path | None = tmp_path / "emulator.json") -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"  # the school's pages; the cloud: localhost:<port>
        app = create_emulator(
            base_url=base,
            tool_url=TOOL,
            install_codes={"canvas": "attune_ic_canvas", "moodle": "attune_ic_moodle"},
            state_path=state,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return base

    yield start
    for runner in runners:
        await runner.cleanup()


def registration_body(tool: Tool, flavour: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"type": "LtiResourceLinkRequest"}]
    if flavour == "canvas":
        messages[0]["https://canvas.instructure.com/lti/placements"] = ["course_navigation"]
        messages.append(
            {
                "type": "LtiDeepLinkingRequest",
                "https://canvas.instructure.com/lti/placements": ["editor_button"],
            }
        )
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": f"{TOOL}/lti/login",
        "redirect_uris": [f"{TOOL}/lti/launch"],
        "client_name": "Attune",
        "jwks_uri": tool.jwks_url,
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
        TOOL_CONFIG: {
            "domain": "localhost:9",
            "target_link_uri": f"{TOOL}/app",
            "claims": ["sub", "name"],
            "messages": messages,
            "https://canvas.instructure.com/lti/privacy_level": "name_only",
        },
    }


async def register(
    http: aiohttp.ClientSession, base: str, flavour: str, tool: Tool
) -> tuple[dict[str, Any], str]:
    """What the tool does when the admin page opens it: returns (answer, config URL)."""
    async with http.get(
        f"{base}/{flavour}/admin/register", params={"url": f"{TOOL}/lti/register"}
    ) as resp:
        page = await resp.text()
    assert resp.status == 200 and BANNER in page
    src = page.split('id="registration"', 1)[1].split('src="', 1)[1].split('"', 1)[0]
    query = {k: v[0] for k, v in parse_qs(urlsplit(src.replace("&amp;", "&")).query).items()}
    bearer = {"Authorization": f"Bearer {query['registration_token']}"}
    bare = query["openid_configuration"].split("?", 1)[0]
    async with http.get(bare) as resp:
        assert resp.status == 401
    async with http.get(query["openid_configuration"], headers=bearer) as resp:
        config = await resp.json()
    site = cloud_of(base) if flavour == "canvas" else base
    assert config["issuer"] == f"{site}/{flavour}"
    assert urlsplit(query["openid_configuration"]).netloc == urlsplit(config["issuer"]).netloc
    assert config["registration_endpoint"].startswith(f"{base}/{flavour}/")
    async with http.post(
        config["registration_endpoint"], json=registration_body(tool, flavour), headers=bearer
    ) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
    # The registration token is single-use.
    async with http.post(
        config["registration_endpoint"], json=registration_body(tool, flavour), headers=bearer
    ) as resp:
        assert resp.status == 401
    return answer, config["authorization_endpoint"]


def cloud_of(base: str) -> str:
    """The Instructure side of the emulated Canvas: the same port, named localhost."""
    return base.replace("127.0.0.1", "localhost")


async def launch(
    http: aiohttp.ClientSession, base: str, flavour: str, user: str, **query: str
) -> tuple[dict[str, str], str]:
    """Open the course page as ``user``; returns the login parameters and the page. Canvas's
    frame loads the school's launch page, which posts the login; Moodle's opens the login."""
    async with http.get(f"{base}/{flavour}/course", params={"user": user, **query}) as resp:
        page = await resp.text()
    assert BANNER in page
    src = page.split('id="tool"', 1)[1].split('src="', 1)[1].split('"', 1)[0]
    src = src.replace("&amp;", "&")
    if flavour == "canvas":
        assert src.startswith("/canvas/launch?"), src
        async with http.get(base + src) as resp:
            assert resp.headers["Referrer-Policy"] != "no-referrer"  # the post carries Origin
            action, fields = parse_autopost(await resp.text())
        assert action == f"{TOOL}/lti/login"
        return fields, page
    return {k: v[0] for k, v in parse_qs(urlsplit(src).query).items()}, page


async def authenticate(
    http: aiohttp.ClientSession, auth_url: str, login: dict[str, str]
) -> aiohttp.ClientResponse:
    params = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": login["client_id"],
        "redirect_uri": f"{TOOL}/lti/launch",
        "login_hint": login["login_hint"],
        "lti_message_hint": login["lti_message_hint"],
        "state": "s",
        "nonce": uuid.uuid4().hex,
    }
    resp = await http.post(auth_url, data=params)
    await resp.read()
    return resp


async def test_pages_are_marked_and_list_both_lms(emulator: Start) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/canvas/admin", "/moodle/admin", "/canvas/course", "/moodle/course"):
            async with http.get(base + path) as resp:
                page = await resp.text()
            assert resp.status == 200 and BANNER in page, path
        async with http.get(f"{base}/moodle/admin") as resp:
            page = await resp.text()
        assert "attune_ic_moodle" in page and "Add LTI Advantage" in page
        async with http.get(f"{base}/canvas/course") as resp:
            assert "No tool is registered yet" in await resp.text()
        async with http.get(f"{base}/canvas/admin/register", params={"url": "javascript:x"}) as r:
            assert r.status == 400


async def test_canvas_registration_rules_and_launch(emulator: Start, tool: Tool) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/canvas/admin/register", params={"url": TOOL}) as resp:
            page = await resp.text()
        token = parse_qs(urlsplit(page.split('src="')[1].split('"')[0].replace("&amp;", "&")).query)
        bad = registration_body(tool, "canvas")
        bad[TOOL_CONFIG]["messages"][0]["https://canvas.instructure.com/lti/placements"] = ["x"]
        async with http.post(
            f"{base}/canvas/api/lti/registrations",
            json=bad,
            headers={"Authorization": f"Bearer {token['registration_token'][0]}"},
        ) as resp:
            assert resp.status == 422 and "placement 'x'" in str(await resp.json())
        answer, auth_url = await register(http, base, "canvas", tool)
        assert answer["client_id"].isdigit()
        assert answer["registration_client_uri"].startswith(f"{base}/canvas/api/lti/")
        assert auth_url == f"{cloud_of(base)}/sso/api/lti/authorize_redirect"
        login, page = await launch(http, base, "canvas", "student-a")
        # What Canvas posts (LtiAdvantageAdapter#login_request): deployment_id, not
        # lti_deployment_id; Platform Storage through the forwarding frame.
        assert login["iss"] == f"{cloud_of(base)}/canvas"
        assert login["lti_storage_target"] == "post_message_forwarding"
        assert (login["canvas_region"], login["canvas_environment"]) == ("us-east-1", "prod")
        assert login["deployment_id"] and "lti_deployment_id" not in login
        assert 'name="post_message_forwarding"' in page
        assert f"{cloud_of(base)}/sso/post_message_forwarding" in page
        resp = await authenticate(http, auth_url, login)
        action, fields = parse_autopost(await resp.text())
        assert action == f"{TOOL}/lti/launch"
        async with http.get(f"{cloud_of(base)}/sso/api/lti/security/jwks") as r:
            keys = (await r.json())["keys"]
        claims = jwt.decode(
            fields["id_token"], keys[0], algorithms=["RS256"], audience=login["client_id"]
        )
        assert claims["sub"] == "student-a" and claims["exp"] - claims["iat"] == 3600
        assert claims["iss"] == f"{cloud_of(base)}/canvas"
        assert claims[C.ROLES] == ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]
        assert claims[C.NRPS]["context_memberships_url"].startswith(f"{base}/canvas/")
        # Canvas builds the return URL on the host of the page the launch came from.
        assert claims[C.LAUNCH_PRESENTATION]["return_url"].startswith(f"{base}/canvas/")
        # Canvas's hint can be used again (a page reload).
        assert (await authenticate(http, auth_url, login)).status == 200


async def test_moodle_pending_single_use_hint_and_short_tokens(emulator: Start, tool: Tool) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        answer, auth_url = await register(http, base, "moodle", tool)
        deployment = answer[TOOL_CONFIG]["deployment_id"]
        async with http.get(f"{base}/moodle/course") as resp:
            assert "pending" in await resp.text()
        async with http.post(
            f"{base}/moodle/admin/activate",
            data={"client_id": answer["client_id"]},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
        login, _ = await launch(http, base, "moodle", "teacher-1")
        assert login["lti_deployment_id"] == deployment and "lti_storage_target" not in login
        first = await authenticate(http, auth_url, login)
        _, fields = parse_autopost(await first.text())
        claims = jwt.get_unverified_claims(fields["id_token"])
        assert claims["exp"] - claims["iat"] == 60
        assert "Instructor" in claims[C.ROLES][0]
        again = await authenticate(http, auth_url, login)
        assert again.status == 400 and "lti_message_hint" in await again.text()


async def test_token_nrps_and_deep_linking(emulator: Start, tool: Tool) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        answer, auth_url = await register(http, base, "canvas", tool)
        client_id = answer["client_id"]
        token_url = f"{cloud_of(base)}/sso/login/oauth2/token"
        now = int(time.time())
        assertion = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now,
                     "exp": now + 300, "jti": "j-1"}  # fmt: skip
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": tool.sign(assertion),
            "scope": "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
        }
        async with http.post(token_url, data=form) as resp:
            granted = await resp.json()
            assert resp.status == 200, granted
        async with http.post(token_url, data=form) as resp:
            assert resp.status == 401  # jti replayed
        forged = dict(form, client_assertion=new_key("tool-1").sign({**assertion, "jti": "j-2"}))
        async with http.post(token_url, data=forged) as resp:
            assert resp.status == 401
        login, _ = await launch(http, base, "canvas", "teacher-1")
        resp = await authenticate(http, auth_url, login)
        claims = jwt.get_unverified_claims(parse_autopost(await resp.text())[1]["id_token"])
        url: str | None = claims[C.NRPS]["context_memberships_url"]
        headers = {"Authorization": f"Bearer {granted['access_token']}"}
        members: list[str] = []
        pages = 0
        while url:
            async with http.get(url, headers=headers) as resp:
                assert resp.status == 200
                members += [m["user_id"] for m in (await resp.json())["members"]]
                link = resp.headers.get("Link", "")
            url = link.split("<", 1)[1].split(">", 1)[0] if link else None
            pages += 1
        assert pages == 2 and members == ["teacher-1", "student-a", "student-b", "student-c"]
        async with http.get(claims[C.NRPS]["context_memberships_url"]) as resp:
            assert resp.status == 401

        # Deep linking: the teacher's request, the tool's signed response.
        login, page = await launch(http, base, "canvas", "teacher-1", message="deep_linking")
        resp = await authenticate(http, auth_url, login)
        dl = jwt.get_unverified_claims(parse_autopost(await resp.text())[1]["id_token"])
        settings = dl[C.DEEP_LINKING_SETTINGS]
        assert dl[C.MESSAGE_TYPE] == "LtiDeepLinkingRequest"
        item = {"type": "ltiResourceLink", "title": "Week 3", "url": f"{TOOL}/app",
                "custom": {"checkin_id": "7"}}  # fmt: skip
        response = {
            "iss": client_id, "aud": f"{cloud_of(base)}/canvas", "iat": now, "exp": now + 300,
            "nonce": uuid.uuid4().hex, C.MESSAGE_TYPE: "LtiDeepLinkingResponse",
            C.VERSION: "1.3.0", C.DEPLOYMENT_ID: dl[C.DEPLOYMENT_ID],
            "https://purl.imsglobal.org/spec/lti-dl/claim/content_items": [item],
        }  # fmt: skip
        async with http.post(
            settings["deep_link_return_url"], data={"JWT": new_key("tool-1").sign(response)}
        ) as resp:
            assert 'id="dl-error"' in await resp.text()
        async with http.post(
            settings["deep_link_return_url"], data={"JWT": tool.sign(response)}
        ) as resp:
            assert "Week 3" in await resp.text()
        # The link is on the course page and launches with its custom parameters.
        login, page = await launch(http, base, "canvas", "student-b", link="0")
        assert "Week 3" in page
        resp = await authenticate(http, auth_url, login)
        claims = jwt.get_unverified_claims(parse_autopost(await resp.text())[1]["id_token"])
        assert claims[C.CUSTOM] == {"checkin_id": "7"}


async def test_registrations_and_keys_survive_a_restart(
    emulator: Start, tool: Tool, tmp_path: Path
) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        answer, _ = await register(http, base, "canvas", tool)
        async with http.get(f"{cloud_of(base)}/sso/api/lti/security/jwks") as resp:
            kids = [k["kid"] for k in (await resp.json())["keys"]]
        again = await emulator()
        async with http.get(f"{cloud_of(again)}/sso/api/lti/security/jwks") as resp:
            assert [k["kid"] for k in (await resp.json())["keys"]] == kids
        async with http.get(f"{again}/canvas/admin") as resp:
            assert answer["client_id"] in await resp.text()
    assert (tmp_path / "emulator.json").stat().st_mode & 0o777 == 0o600


async def test_canvas_json_url_and_moodle_manual_configuration(emulator: Start, tool: Tool) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        json_url = tool.jwks_url.replace("/.well-known/jwks.json", "/lti/config/canvas.json")
        async with http.post(
            f"{base}/canvas/admin/developer-key",
            data={"json_url": json_url, "redirect_uris": f"{TOOL}/lti/launch"},
        ) as resp:
            page = await resp.text()
        assert resp.status == 200 and "Tool configuration details: Attune" in page
        client_id = page.split('data-field="Client ID">', 1)[1].split("<", 1)[0]
        assert client_id.isdigit() and "/api/admin/platforms" in page
        login, _ = await launch(http, base, "canvas", "teacher-1")
        assert login["client_id"] == client_id and login["target_link_uri"] == f"{TOOL}/app"

        async with http.post(
            f"{base}/moodle/admin/manual",
            data={
                "name": "Attune",
                "target_link_uri": f"{TOOL}/app",
                "jwks_uri": tool.jwks_url,
                "initiate_login_uri": f"{TOOL}/lti/login",
                "redirect_uris": f"{TOOL}/lti/launch\nhttp://localhost:10/lti/launch",
            },
        ) as resp:
            page = await resp.text()
        assert 'data-field="Deployment ID"' in page and f"{base}/moodle" in page
        login, _ = await launch(http, base, "moodle", "student-c")
        assert login["iss"] == f"{base}/moodle"
        async with http.post(f"{base}/moodle/admin/manual", data={"jwks_uri": "x"}) as resp:
            assert resp.status == 400


async def test_canvas_pages_and_instructure_side_are_different_origins(
    emulator: Start, tool: Tool
) -> None:
    """Hosted Canvas: the OpenID configuration on the issuer's host, the auth domain's
    endpoints there too, every page (and the registration endpoint) on the school's host."""
    base = await emulator()
    cloud = cloud_of(base)
    async with aiohttp.ClientSession() as http:
        await register(http, base, "canvas", tool)
        for path in ("/sso/api/lti/security/jwks", "/sso/post_message_forwarding"):
            async with http.get(base + path) as resp:
                assert resp.status == 404, path  # not on the school's host
            async with http.get(cloud + path) as resp:
                assert resp.status == 200, path
        async with http.get(f"{cloud}/sso/post_message_forwarding") as resp:
            forwarding = await resp.text()
        assert json.dumps(base) in forwarding  # forwards to the Canvas page (PARENT_ORIGIN)
        async with http.get(f"{base}/canvas/api/lti/security/openid-configuration") as resp:
            assert resp.status == 404


async def test_canvas_json_url_redirect_uris_default_to_the_target_link_uri(
    emulator: Start, tool: Tool
) -> None:
    """Lti::CreateRegistrationService: configuration_params[:redirect_uris] ||
    [configuration_params[:target_link_uri]] — a JSON without them leaves the developer key
    with the app URL, and the auth endpoint refuses the tool's launch URL."""
    base = await emulator()
    json_url = tool.jwks_url.replace("/.well-known/jwks.json", "/lti/config/canvas.json")
    auth_url = f"{cloud_of(base)}/sso/api/lti/authorize_redirect"
    async with aiohttp.ClientSession() as http:
        for given, ok in ((None, False), ([f"{TOOL}/lti/launch"], True)):
            tool.redirect_uris = given
            async with http.post(
                f"{base}/canvas/admin/developer-key", data={"json_url": json_url}
            ) as resp:
                assert resp.status == 200
            login, _ = await launch(http, base, "canvas", "teacher-1")
            resp = await authenticate(http, auth_url, login)
            if ok:
                assert resp.status == 200
            else:
                assert (resp.status, await resp.text()) == (400, "invalid redirect_uri")


async def test_canvas_admin_edits_apply_after_the_registration_answer(
    emulator: Start, tool: Tool
) -> None:
    """Canvas answers the registration with what was asked; the admin's edits (no roster,
    privacy anonymous) come afterwards and show in launches and tokens only — and the
    registration token cannot read the registration back."""
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        answer, auth_url = await register(http, base, "canvas", tool)
        nrps = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
        assert answer["scope"] == nrps
        tool_config = answer[TOOL_CONFIG]
        assert tool_config["https://canvas.instructure.com/lti/privacy_level"] == "name_only"
        async with http.get(answer["registration_client_uri"]) as resp:
            assert resp.status == 401
        async with http.post(
            f"{base}/canvas/admin/overlay",
            data={"client_id": answer["client_id"], "privacy_level": "anonymous",
                  "placement": "course_navigation"},
            allow_redirects=False,
        ) as resp:  # fmt: skip
            assert resp.status == 303
        login, page = await launch(http, base, "canvas", "teacher-1")
        assert "Add Attune content" not in page  # no deep-linking placement left
        resp = await authenticate(http, auth_url, login)
        claims = jwt.get_unverified_claims(parse_autopost(await resp.text())[1]["id_token"])
        assert C.NRPS not in claims
        assert not {"name", "given_name", "family_name", "email"} & set(claims)
        token_url = f"{cloud_of(base)}/sso/login/oauth2/token"
        now = int(time.time())
        cid = answer["client_id"]
        assertion = {"iss": cid, "sub": cid, "aud": token_url, "iat": now, "exp": now + 300,
                     "jti": uuid.uuid4().hex}  # fmt: skip
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": tool.sign(assertion),
            "scope": nrps,
        }
        async with http.post(token_url, data=form) as resp:
            assert (resp.status, (await resp.json())["error"]) == (400, "invalid_scope")


async def test_canvas_beta_and_test_environments(emulator: Start, tool: Tool) -> None:
    """Beta and test: the same client_id and deployment under their own issuer, auth domain
    and keys (Canvas's docs: the iss per environment; keys per environment)."""
    base = await emulator()
    cloud = cloud_of(base)
    async with aiohttp.ClientSession() as http:
        answer, prod_auth = await register(http, base, "canvas", tool)
        prod, _ = await launch(http, base, "canvas", "student-a")
        for env in ("beta", "test"):
            login, page = await launch(http, base, "canvas", "student-a", env=env)
            assert login["iss"] == f"{cloud}/canvas-{env}"
            assert login["canvas_environment"] == env
            assert (login["client_id"], login["deployment_id"]) == (
                answer["client_id"],
                prod["deployment_id"],
            )
            assert f"{cloud}/sso-{env}/post_message_forwarding" in page
            # Only that environment's auth domain authorizes it.
            wrong = await authenticate(http, prod_auth, login)
            assert wrong.status == 400
            resp = await authenticate(http, f"{cloud}/sso-{env}/api/lti/authorize_redirect", login)
            token = parse_autopost(await resp.text())[1]["id_token"]
            async with http.get(f"{cloud}/sso-{env}/api/lti/security/jwks") as r:
                env_keys = (await r.json())["keys"]
            async with http.get(f"{cloud}/sso/api/lti/security/jwks") as r:
                prod_keys = (await r.json())["keys"]
            claims = jwt.decode(token, env_keys[0], algorithms=["RS256"],
                                audience=answer["client_id"])  # fmt: skip
            assert claims["iss"] == f"{cloud}/canvas-{env}"
            assert {k["kid"] for k in env_keys}.isdisjoint(k["kid"] for k in prod_keys)


async def test_self_hosted_canvas_sends_region_not_configured(emulator: Start, tool: Tool) -> None:
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        await register(http, base, "canvas", tool)
        async with http.post(
            f"{base}/canvas/admin/settings", data={"hosting": "self_hosted"}
        ) as resp:
            assert resp.status == 200
        login, _ = await launch(http, base, "canvas", "student-b")
        assert login["canvas_region"] == "not_configured"


async def test_the_users_language_reaches_the_id_token(emulator: Start, tool: Tool) -> None:
    """The course page's language picker (the LMS user's language, in that LMS's spelling)
    reaches the id_token's launch_presentation.locale: Canvas's through its own launch page on
    the school's host (and the top-level locale claim), Moodle's through the login URL. A value
    the LMS does not have is English."""
    base = await emulator()
    async with aiohttp.ClientSession() as http:
        _, canvas_auth = await register(http, base, "canvas", tool)
        answer, moodle_auth = await register(http, base, "moodle", tool)
        async with http.post(
            f"{base}/moodle/admin/activate", data={"client_id": answer["client_id"]}
        ) as resp:
            assert resp.status == 200
        for flavour, auth_url, lang, locale in (
            ("canvas", canvas_auth, "pt-BR", "pt-BR"),
            ("canvas", canvas_auth, "zh-Hant", "zh-Hant"),
            ("canvas", canvas_auth, "pt_br", "en"),  # Moodle's spelling: not Canvas's
            ("moodle", moodle_auth, "pt_br", "pt_br"),
            ("moodle", moodle_auth, "<x>", "en"),
        ):
            login, page = await launch(http, base, flavour, "teacher-1", lang=lang)
            picked = f'value="{locale}" lang="{locale.replace("_", "-")}" selected>'
            assert picked in page, (flavour, lang)  # the picker shows the user's language
            resp = await authenticate(http, auth_url, login)
            _, fields = parse_autopost(await resp.text())
            claims = jwt.get_unverified_claims(fields["id_token"])
            presentation = claims[C.LAUNCH_PRESENTATION]
            assert presentation["locale"] == locale, (flavour, lang, presentation)
            if flavour == "canvas":
                assert claims["locale"] == locale
                assert presentation["return_url"].startswith(f"{base}/canvas/")
            else:
                assert "locale" not in claims


def test_dev_refuses_a_taken_emulator_port(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "attune.cli", "dev", "--port", str(port),
             "--emulator-port", str(busy), "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"port {busy} is in use; pass --emulator-port or --no-emulator" in result.stderr


def test_dev_flags_and_public_url(tmp_path: Path) -> None:
    args = build_parser().parse_args(["dev", "--port", "8100", "--emulator-port", "9100"])
    assert args.emulator_port == 9100 and args.no_emulator is False
    assert build_parser().parse_args(["dev", "--no-emulator"]).no_emulator is True
    plan = make_plan({}, tmp_path, gateway_port=8100)  # with or without the emulator
    assert plan.env["ATTUNE_PUBLIC_URL"] == "http://localhost:8100"
    assert plan.env["ATTUNE_HOST"] == "127.0.0.1"
    assert "ATTUNE_DEV_CANVAS_CLOUD" not in plan.env
    # The emulator's hosted-Canvas cloud reaches the services (a development setting).
    cloud = "http://localhost:9100"
    plan = make_plan({}, tmp_path, gateway_port=8100, canvas_cloud=cloud)
    assert plan.env["ATTUNE_DEV_CANVAS_CLOUD"] == cloud
    strict = {"ATTUNE_ALLOW_INSECURE_URLS": "false"}
    plan = make_plan(strict, tmp_path, gateway_port=8100, canvas_cloud=cloud)
    assert "ATTUNE_DEV_CANVAS_CLOUD" not in plan.env
