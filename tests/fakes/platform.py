"""A fake LMS for tests: a real aiohttp server on loopback that plays the LTI 1.3 platform.

It holds real RSA keys, publishes them as a JWKS, answers OIDC auth requests the way Canvas
or Moodle do (checking client_id, redirect_uri and the fixed parameters) and signs real RS256
id_tokens. Tests can also mint tokens directly (``id_token``) to try every malformed variant.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt
from jose.utils import long_to_base64

from shared.lti import claims as C

Flavour = Literal["canvas", "moodle"]
CANVAS_ISSUER = "https://canvas.instructure.com"


@dataclass
class SigningKey:
    kid: str
    private_pem: bytes
    public_jwk: dict[str, str]


def new_key(kid: str | None = None, bits: int = 2048) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = key.public_key().public_numbers()
    kid = kid or f"{time.strftime('%Y-%m-%dT%H:%M:%SZ')}-{secrets.token_hex(4)}"
    return SigningKey(
        kid=kid,
        private_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        public_jwk={
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "use": "sig",
            "n": long_to_base64(numbers.n).decode(),
            "e": long_to_base64(numbers.e).decode(),
        },
    )


@dataclass
class Client:
    client_id: str
    redirect_uris: list[str]
    deployment_id: str


@dataclass
class FakePlatform:
    flavour: Flavour
    base_url: str = ""
    issuer: str = ""
    keys: list[SigningKey] = field(default_factory=lambda: [new_key()])
    clients: dict[str, Client] = field(default_factory=dict)
    jwks_mode: Literal["ok", "down", "slow", "empty"] = "ok"
    jwks_requests: int = 0
    token_lifetime_s: int = 3600
    used_message_hints: set[str] = field(default_factory=set)
    auth_requests: list[dict[str, str]] = field(default_factory=list)
    course_html: str = ""
    _runner: web.AppRunner | None = None

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    @property
    def auth_url(self) -> str:
        if self.flavour == "canvas":
            return f"{self.base_url}/api/lti/authorize_redirect"
        return f"{self.base_url}/mod/lti/auth.php"

    @property
    def jwks_url(self) -> str:
        if self.flavour == "canvas":
            return f"{self.base_url}/api/lti/security/jwks"
        return f"{self.base_url}/mod/lti/certs.php"

    @property
    def token_url(self) -> str:
        if self.flavour == "canvas":
            return f"{self.base_url}/login/oauth2/token"
        return f"{self.base_url}/mod/lti/token.php"

    def rotate(self) -> SigningKey:
        """A new current key, published next to the old ones (as Canvas and D2L do)."""
        key = new_key()
        self.keys.append(key)
        return key

    def add_client(self, redirect_uris: list[str], *, deployment_id: str | None = None) -> Client:
        client_id = (
            str(10000000000000 + secrets.randbelow(10**9))
            if self.flavour == "canvas"
            else secrets.token_urlsafe(10)
        )
        deployment = deployment_id or (
            f"{secrets.randbelow(999)}:{secrets.token_hex(20)}"
            if self.flavour == "canvas"
            else str(secrets.randbelow(99) + 1)
        )
        client = Client(client_id, redirect_uris, deployment)
        self.clients[client_id] = client
        return client

    # --- the server -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(urlsplit(self.jwks_url).path, self._jwks)
        app.router.add_route("*", urlsplit(self.auth_url).path, self._authorize)
        app.router.add_get("/lms/course", self._course)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.issuer = CANVAS_ISSUER if self.flavour == "canvas" else self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _course(self, request: web.Request) -> web.Response:
        return web.Response(text=self.course_html, content_type="text/html")

    def set_course_page(self, iframe_src: str, tool_origin: str) -> None:
        """An LMS course page embedding the tool, with a Platform Storage responder
        (lti.put_data / lti.get_data) that only answers the tool's origin."""
        self.course_html = f"""<!doctype html><html><head><title>Course</title></head><body>
<h1>Wellbeing 101</h1>
<script>
window.storageLog = [];
const store = new Map();
window.addEventListener("message", (event) => {{
  if (event.origin !== {json.dumps(tool_origin)}) return;
  const m = event.data || {{}};
  window.storageLog.push(m.subject);
  if (m.subject === "lti.put_data") {{
    store.set(m.key, m.value);
    event.source.postMessage({{subject: "lti.put_data.response", message_id: m.message_id,
                              key: m.key, value: m.value}}, event.origin);
  }} else if (m.subject === "lti.get_data") {{
    event.source.postMessage({{subject: "lti.get_data.response", message_id: m.message_id,
                              key: m.key, value: store.get(m.key)}}, event.origin);
  }}
}});
</script>
<iframe id="tool" name="tool" title="Attune" style="width:100%;height:400px"
        src="{html.escape(iframe_src)}"></iframe>
</body></html>"""

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        if self.jwks_mode == "down":
            return web.Response(status=503, text="maintenance")
        if self.jwks_mode == "slow":
            await asyncio.sleep(30)
        keys = [] if self.jwks_mode == "empty" else [k.public_jwk for k in self.keys]
        return web.json_response({"keys": keys})

    async def _authorize(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.auth_requests.append(params)
        fixed = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
        }
        for name, value in fixed.items():
            if params.get(name) != value:
                return web.Response(status=400, text=f"invalid_request: {name}")
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return web.Response(status=400, text="invalid_client")
        if params.get("redirect_uri") not in client.redirect_uris:
            return web.Response(status=400, text="invalid redirect_uri")
        for name in ("state", "nonce", "login_hint"):
            if not params.get(name):
                return web.Response(status=400, text=f"missing {name}")
        hint = params.get("lti_message_hint", "")
        if self.flavour == "moodle":
            # Moodle's lti_message_hint is single-use.
            if not hint or hint in self.used_message_hints:
                return web.Response(status=400, text="invalid lti_message_hint")
            self.used_message_hints.add(hint)
        message = json.loads(hint) if hint.startswith("{") else {}
        token = self.id_token(
            client,
            nonce=params["nonce"],
            sub=params["login_hint"],
            message_type=message.get("message_type", C.RESOURCE_LINK_REQUEST),
            roles=message.get("roles"),
        )
        fields = {"id_token": token, "state": params["state"]}
        inputs = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items()
        )
        page = (
            f'<form id="f" method="post" action="{html.escape(params["redirect_uri"])}">{inputs}'
            '</form><script>document.getElementById("f").submit()</script>'
        )
        return web.Response(text=page, content_type="text/html")

    # --- tokens ------------------------------------------------------------------------------

    def claims(
        self,
        client: Client,
        *,
        nonce: str,
        sub: str = "user-1",
        message_type: str = C.RESOURCE_LINK_REQUEST,
        roles: list[str] | None = None,
        target_link_uri: str | None = None,
        context_id: str = "course-1",
    ) -> dict[str, Any]:
        now = int(time.time())
        target = target_link_uri or client.redirect_uris[0].replace("/lti/launch", "/app")
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client.client_id,
            "azp": client.client_id,
            "sub": sub,
            "exp": now + (60 if self.flavour == "moodle" else self.token_lifetime_s),
            "iat": now,
            "nonce": nonce,
            "name": f"Person {sub}",
            C.VERSION: "1.3.0",
            C.MESSAGE_TYPE: message_type,
            C.DEPLOYMENT_ID: client.deployment_id,
            C.TARGET_LINK_URI: target,
            C.ROLES: roles
            if roles is not None
            else ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            C.CONTEXT: {"id": context_id, "title": "Wellbeing 101"},
            C.TOOL_PLATFORM: {"guid": self.base_url, "product_family_code": self.flavour},
        }
        if message_type == C.RESOURCE_LINK_REQUEST:
            claims[C.RESOURCE_LINK] = {"id": f"rl-{uuid.uuid4().hex[:8]}", "title": "Check-in"}
        if message_type == C.DEEP_LINKING_REQUEST:
            claims[C.DEEP_LINKING_SETTINGS] = {
                "deep_link_return_url": f"{self.base_url}/deep_linking_return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["iframe", "window"],
                "data": "opaque-data",
            }
        return claims

    def id_token(self, client: Client, **kwargs: Any) -> str:
        return self.sign(self.claims(client, **kwargs))

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        key = key or self.current
        return str(
            jwt.encode(
                claims,
                key.private_pem.decode(),
                algorithm="RS256",
                headers={"kid": key.kid, **(headers or {})},
            )
        )


def parse_autopost(page: str) -> tuple[str, dict[str, str]]:
    """The action and fields of a platform's auto-submitting form."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    assert action is not None, page[:500]
    fields = {
        html.unescape(m.group(1)): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }
    return html.unescape(action.group(1)), fields


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
