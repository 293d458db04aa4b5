"""The LTI Advantage side of the fake LMS: the deep-linking return endpoint, the OAuth2 token
endpoint (client credentials with a ``private_key_jwt`` assertion) and paged NRPS
memberships. Everything the tool signs is verified against the tool's JWKS
(``tool_jwks_url``), as a real platform does. Mixed into ``FakePlatform``."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from shared.jose import SignatureError, prepare_key, verify_rs256
from shared.lti import claims as C

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
NRPS_MEDIA = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class PlatformServices:
    """State lives in ``FakePlatform``'s fields (tool_jwks_url, deep_link_responses, ...)."""

    base_url: str
    clients: dict[str, Any]
    tool_jwks_url: str
    deep_link_responses: list[dict[str, Any]]
    deep_link_errors: list[str]
    nrps_members: list[dict[str, Any]] | None
    nrps_page_size: int
    nrps_requests: list[str]
    token_requests: list[dict[str, Any]]
    token_errors: list[str]
    access_tokens: set[str]
    used_jtis: set[str]

    token_url: str  # FakePlatform provides it (a property per flavour)

    def add_service_routes(self, app: web.Application, token_path: str) -> None:
        app.router.add_post("/deep_linking_return", self._deep_linking_return)
        app.router.add_post(token_path, self._token)
        app.router.add_get("/api/lti/courses/{context}/names_and_roles", self._memberships)

    def service_claims(self, context_id: str, custom: dict[str, str] | None) -> dict[str, Any]:
        """Extra launch claims: the custom parameters and, when members are set, NRPS."""
        extra: dict[str, Any] = {}
        if custom is not None:
            extra[C.CUSTOM] = custom
        if self.nrps_members is not None:
            extra[C.NRPS] = {
                "context_memberships_url": self.nrps_url(context_id),
                "service_versions": ["2.0"],
            }
        return extra

    async def verify_tool_jwt(self, token: str) -> dict[str, Any]:
        """Verify a JWT the tool signed against the tool's published JWKS (by kid)."""
        header = json.loads(_b64(token.split(".")[0]))
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.tool_jwks_url) as resp,
        ):
            keys = (await resp.json())["keys"]
        key = next((k for k in keys if k.get("kid") == header.get("kid")), None)
        if key is None or header.get("alg") != "RS256":
            raise SignatureError(f"unknown kid {header.get('kid')}")
        return verify_rs256(token, prepare_key(key))

    async def _deep_linking_return(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("JWT")
        if not isinstance(token, str):
            self.deep_link_errors.append("no JWT")
            return web.Response(status=400, text="no JWT")
        try:
            claims = await self.verify_tool_jwt(token)
        except (SignatureError, ValueError, KeyError, IndexError) as exc:
            self.deep_link_errors.append(f"signature: {exc}")
            return web.Response(status=400, text="bad signature")
        self.deep_link_responses.append(claims)
        return web.Response(text="<p>Content added</p>", content_type="text/html")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)

        def refuse(why: str) -> web.Response:
            self.token_errors.append(why)
            return web.json_response({"error": "invalid_client", "why": why}, status=400)

        if form.get("grant_type") != "client_credentials":
            return refuse("grant_type")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return refuse("client_assertion_type")
        try:
            claims = await self.verify_tool_jwt(form.get("client_assertion", ""))
        except (SignatureError, ValueError, KeyError, IndexError) as exc:
            return refuse(f"signature: {exc}")
        now = time.time()
        if claims.get("iss") not in self.clients or claims.get("sub") != claims.get("iss"):
            return refuse("iss/sub")
        if claims.get("aud") != self.token_url:
            return refuse("aud")
        exp = claims.get("exp")
        if not isinstance(exp, int) or not now < exp <= now + 3600:
            return refuse("exp")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or jti in self.used_jtis:
            return refuse("jti")
        self.used_jtis.add(jti)
        scopes = form.get("scope", "").split()
        if scopes != [NRPS_SCOPE]:
            return refuse("scope")
        access = secrets.token_urlsafe(16)
        self.access_tokens.add(access)
        return web.json_response(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": " ".join(scopes),
            }
        )

    def nrps_url(self, context_id: str) -> str:
        return f"{self.base_url}/api/lti/courses/{context_id}/names_and_roles"

    async def _memberships(self, request: web.Request) -> web.Response:
        self.nrps_requests.append(str(request.rel_url))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.access_tokens:
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.headers.get("Accept") != NRPS_MEDIA:
            return web.json_response({"error": "accept"}, status=406)
        members = self.nrps_members or []
        page = int(request.query.get("page", "1"))
        size = self.nrps_page_size
        context = request.match_info["context"]
        headers = {}
        if page * size < len(members):
            headers["Link"] = f'<{self.nrps_url(context)}?page={page + 1}>; rel="next"'
        body = {
            "id": str(request.url),
            "context": {"id": context, "title": "Wellbeing 101"},
            "members": members[(page - 1) * size : page * size],
        }
        return web.json_response(body, headers=headers, content_type=NRPS_MEDIA)
