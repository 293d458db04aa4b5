"""Fake Canvas and Moodle for LTI Dynamic Registration: the platform side, as those products do it.

A ``RegistrationPlatform`` is a real aiohttp server on loopback serving the platform's OpenID
configuration and its registration endpoint, both behind the registration token as a Bearer.
Its issuer, auth endpoint and JWKS are a ``tests.fakes.platform.FakePlatform`` (composition):
a successful registration creates a client there, so the stored registration can be launched.

- Moodle (``mod/lti/classes/local/ltiopenid/registration_helper.php``): requires
  ``response_types`` (with ``id_token``), ``initiate_login_uri``, ``redirect_uris`` (an array),
  ``client_name``, ``jwks_uri``, ``token_endpoint_auth_method=private_key_jwt``, the tool
  configuration with ``domain`` equal to host[:port] of ``target_link_uri``; errors are plain
  text with a 400; the answer carries ``client_id`` and the tool configuration's
  ``deployment_id``, echoes only the deep linking message and lists the scopes it granted.
  The token is single-use.
- Canvas (``Lti::IMS::DynamicRegistrationController``): validates the registration schema and
  its placements (``https://canvas.instructure.com/lti/placements`` or ``placements``), answers
  422 ``{"errors": [...]}`` when invalid, returns the registration with a numeric-string
  ``client_id`` and, by default, no deployment (Canvas installs it later; deployments show up at
  their first launch). ``admin_edits`` plays the admin who trims scopes or placements.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from aiohttp import web

from devstack.emulator.lti import (
    AGS_SCOPES,
    CANVAS_PLACEMENTS,
    CANVAS_PRIVACY,
    CANVAS_TOOL_ID,
    NRPS,
    PLATFORM_CONFIG,
    TOOL_CONFIG,
    Client,
    canvas_answer,
    canvas_problems,
    moodle_answer,
    moodle_problem,
    new_client_id,
    openid_configuration,
)
from tests.fakes.platform import FakePlatform

__all__ = [
    "AGS_SCOPES",
    "CANVAS_PLACEMENTS",
    "CANVAS_PRIVACY",
    "CANVAS_TOOL_ID",
    "NRPS",
    "TOOL_CONFIG",
]

Flavour = Literal["canvas", "moodle"]
ConfigMode = Literal[
    "ok", "huge", "not_json", "not_object", "no_registration_endpoint", "foreign_issuer"
]


async def serve_app(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Run ``app`` on a free loopback port; returns the runner and its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


class ConnectionCounter:
    """A TCP listener that only counts connections: proof that nothing was contacted."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class RegistrationPlatform:
    flavour: Flavour
    lms: FakePlatform = field(init=False)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    base_url: str = ""
    config_mode: ConfigMode = "ok"
    reject: tuple[int, str, str] | None = None  # (status, content type, body) for the POST
    return_deployment: bool | None = None  # default: Moodle yes, Canvas no
    admin_edits: dict[str, Any] = field(default_factory=dict)  # Canvas: drop_scopes, ...
    fixed_client_id: str | None = None  # answer with this client_id (re-registration)
    # What the configuration claims instead of the truth (an attacker's platform): top-level
    # fields (issuer, endpoints) and fields of the lti-platform-configuration object.
    claims: dict[str, Any] = field(default_factory=dict)
    platform_claims: dict[str, Any] = field(default_factory=dict)
    account_name: str = "Test University"
    config_requests: int = 0
    config_authorizations: list[str | None] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    registration_authorizations: list[str | None] = field(default_factory=list)
    used_tokens: set[str] = field(default_factory=set)
    clients: list[Client] = field(default_factory=list)
    # When this platform started: its issuer is its address, and an earlier test's platform may
    # have had the same port (so the same issuer) in the test database.
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _runner: web.AppRunner | None = None

    # --- addresses -----------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def config_path(self) -> str:
        if self.flavour == "canvas":
            return "/api/lti/security/openid-configuration"
        return "/mod/lti/openid-configuration.php"

    @property
    def registration_path(self) -> str:
        if self.flavour == "canvas":
            return "/api/lti/registrations"
        return "/mod/lti/openid-registration.php"

    @property
    def openid_configuration_url(self) -> str:
        return self.base_url + self.config_path

    @property
    def registration_endpoint(self) -> str:
        return self.base_url + self.registration_path

    def start_params(self, token: str | None = None) -> dict[str, str]:
        """The query the LMS adds when it opens the tool's registration URL."""
        return {
            "openid_configuration": self.openid_configuration_url,
            "registration_token": self.token if token is None else token,
        }

    def new_token(self) -> str:
        self.token = secrets.token_urlsafe(32)
        return self.token

    @property
    def client(self) -> Client:
        """The client created by the latest successful registration."""
        return self.clients[-1]

    # --- server --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = datetime.now(UTC)
        self.lms = FakePlatform(self.flavour)
        await self.lms.start()
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get(self.config_path, self._configuration)
        app.router.add_post(self.registration_path, self._register)
        self._runner, self.base_url = await serve_app(app)
        # The platform's issuer is its own site (a self-hosted Canvas, or Moodle's wwwroot):
        # the id_tokens of the FakePlatform carry it.
        self.lms.issuer = self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.lms.stop()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        return header == f"Bearer {self.token}" and self.token not in self.used_tokens

    # --- openid configuration ------------------------------------------------------------------

    def configuration(self) -> dict[str, Any]:
        lms = self.lms
        doc = openid_configuration(
            self.flavour,
            issuer=self.issuer,
            auth_url=lms.auth_url,
            registration_endpoint=self.registration_endpoint,
            jwks_url=lms.jwks_url,
            token_url=lms.token_url,
            account_name=self.account_name,
        )
        if self.config_mode == "no_registration_endpoint":
            del doc["registration_endpoint"]
        if self.config_mode == "foreign_issuer":
            doc["issuer"] = "https://lms.example.org"
        doc.update(self.claims)
        doc[PLATFORM_CONFIG] = {**doc[PLATFORM_CONFIG], **self.platform_claims}
        return doc

    async def _configuration(self, request: web.Request) -> web.StreamResponse:
        self.config_requests += 1
        self.config_authorizations.append(request.headers.get("Authorization"))
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        if self.config_mode == "huge":
            padding = "x" * (2 * 1024 * 1024)
            return web.json_response({**self.configuration(), "padding": padding})
        if self.config_mode == "not_json":
            return web.Response(text="<html>Maintenance</html>", content_type="text/html")
        if self.config_mode == "not_object":
            return web.json_response(["issuer"])
        return web.json_response(self.configuration())

    # --- registration --------------------------------------------------------------------------

    async def _register(self, request: web.Request) -> web.Response:
        self.registration_authorizations.append(request.headers.get("Authorization"))
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid JSON")
        self.registrations.append(body)
        if not self._authorized(request):
            if self.flavour == "moodle" and self.token in self.used_tokens:
                return web.Response(status=401, text="token_already_used")
            return web.Response(status=401, text="Unauthorized")
        if self.reject is not None:
            status, content_type, text = self.reject
            return web.Response(status=status, text=text, content_type=content_type)
        if self.flavour == "moodle":
            return self._moodle(body)
        return self._canvas(body)

    def _moodle(self, body: dict[str, Any]) -> web.Response:
        problem = moodle_problem(body)
        if problem is not None:
            return web.Response(status=400, text=problem)
        self.used_tokens.add(self.token)
        deployment_id = str(secrets.randbelow(900) + 10)
        client = Client(
            self.fixed_client_id or new_client_id("moodle"), body["redirect_uris"], deployment_id
        )
        self._add_client(client)
        return web.json_response(
            moodle_answer(body, client, return_deployment=self.return_deployment is not False)
        )

    def _canvas(self, body: dict[str, Any]) -> web.Response:
        problems = canvas_problems(body)
        if problems:
            return web.json_response({"errors": problems}, status=422)
        self.used_tokens.add(self.token)
        client = Client(
            self.fixed_client_id or new_client_id("canvas"),
            body["redirect_uris"],
            f"{secrets.randbelow(999)}:{secrets.token_hex(20)}",
        )
        self._add_client(client)
        return web.json_response(
            canvas_answer(
                body, client, edits=self.admin_edits, return_deployment=bool(self.return_deployment)
            )
        )

    def _add_client(self, client: Client) -> None:
        self.lms.clients[client.client_id] = client
        self.clients.append(client)


