"""The real login, launch and checkins services behind the real gateway, for LTI tests.

Each region gets its own gateway origin (127.0.0.1:<port>) with its own login, launch and
checkins, as a cell runs them (sharing one database here: tests/integration/test_cells.py runs
cells with databases of their own). A "browser" is an aiohttp session with
its own cookie jar that does not follow redirects, so each hop can be asserted.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
from aiohttp import web
from yarl import URL

from devstack.gateway import create_gateway
from services.checkins.app import create_app as checkins_app
from services.launch.app import create_app as launch_app
from services.login.app import create_app as login_app
from services.registration.app import create_app as registration_app
from shared.settings import Settings
from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform, parse_autopost, query_of
from tests.fakes.registration_platform import outbox_settled, serve_app


@dataclass
class Region:
    name: str
    url: str  # the gateway origin of this region


@dataclass
class LtiStack:
    regions: list[Region]
    settings: dict[str, Settings]
    pool: asyncpg.Pool
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.regions[0].url

    def redirect_uris(self) -> list[str]:
        return [f"{r.url}/lti/launch" for r in self.regions]

    async def register(
        self,
        platform: FakePlatform,
        client: Client,
        *,
        policy: str = "accept",
        deployment_status: str | None = "active",
        frame_origins: list[str] | None = None,
    ) -> int:
        """Insert the registration as the registration service would store it (the LMS's
        pages, allowed to frame the tool, are the fake platform's origin unless given)."""
        platform_id: int = await self.pool.fetchval(
            """
            INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, token_url, product,
                                   deployment_policy, frame_origins)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
            """,
            platform.issuer,
            client.client_id,
            platform.auth_url,
            platform.jwks_url,
            platform.token_url,
            platform.flavour,
            policy,
            [platform.base_url] if frame_origins is None else frame_origins,
        )
        if deployment_status is not None:
            await self.pool.execute(
                "INSERT INTO deployments (platform_id, deployment_id, status) VALUES ($1,$2,$3)",
                platform_id,
                client.deployment_id,
                deployment_status,
            )
        return platform_id


class Browser:
    """A browser's cookie handling, small and explicit.

    aiohttp's cookie jar (Python's ``http.cookies`` before 3.14) drops any cookie carrying the
    ``Partitioned`` attribute, which Chrome honours; this keeps cookies per host and path the
    way a browser does for these tests (Secure cookies are allowed on loopback, as in Chrome).
    """

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), headers=headers or {}
        )
        self.cookies: dict[tuple[str, str], tuple[str, str]] = {}  # (host, name) -> (value, path)
        self.set_cookie_headers: list[str] = []

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    def _cookie_header(self, url: URL) -> str | None:
        pairs = [
            f"{name}={value}"
            for (host, name), (value, path) in self.cookies.items()
            if host == url.host
            and (url.path == path or url.path.startswith(path.rstrip("/") + "/"))
        ]
        return "; ".join(pairs) or None

    def _store(self, url: URL, resp: aiohttp.ClientResponse) -> None:
        for header in resp.headers.getall("Set-Cookie", []):
            self.set_cookie_headers.append(header)
            first, *attrs = [p.strip() for p in header.split(";")]
            name, _, value = first.partition("=")
            options = {a.partition("=")[0].lower(): a.partition("=")[2] for a in attrs}
            key = (str(url.host), name)
            if options.get("max-age") == "0":
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = (value, options.get("path", "/"))

    async def request(self, method: str, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        target = URL(url)
        if kwargs.get("params"):
            target = target.update_query(kwargs.pop("params"))
        headers = dict(kwargs.pop("headers", {}) or {})
        cookie = self._cookie_header(target)
        if cookie:
            headers["Cookie"] = cookie
        kwargs.setdefault("allow_redirects", False)
        resp = await self._session.request(method, target, headers=headers, **kwargs)
        await resp.read()
        self._store(target, resp)
        return resp

    async def get(self, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.request("POST", url, **kwargs)


def browser(headers: dict[str, str] | None = None) -> Browser:
    """A browser; ``headers`` go with every request (``Accept-Language``, say)."""
    return Browser(headers)


async def _serve(
    app: web.Application, sock: socket.socket | None = None
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1: on a new port, or on ``sock`` (bound already)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0) if sock is None else web.SockSite(runner, sock)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def _bound_socket() -> socket.socket:
    """A socket bound to a port of its own, held until a server takes it: a port chosen and
    released first may be given to another listener or connection before the server binds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def start_stack(
    infra: Infra,
    pool: asyncpg.Pool,
    region_names: tuple[str, ...] = ("us-east-1",),
    *,
    host: str = "127.0.0.1",
    **overrides: Any,
) -> tuple[LtiStack, AsyncExitStack]:
    """``host="localhost"`` puts the tool on a different site than the fake LMS
    (127.0.0.1), as a real LMS iframe is."""
    exits = AsyncExitStack()
    sockets = [_bound_socket() for _ in region_names]
    for sock in sockets:
        exits.callback(sock.close)
    regions = [
        Region(name, f"http://{host}:{sock.getsockname()[1]}")
        for name, sock in zip(region_names, sockets, strict=True)
    ]
    region_map = ",".join(f"{r.name}={r.url}" for r in regions)
    public = regions[0].url
    stack = LtiStack(regions=regions, settings={}, pool=pool)
    base = {"public_url": public, "regions": region_map, **overrides}
    together: list[web.AppRunner] = []
    # The regions' checkins share the database and broker here, so their work consumers are
    # members of one consumer group: they stop together (members leaving one by one, each in
    # the rebalance the previous one started, leave the embedded broker's group unable to take
    # a new member, and a later test's consumer would never get a partition).
    exits.push_async_callback(_cleanup_together, together)
    for region, sock in zip(regions, sockets, strict=True):
        settings = infra.settings(region=region.name, **base)
        stack.settings[region.name] = settings
        upstreams: dict[str, str] = {}
        for name, factory in (
            ("login", login_app),
            ("launch", launch_app),
            ("checkins", checkins_app),
        ):
            runner, url = await _serve(factory(settings))
            if name == "checkins":
                together.append(runner)
            else:
                exits.push_async_callback(runner.cleanup)
            upstreams[name] = url
        gw_runner, _ = await _serve(create_gateway(upstreams), sock)
        exits.push_async_callback(gw_runner.cleanup)
    return stack, exits


async def _cleanup_together(runners: list[web.AppRunner]) -> None:
    await asyncio.gather(*(runner.cleanup() for runner in runners))


@dataclass
class LaunchResult:
    status: int
    location: str | None
    body: str
    json: dict[str, Any] | None


async def login(
    session: Browser,
    region_url: str,
    platform: FakePlatform,
    client: Client,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **extra: str,
) -> aiohttp.ClientResponse:
    params = {
        "iss": platform.issuer,
        "login_hint": extra.pop("login_hint", "user-1"),
        "target_link_uri": extra.pop("target_link_uri", f"{region_url}/app"),
        "client_id": client.client_id,
        "lti_deployment_id": client.deployment_id,
        **extra,
    }
    if platform.flavour == "moodle" and "lti_message_hint" not in params:
        params["lti_message_hint"] = secrets.token_hex(8)
    if method == "POST":
        return await session.post(
            f"{region_url}/lti/login", data=params, allow_redirects=False, headers=headers
        )
    return await session.get(
        f"{region_url}/lti/login?{urlencode(params)}", allow_redirects=False, headers=headers
    )


async def full_launch(
    session: Browser,
    region_url: str,
    platform: FakePlatform,
    client: Client,
    **login_extra: str,
) -> aiohttp.ClientResponse:
    """Login → platform auth endpoint → launch POST, as a browser would do it."""
    resp = await login(session, region_url, platform, client, **login_extra)
    assert resp.status == 302, await resp.text()
    auth = await session.get(resp.headers["Location"], allow_redirects=False)
    assert auth.status == 200, await auth.text()
    action, fields = parse_autopost(await auth.text())
    return await session.post(action, data=fields, allow_redirects=False)


async def auth_params(
    session: Browser,
    region_url: str,
    platform: FakePlatform,
    client: Client,
    **login_extra: str,
) -> dict[str, str]:
    """Do the login step only; return the auth request's parameters (state, nonce, ...)."""
    resp = await login(session, region_url, platform, client, **login_extra)
    assert resp.status == 302, await resp.text()
    return query_of(resp.headers["Location"])


async def post_launch(
    session: Browser, region_url: str, fields: dict[str, str]
) -> aiohttp.ClientResponse:
    return await session.post(
        f"{region_url}/lti/launch",
        data=fields,
        allow_redirects=False,
        headers={"Accept": "application/json"},
    )


async def error_code(resp: aiohttp.ClientResponse) -> str:
    body = await resp.json()
    return str(body["error"]["code"])


async def platform_server(flavour: str) -> AsyncIterator[FakePlatform]:
    platform = FakePlatform(flavour)  # type: ignore[arg-type]
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


@dataclass
class RegistrationEnv:
    """The stack plus the registration service (with the first region's settings)."""

    stack: LtiStack
    url: str  # the registration service
    settings: Settings
    pool: asyncpg.Pool
    session: aiohttp.ClientSession


async def registration_env(
    infra: Infra,
    pool: asyncpg.Pool,
    region_names: tuple[str, ...] = ("us-east-1",),
    *,
    every_service: dict[str, Any] | None = None,
    **update: object,
) -> AsyncIterator[RegistrationEnv]:
    """For fixtures: ``update`` changes the registration service's settings only,
    ``every_service`` every service's (the registration service's included)."""
    stack, exits = await start_stack(infra, pool, region_names, **(every_service or {}))
    runner: web.AppRunner | None = None
    try:
        settings = stack.settings[region_names[0]].model_copy(update=update)
        runner, url = await serve_app(registration_app(settings))
        async with aiohttp.ClientSession() as session:
            yield RegistrationEnv(stack, url, settings, pool, session)
    finally:
        await outbox_settled(pool)
        if runner is not None:
            await runner.cleanup()
        await exits.aclose()
