"""The platform side of LTI Advantage, shared by the emulator and the test fakes:

- ``verify_tool_jwt``: a JWT the tool signed (a client-credentials assertion, a deep-linking
  response), verified with the tool's JWKS fetched from its URL;
- ``grant_token``: the token endpoint (``client_credentials`` with a ``private_key_jwt``
  assertion: iss = sub = client_id, aud = the token URL, a fresh ``jti``);
- ``membership_page``: one NRPS page with ``Link: <...>; rel="next"``;
- ``check_deep_link_response``: what a platform checks in an ``LtiDeepLinkingResponse``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from devstack.emulator.lti import NRPS as NRPS_SCOPE
from devstack.emulator.lti import Client
from shared.jose import TokenShapeError, peek, prepare_key, verify_rs256
from shared.lti import claims as C

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MEMBERSHIP_MEDIA = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
DL_RESPONSE = "LtiDeepLinkingResponse"


class PlatformRefusal(Exception):
    """The platform refuses a request: ``status`` and a short ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def fetch_jwks(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url) as resp,
    ):
        if resp.status != 200:
            raise PlatformRefusal(401, f"tool JWKS answered {resp.status}")
        doc = await resp.json(content_type=None)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise PlatformRefusal(401, "tool JWKS is malformed")
    return doc


async def verify_tool_jwt(token: str, jwks_url: str, *, audience: str) -> dict[str, Any]:
    """The claims of ``token`` once verified: RS256 with the tool key its ``kid`` names, the
    audience, and an expiry in the future but at most an hour away."""
    if not jwks_url:
        raise PlatformRefusal(401, "no tool JWKS URL known")
    try:
        header, _ = peek(token)
    except TokenShapeError:
        raise PlatformRefusal(401, "not a JWT") from None
    if header.get("alg") != "RS256":
        raise PlatformRefusal(401, "alg must be RS256")
    keys = (await fetch_jwks(jwks_url))["keys"]
    jwk_data = next((k for k in keys if k.get("kid") == header.get("kid")), None)
    if jwk_data is None:
        raise PlatformRefusal(401, f"unknown kid {header.get('kid')}")
    try:
        claims = verify_rs256(token, prepare_key(jwk_data))
    except ValueError as exc:  # SignatureError, TokenShapeError, UnusableJwk
        raise PlatformRefusal(401, f"signature: {exc}") from None
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise PlatformRefusal(401, "aud")
    exp, now = claims.get("exp"), time.time()
    if not isinstance(exp, int) or not now < exp <= now + 3600:
        raise PlatformRefusal(401, "exp")
    return claims


async def grant_token(
    form: Mapping[str, str],
    *,
    clients: Mapping[str, Client],
    token_url: str,
    jwks_url_of: Mapping[str, str],
    used_jtis: set[str],
    scopes: frozenset[str] = frozenset({NRPS_SCOPE}),
) -> tuple[str, dict[str, Any]]:
    """Check a client-credentials request; returns (client_id, token response)."""
    if form.get("grant_type") != "client_credentials":
        raise PlatformRefusal(400, "unsupported_grant_type")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise PlatformRefusal(400, "invalid_request: client_assertion_type")
    assertion = form.get("client_assertion", "")
    try:
        client_id = str(peek(assertion)[1].get("iss", ""))
    except TokenShapeError:
        raise PlatformRefusal(400, "invalid_request: client_assertion") from None
    if client_id not in clients:
        raise PlatformRefusal(401, "invalid_client")
    claims = await verify_tool_jwt(assertion, jwks_url_of.get(client_id, ""), audience=token_url)
    if claims.get("sub") != client_id:
        raise PlatformRefusal(401, "invalid_client: sub")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or jti in used_jtis:
        raise PlatformRefusal(401, "invalid_client: jti replayed or missing")
    used_jtis.add(jti)
    asked = form.get("scope", "").split()
    if not asked or not set(asked) <= scopes:
        raise PlatformRefusal(400, "invalid_scope")
    return client_id, {
        "access_token": secrets.token_urlsafe(24),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": " ".join(asked),
    }


def membership_page(
    members: list[dict[str, Any]],
    *,
    url: str,
    context: dict[str, str],
    page: int,
    page_size: int,
) -> tuple[dict[str, Any], str | None]:
    """One page of an NRPS membership container, and the next page's URL (None at the end)."""
    page = max(page, 1)
    start = (page - 1) * page_size
    chunk = members[start : start + page_size]
    more = start + page_size < len(members)
    return {"id": url, "context": context, "members": chunk}, (
        f"{url}?page={page + 1}" if more else None
    )


def nrps_claim(url: str) -> dict[str, Any]:
    return {"context_memberships_url": url, "service_versions": ["2.0"]}


def check_deep_link_response(
    claims: dict[str, Any], clients: Mapping[str, Client]
) -> tuple[Client, list[dict[str, Any]]]:
    """The client and content items of a verified deep-linking response."""
    client = clients.get(str(claims.get("iss", "")))
    if client is None:
        raise PlatformRefusal(400, "unknown client (iss)")
    if claims.get(C.MESSAGE_TYPE) != DL_RESPONSE:
        raise PlatformRefusal(400, "message_type must be LtiDeepLinkingResponse")
    if claims.get(C.VERSION) != "1.3.0":
        raise PlatformRefusal(400, "version must be 1.3.0")
    if claims.get(C.DEPLOYMENT_ID) != client.deployment_id:
        raise PlatformRefusal(400, "unknown deployment_id")
    if not isinstance(claims.get("nonce"), str) or not claims["nonce"]:
        raise PlatformRefusal(400, "nonce is missing")
    if int(claims.get("exp", 0)) < time.time():
        raise PlatformRefusal(400, "expired")
    items = claims.get("https://purl.imsglobal.org/spec/lti-dl/claim/content_items", [])
    if not isinstance(items, list):
        raise PlatformRefusal(400, "content_items must be an array")
    return client, items
