"""The development gateway against real upstream aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devstack.gateway import MAX_BODY_BYTES, Upstreams, create_gateway
from shared.logs import configure_logging
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
    gateway = create_gateway({"login": f"http://127.0.0.1:{port}"}, ready_wait_s=0.5)
    client = await aiohttp_client(gateway)
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


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything this process logs (structlog and stdlib alike), as JSON lines."""
    out = io.StringIO()
    configure_logging(service="gateway-test", level="INFO", fmt="json", stream=out)
    yield out
    configure_logging(service="test", level="WARNING", fmt="json")


async def test_client_leaving_mid_body_is_not_an_error(
    aiohttp_server: ServerFactory, log_lines: io.StringIO
) -> None:
    """Regression: a browser leaving a page while the gateway copied the answer made aiohttp
    log ``Error handling request`` with a ``ClientConnectionResetError`` traceback at error
    level. A client going away is nobody's error: an info line, nothing at error level.

    The gateway runs as ``attune dev`` runs it (an ``AppRunner``, whose handlers are not
    cancelled when their client goes away; aiohttp's test server would cancel them)."""
    streamed = asyncio.Event()
    finished = asyncio.Event()

    async def slow_page(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for _ in range(500):
                await response.write(b"x" * 65536)
                streamed.set()
                await asyncio.sleep(0.01)
            await response.write_eof()
        except ConnectionError:
            pass  # the gateway dropped this upstream request
        finally:
            finished.set()
        return response

    upstream = web.Application()
    upstream.router.add_get("/app/page", slow_page)
    server = await aiohttp_server(upstream)
    runner = web.AppRunner(
        create_gateway({"checkins": str(server.make_url(""))}), handle_signals=False
    )
    await runner.setup()
    site = web.SockSite(runner, socket.create_server(("127.0.0.1", 0)))
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /app/page HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await streamed.wait()
        writer.transport.abort()  # the browser navigates away: a reset, mid-body
        # The gateway stops copying, which drops its upstream request: the page's handler ends.
        await asyncio.wait_for(finished.wait(), 30)
        await asyncio.sleep(0.2)  # room for aiohttp to log what it would log after the handler
    finally:
        await runner.cleanup()
    entries = [json.loads(line) for line in log_lines.getvalue().splitlines() if line]
    assert any(e["event"] == "client_went_away" for e in entries), entries
    errors = [e for e in entries if e["level"] in ("error", "critical")]
    assert errors == [], errors[0]


async def test_requests_wait_for_a_service_that_is_not_ready_yet(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    """Regression: at start-up the gateway answered 502 for every request that arrived before
    the service listened. It waits for the service to be ready instead."""
    port = _closed_port()
    upstreams = Upstreams({"login": f"http://127.0.0.1:{port}"}, ready=False)
    client = await aiohttp_client(create_gateway(upstreams))
    pending = asyncio.create_task(client.get("/lti/login/x"))
    await asyncio.sleep(0.5)
    assert not pending.done()
    server = await aiohttp_server(upstream_app("login"), port=port)
    upstreams.mark_ready("login")
    resp = await asyncio.wait_for(pending, 10)
    assert resp.status == 200
    assert (await resp.json())["service"] == "login"
    await server.close()


async def test_a_refused_connection_is_retried_until_the_service_listens(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    """A service restarting (its readiness not yet withdrawn) refuses connections for a
    moment: nothing was sent, so the gateway tries again instead of answering 502."""
    port = _closed_port()
    client = await aiohttp_client(create_gateway({"login": f"http://127.0.0.1:{port}"}))
    pending = asyncio.create_task(client.post("/lti/login/x", data=b"a=1"))
    await asyncio.sleep(0.6)
    server = await aiohttp_server(upstream_app("login"), port=port)
    resp = await asyncio.wait_for(pending, 10)
    assert resp.status == 200
    assert (await resp.json())["body"] == "a=1"
    await server.close()


async def test_a_connection_lost_before_the_answer_is_retried_for_safe_methods_only(
    aiohttp_client: ClientFactory,
) -> None:
    """Regression (CI, test_dev_stack): a request sent right after a service was SIGKILLed
    went out on a kept-alive connection to the dead process and came back 502 ("failed to
    answer": aiohttp retries an idempotent request once, but the pool held two connections to
    the dead process). A connection lost before any answer is sent again within the wait for
    GET, HEAD and OPTIONS (idempotent: RFC 9110 9.2.2); a POST may have been processed, so it
    is not repeated."""
    seen: list[bytes] = []
    dying = 2  # connections that die before answering, then one that answers, and so on

    async def dying_then_serving(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b" ", 1)[0])
        if len(seen) % (dying + 1):
            writer.transport.abort()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(dying_then_serving, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await aiohttp_client(create_gateway({"login": f"http://127.0.0.1:{port}"}))
    resp = await client.get("/lti/login")
    assert (resp.status, await resp.text()) == (200, "ok")
    assert seen == [b"GET"] * 3
    resp = await client.post("/lti/login", data=b"a=1")
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unavailable"
    assert seen == [b"GET"] * 3 + [b"POST"]
    server.close()
    await server.wait_closed()


async def test_a_service_not_ready_within_the_wait_is_503(aiohttp_client: ClientFactory) -> None:
    upstreams = Upstreams({"login": f"http://127.0.0.1:{_closed_port()}"}, ready=False)
    client = await aiohttp_client(create_gateway(upstreams, ready_wait_s=0.3))
    resp = await client.get("/lti/login")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "2"
    assert (await resp.json())["error"]["code"] == "upstream_starting"
    # The probes never wait: they say what is.
    resp = await client.get("/_services/login/readyz")
    assert resp.status == 502


async def test_a_body_that_does_not_arrive_is_408_and_the_connection_closed(
    aiohttp_server: ServerFactory,
) -> None:
    """Regression: a client that sent headers and part of a body, then nothing, held its
    request (and a connection) open for ever. After the body timeout: 408, connection closed."""
    upstream = await aiohttp_server(upstream_app("checkins"))
    gateway = await aiohttp_server(
        create_gateway({"checkins": str(upstream.make_url(""))}, body_timeout_s=0.5)
    )
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(
        b"POST /api/checkins/x HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"a":'
    )
    await writer.drain()
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"connection: close" in head.lower(), head
    assert json.loads(body)["error"]["code"] == "request_timeout"
