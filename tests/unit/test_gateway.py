"""The development gateway against real upstream aiohttp servers on loopback."""

from __future__ import annotations

import io
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devstack.gateway import MAX_BODY_BYTES, create_gateway
from shared.routes import SERVICES

ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def upstream_app(name: str) -> web.Application:
    """A stand-in service that reports what it received."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "service": name,
                "method": request.method,
                "raw_path": request.raw_path,
                "query": dict(request.query),
                "body": (await request.read()).decode(),
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/lti/login/elsewhere")

    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="cookies")
        response.set_cookie("a", "1", httponly=True)
        response.set_cookie("b", "2", samesite="None", secure=True)
        return response

    async def hop(request: web.Request) -> web.Response:
        return web.Response(
            text="hop",
            headers={
                "Connection": "X-Private",
                "X-Private": "secret",
                "Keep-Alive": "timeout=5",
                "X-Kept": "yes",
            },
        )

    async def gzipped(request: web.Request) -> web.Response:
        response = web.Response(text="compressed " * 100)
        response.enable_compression(web.ContentCoding.gzip)
        return response

    async def probe(request: web.Request) -> web.Response:
        return web.json_response({"probe": request.path, "service": name})

    app = web.Application()
    app.router.add_get("/lti/login/redirect", redirect)
    app.router.add_get("/lti/login/cookies", cookies)
    app.router.add_get("/lti/login/hop", hop)
    app.router.add_get("/lti/login/gzip", gzipped)
    app.router.add_get("/readyz", probe)
    app.router.add_get("/healthz", probe)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def gateway(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> TestClient[Any, Any]:
    upstreams = {}
    for name in ("login", "registration", "checkins"):
        server = await aiohttp_server(upstream_app(name))
        upstreams[name] = str(server.make_url("")).rstrip("/")
    return await aiohttp_client(create_gateway(upstreams))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_routes_by_longest_prefix(gateway: TestClient[Any, Any]) -> None:
    for path, service in [
        ("/lti/login", "login"),
        ("/lti/login/x/y", "login"),
        ("/admin/platforms", "registration"),
        ("/api/checkins/1", "checkins"),
        ("/static/app.js", "checkins"),
    ]:
        resp = await gateway.get(path)
        assert resp.status == 200, path
        assert (await resp.json())["service"] == service, path


async def test_forwards_method_raw_query_and_body(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.post(
        "/api/checkins/x%2Fy?a=1&b=%20two&a=3",
        data=b'{"mood": 4}',
        headers={"Content-Type": "application/json", "X-Request-Id": "abcdefgh1234"},
    )
    assert resp.status == 200
    seen = await resp.json()
    assert seen["method"] == "POST"
    assert seen["raw_path"] == "/api/checkins/x%2Fy?a=1&b=%20two&a=3"
    assert seen["body"] == '{"mood": 4}'
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["x-request-id"] == "abcdefgh1234"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == f"{gateway.host}:{gateway.port}"


async def test_client_cannot_spoof_forwarded_headers(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get(
        "/app", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    )
    seen = (await resp.json())["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"


async def test_body_over_limit_is_413(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.post("/api/checkins", data=io.BytesIO(b"x" * (MAX_BODY_BYTES + 1)))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request_too_large"


async def test_redirects_are_returned_not_followed(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get("/lti/login/redirect", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/lti/login/elsewhere"


async def test_multiple_set_cookie_headers_survive(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get("/lti/login/cookies")
    cookies = resp.headers.getall("Set-Cookie")
    assert len(cookies) == 2
    assert any(c.startswith("a=1") and "HttpOnly" in c for c in cookies)
    assert any(c.startswith("b=2") and "SameSite=None" in c and "Secure" in c for c in cookies)


async def test_gateway_keeps_no_cookies_between_clients(gateway: TestClient[Any, Any]) -> None:
    await gateway.get("/lti/login/cookies")
    gateway.session.cookie_jar.clear()
    seen = (await (await gateway.get("/lti/login/echo")).json())["headers"]
    assert "cookie" not in seen


async def test_hop_by_hop_request_headers_dropped(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get(
        "/lti/login/echo",
        headers={
            "Connection": "keep-alive, X-Conn-Only",
            "X-Conn-Only": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Foo",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Kept": "yes",
        },
    )
    seen = set((await resp.json())["headers"])
    for dropped in ("x-conn-only", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"):
        assert dropped not in seen
    assert "x-kept" in seen


async def test_hop_by_hop_response_headers_dropped(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get("/lti/login/hop")
    assert resp.status == 200
    assert "X-Private" not in resp.headers
    assert "Keep-Alive" not in resp.headers
    assert resp.headers["X-Kept"] == "yes"
    assert await resp.text() == "hop"


async def test_encoded_body_passes_through_untouched(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get("/lti/login/gzip", headers={"Accept-Encoding": "gzip"})
    assert resp.headers["Content-Encoding"] == "gzip"
    assert await resp.text() == "compressed " * 100


async def test_head_request(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.head("/lti/login/cookies")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "7"
    assert await resp.read() == b""


async def test_unrouted_path_is_404_json(gateway: TestClient[Any, Any]) -> None:
    for path in ("/nope", "/lti", "/lti/loginx", "/_services/nosuch/readyz"):
        resp = await gateway.get(path)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "not_found", path


async def test_service_probes(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get("/_services/registration/readyz")
    assert resp.status == 200
    assert await resp.json() == {"probe": "/readyz", "service": "registration"}


async def test_gateway_healthz_and_index(gateway: TestClient[Any, Any]) -> None:
    resp = await gateway.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    resp = await gateway.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert '<a href="/_services/login/readyz">' in page


async def test_upstream_down_is_502(aiohttp_client: ClientFactory) -> None:
    port = _closed_port()
    client = await aiohttp_client(create_gateway({"login": f"http://127.0.0.1:{port}"}))
    for path in ("/lti/login", "/_services/login/readyz"):
        resp = await client.get(path)
        assert resp.status == 502, path
        assert (await resp.json())["error"]["code"] == "upstream_unavailable"


async def test_routed_service_missing_from_map_is_502(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_gateway({}))
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unavailable"


def test_unknown_service_names_are_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        create_gateway({"bogus": "http://127.0.0.1:1", SERVICES[0]: "http://127.0.0.1:1"})
