"""Deep linking end to end: a teacher's LtiDeepLinkingRequest, the signed
LtiDeepLinkingResponse verified by the platform against the tool's JWKS, then a launch of the
created link opening that check-in."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.jwks.app import JWKS_PATH
from services.jwks.app import create_app as jwks_app
from shared.jose import peek
from shared.lti import claims as C
from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform, parse_autopost
from tests.integration.test_checkins import INSTRUCTOR, LEARNER, Api
from tests.lti_support import LtiStack, _serve, browser, full_launch, platform_server, start_stack

pytestmark = pytest.mark.integration

DL_REQUEST = "LtiDeepLinkingRequest"


@pytest.fixture
async def tool_jwks(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The real jwks service (a fresh key store), serving the tool's public keys."""
    await pool.execute("TRUNCATE tool_keys")
    runner, url = await _serve(jwks_app(infra.settings()))
    try:
        yield f"{url}{JWKS_PATH}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool, tool_jwks: str) -> AsyncIterator[LtiStack]:
    s, exits = await start_stack(infra, pool)
    try:
        yield s
    finally:
        await exits.aclose()


@pytest.fixture
async def canvas(tool_jwks: str) -> AsyncIterator[FakePlatform]:
    async for p in platform_server("canvas"):
        p.tool_jwks_url = tool_jwks
        yield p


@pytest.fixture
async def course(stack: LtiStack, canvas: FakePlatform) -> Client:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    return client


async def launch(
    stack: LtiStack,
    platform: FakePlatform,
    client: Client,
    sub: str,
    *,
    teacher: bool,
    message_type: str | None = None,
    custom: dict[str, str] | None = None,
) -> str:
    hint: dict[str, Any] = {"roles": [INSTRUCTOR if teacher else LEARNER]}
    if message_type:
        hint["message_type"] = message_type
    if custom is not None:
        hint["custom"] = custom
    async with browser() as b:
        resp = await full_launch(
            b, stack.url, platform, client, login_hint=sub, lti_message_hint=json.dumps(hint)
        )
        assert resp.status == 303, await resp.text()
        return resp.headers["Location"].split("#lt=", 1)[1]


async def choose(stack: LtiStack, token: str | None, checkin_id: Any) -> tuple[int, str, Any]:
    fields = {"checkin_id": str(checkin_id)}
    if token is not None:
        fields["lt"] = token
    async with browser() as b:
        resp = await b.post(
            f"{stack.url}/app/deep-link", data=fields, headers={"Accept": "text/html"}
        )
        return resp.status, await resp.text(), resp.headers


