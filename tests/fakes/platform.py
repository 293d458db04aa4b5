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
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.emulator.keys import SigningKey, new_key, private_pem
from devstack.emulator.lti import (
    CANVAS_ISSUER,
    LEARNER,
    Client,
    auth_request_problem,
    frame_resize_js,
    launch_claims,
    new_client_id,
    new_deployment_id,
    storage_responder_js,
)
from shared.lti import claims as C
from shared.signing import b64url
from tests.fakes.lti_services import PlatformServices

__all__ = ["CANVAS_ISSUER", "Client", "FakePlatform", "SigningKey", "new_key", "weak_key"]


def weak_key(bits: int = 1024) -> SigningKey:
    """An RSA signing key shorter than Attune accepts, published as a platform still using one
    would publish it (``shared.jose.public_jwk`` refuses to build such a JWK)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = private.public_key().public_numbers()

    def b64int(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    kid = f"weak-{bits}-{secrets.token_hex(4)}"
    return SigningKey(
        kid=kid,
        private_pem=private_pem(private),
        public_jwk={
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "use": "sig",
            "n": b64int(numbers.n),
            "e": b64int(numbers.e),
        },
    )


Flavour = Literal["canvas", "moodle"]


@dataclass
class FakePlatform(PlatformServices):
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
    launch_html: str = ""  # a page that posts the login, as Canvas's launch page does
    # The launch_presentation.return_url of its id_tokens (the LMS page a launch came from).
    return_url: str | None = None
    # Deep linking and NRPS (the tool's side is verified against tool_jwks_url).
    tool_jwks_url: str = ""
    deep_link_responses: list[dict[str, Any]] = field(default_factory=list)
    deep_link_errors: list[str] = field(default_factory=list)
    nrps_members: list[dict[str, Any]] | None = None  # None: no NRPS claim in launches
    nrps_page_size: int = 2
    nrps_requests: list[str] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    token_errors: list[str] = field(default_factory=list)
    access_tokens: set[str] = field(default_factory=set)
    used_jtis: set[str] = field(default_factory=set)
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
        client_id = new_client_id(self.flavour)
        deployment = deployment_id or new_deployment_id(self.flavour)
        client = Client(client_id, redirect_uris, deployment)
        self.clients[client_id] = client
        return client

    # --- the server -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(urlsplit(self.jwks_url).path, self._jwks)
        app.router.add_route("*", urlsplit(self.auth_url).path, self._authorize)
        app.router.add_get("/lms/course", self._course)
        app.router.add_get("/lms/launch", self._launch_page)
        self.add_service_routes(app, urlsplit(self.token_url).path)
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

    async def _launch_page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.launch_html, content_type="text/html")

    def set_posting_course_page(self, login_url: str, fields: dict[str, str]) -> None:
        """A course page whose tool frame first loads this LMS's launch page, which posts the
        login (the browser then sends this LMS's Origin), as Canvas does."""
        self.set_course_page("/lms/launch", tool_origin=login_url.split("/lti/", 1)[0])
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        self.launch_html = (
            f'<!doctype html><form id="f" method="post" action="{html.escape(login_url)}">'
            f'{inputs}</form><script>document.getElementById("f").submit()</script>'
        )

    def set_course_page(self, iframe_src: str, tool_origin: str) -> None:
        """An LMS course page embedding the tool, with a Platform Storage responder
        (lti.put_data / lti.get_data) that only answers the tool's origin."""
        self.course_html = f"""<!doctype html><html><head><title>Course</title></head><body>
<h1>Wellbeing 101</h1>
<script>{storage_responder_js(tool_origin)}</script>
<iframe id="tool" name="tool" title="Attune" style="width:100%;height:400px;border:0"
        src="{html.escape(iframe_src)}"></iframe>
<script>{frame_resize_js(tool_origin, self.flavour)}</script>
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
        problem = auth_request_problem(params, self.clients)
        if problem is not None:
            return web.Response(status=400, text=problem)
        client = self.clients[params["client_id"]]
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
            custom=message.get("custom"),
            locale=message.get("locale") or "en",
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
        custom: dict[str, str] | None = None,
        locale: str = "en",
    ) -> dict[str, Any]:
        return launch_claims(
            flavour=self.flavour,
            issuer=self.issuer,
            platform_url=self.base_url,
            client=client,
            nonce=nonce,
            sub=sub,
            name=f"Person {sub}",
            roles=roles if roles is not None else [LEARNER],
            target_link_uri=target_link_uri
            or client.redirect_uris[0].replace("/lti/launch", "/app"),
            message_type=message_type,
            context_id=context_id,
            lifetime_s=self.token_lifetime_s,
            extra=self.service_claims(context_id, custom),
            locale=locale,
            return_url=self.return_url,
        )

    def id_token(self, client: Client, **kwargs: Any) -> str:
        return self.sign(self.claims(client, **kwargs))

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        return (key or self.current).sign(claims, headers)


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