async def registration_platform(flavour: Flavour) -> AsyncIterator[RegistrationPlatform]:
    """For fixtures: a started platform, stopped afterwards."""
    platform = RegistrationPlatform(flavour)
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


# --- the LMS admin's browser in the registration iframe ------------------------------------------

_HIDDEN_FORM = re.compile(r'<input type="hidden" name="form" value="([^"]+)">')


def form_value(page: str) -> str:
    """The signed hidden value of Attune's install page."""
    found = _HIDDEN_FORM.search(page)
    assert found is not None, page[:1000]
    return html.unescape(found.group(1))


async def open_install_page(
    session: aiohttp.ClientSession,
    registration_url: str,
    platform: RegistrationPlatform,
    *,
    token: str | None = None,
    json_errors: bool = False,
) -> tuple[aiohttp.ClientResponse, str]:
    """What the LMS does: open the tool's registration URL in its iframe."""
    headers = {"Accept": "application/json"} if json_errors else {}
    resp = await session.get(
        f"{registration_url}/lti/register",
        params=platform.start_params(token),
        headers=headers,
        allow_redirects=False,
    )
    return resp, await resp.text()


async def submit_install(
    session: aiohttp.ClientSession,
    registration_url: str,
    form: str,
    *,
    placements: list[str],
    credential: tuple[str, str] | None,
    json_errors: bool = False,
) -> aiohttp.ClientResponse:
    """The admin presses "Register" on the install page."""
    data: list[tuple[str, str]] = [("form", form)]
    data += [("placement", p) for p in placements]
    if credential is not None:
        data.append(credential)
    headers = {"Accept": "application/json"} if json_errors else {}
    return await session.post(
        f"{registration_url}/lti/register", data=data, headers=headers, allow_redirects=False
    )


async def install(
    session: aiohttp.ClientSession,
    registration_url: str,
    platform: RegistrationPlatform,
    *,
    placements: list[str],
    credential: tuple[str, str],
    json_errors: bool = False,
) -> tuple[aiohttp.ClientResponse, str]:
    """The whole dynamic registration as the LMS admin does it: the LMS opens the install
    page, the admin presses "Register". The install page must open."""
    page, text = await open_install_page(session, registration_url, platform)
    assert page.status == 200, text
    done = await submit_install(
        session,
        registration_url,
        form_value(text),
        placements=placements,
        credential=credential,
        json_errors=json_errors,
    )
    return done, await done.text()


async def outbox_settled(pool: Any, timeout: float = 5.0) -> None:
    """Wait until every outbox row is published, then a moment more, before stopping apps.

    Works around a shutdown race in ``shared/events/relay.py`` on Python 3.11: its
    ``asyncio.wait_for(self._wake.wait(), poll)`` swallows a cancellation that arrives together
    with an outbox NOTIFY, and the app's cleanup then waits for the relay forever.
    """
    if not await pool.fetchval("SELECT count(*) FROM outbox"):
        return  # nothing was written, so no NOTIFY can be in flight
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