async def test_deep_linking_round_trip_and_launch_of_the_link(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    dl_token = await launch(stack, canvas, course, "t-1", teacher=True, message_type=DL_REQUEST)
    teacher = Api(stack.url, dl_token)
    status, me = await teacher.call("GET", "/me")
    assert status == 200 and me["deep_linking"] is True and me["checkin_id"] is None
    status, created = await teacher.call("POST", "/checkins", {"question": "How is week 3?"})
    assert status == 201, created

    # The app's page posts the choice to our server, which answers with the return form.
    status, page, headers = await choose(stack, dl_token, created["id"])
    assert status == 200, page
    action, fields = parse_autopost(page)
    assert action == f"{canvas.base_url}/deep_linking_return"
    assert set(fields) == {"JWT"}
    assert '<script src="/static/autosubmit.js"></script>' in page
    assert "<script>" not in page  # no inline script
    csp = headers["Content-Security-Policy"]
    assert f"form-action {canvas.base_url}" in csp and "script-src 'self'" in csp
    assert headers["Cache-Control"] == "no-store"
    async with browser() as b:
        js = await b.get(f"{stack.url}/static/autosubmit.js")
        assert js.status == 200 and "submit()" in await js.text()

    # The browser submits it; the platform verifies it against the tool's JWKS.
    async with browser() as b:
        resp = await b.post(action, data=fields)
        assert resp.status == 200, await resp.text()
    assert canvas.deep_link_errors == []
    [claims] = canvas.deep_link_responses
    header, _ = peek(fields["JWT"])
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == course.client_id
    assert claims["aud"] == canvas.issuer
    assert isinstance(claims["nonce"], str) and len(claims["nonce"]) >= 16
    assert claims[C.DEPLOYMENT_ID] == course.deployment_id
    assert claims[C.MESSAGE_TYPE] == "LtiDeepLinkingResponse"
    assert claims[C.VERSION] == "1.3.0"
    assert claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"] == "opaque-data"
    now = time.time()
    assert claims["iat"] <= now + 5 and now < claims["exp"] <= claims["iat"] + 300
    [item] = claims["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
    assert item == {
        "type": "ltiResourceLink",
        "title": "How is week 3?",
        "url": f"{stack.url}/app",
        "custom": {"checkin_id": str(created["id"])},
    }

    # A second response has a fresh nonce.
    _, page2, _ = await choose(stack, dl_token, created["id"])
    async with browser() as b:
        await b.post(action, data=parse_autopost(page2)[1])
    assert canvas.deep_link_responses[1]["nonce"] != claims["nonce"]

    # Later, the LMS launches the created link with its custom parameter.
    link_teacher = Api(
        stack.url, await launch(stack, canvas, course, "t-1", teacher=True, custom=item["custom"])
    )
    status, me = await link_teacher.call("GET", "/me")
    assert status == 200 and me["checkin_id"] == created["id"] and me["deep_linking"] is False
    status, result = await link_teacher.call("GET", f"/checkins/{me['checkin_id']}")
    assert status == 200 and result["question"] == "How is week 3?"
    student = Api(
        stack.url, await launch(stack, canvas, course, "s-1", teacher=False, custom=item["custom"])
    )
    status, me = await student.call("GET", "/me")
    assert me["checkin_id"] == created["id"]
    status, shown = await student.call("GET", f"/checkins/{created['id']}")
    assert status == 200 and shown["my_answer"] is None


async def test_deep_link_response_refusals(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    dl_token = await launch(stack, canvas, course, "t-1", teacher=True, message_type=DL_REQUEST)
    status, created = await Api(stack.url, dl_token).call("POST", "/checkins", {"question": "Q"})
    assert status == 201
    # Without a launch token, with a garbled one.
    status, body, _ = await choose(stack, None, created["id"])
    assert status == 401 and "launch_token_missing" in body
    status, body, _ = await choose(stack, dl_token[:-4] + "AAAA", created["id"])
    assert status == 401 and "launch_token_invalid" in body
    # A resource-link launch cannot answer a deep-linking request.
    rl_token = await launch(stack, canvas, course, "t-1", teacher=True)
    status, body, _ = await choose(stack, rl_token, created["id"])
    assert status == 403 and "deep_linking_not_requested" in body
    # A learner's deep-linking launch cannot either.
    learner_dl = await launch(stack, canvas, course, "s-1", teacher=False, message_type=DL_REQUEST)
    status, me = await Api(stack.url, learner_dl).call("GET", "/me")
    assert me["deep_linking"] is False
    status, body, _ = await choose(stack, learner_dl, created["id"])
    assert status == 403 and "teacher_only" in body
    # Only a check-in of the caller's own course.
    for bad in (created["id"] + 1000, "abc", ""):
        status, body, _ = await choose(stack, dl_token, bad)
        assert status == 404 and "checkin_not_found" in body
    assert canvas.deep_link_responses == []


async def test_custom_checkin_id_is_validated(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    token = await launch(
        stack, canvas, course, "t-1", teacher=True, custom={"checkin_id": "1; DROP"}
    )
    status, me = await Api(stack.url, token).call("GET", "/me")
    assert status == 200 and me["checkin_id"] is None
