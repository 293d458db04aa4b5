"""The local development gateway: one port in front of every service, like the Ingress.

``create_gateway`` returns an aiohttp application that reverse-proxies each request to the
service that owns its path according to ``shared.routes`` (the same table the Kubernetes
Ingress is rendered from), so URLs in a local run look like production's. Guarantees:

* routing: the owner of ``request.path`` per ``service_for_path``; no owner is a 404 JSON error
  with code ``not_found``. ``/_services/<service>/{healthz,readyz,metrics}`` reach a service's
  own probes (local development only: the Ingress does not expose them);
* forwarding: method, raw path and query string (byte for byte), body (at most 1 MiB, else a
  413 JSON error; all of it within 30 s, else a 408 ``request_timeout`` on a connection that
  is not kept alive, so a client that stops sending cannot hold a request open) and headers minus
  hop-by-hop ones; ``X-Forwarded-For``/``-Proto``/``-Host`` are set by the gateway, which
  plays the edge, so values a client sent are replaced;
* readiness: each upstream is ready or not (``Upstreams``; ``attune dev``'s supervisor marks a
  service ready once its ``/readyz`` answers 200 and not ready while it restarts). A request for
  a service that is not ready waits for it (30 s at most, then a 503 ``upstream_starting`` with
  ``Retry-After``), and a refused connection (nothing was sent) is tried again within the same
  wait, as is a GET, HEAD or OPTIONS whose connection died before any answer (RFC 9110 9.2.2:
  safe to repeat; a POST is not), so start-up and a restart cost a client time, not an error.
  The service probes (``/_services/...``) never wait: they report what is;
* responses come back as the upstream sent them: status, every header (several
  ``Set-Cookie`` included) except hop-by-hop ones, and the body streamed without decoding.
  Redirects are not followed; the browser gets them. A client that goes away mid-body (a
  browser leaving a page) ends the copy quietly (an info line): not an error;
* failures: an upstream still refusing connections when the wait is over is a 502 JSON error
  with code ``upstream_unavailable``; one that does not answer within 30 s is a 504 with code
  ``upstream_timeout``;
* one shared ``ClientSession`` lives in a cleanup context. It keeps no cookies: a shared jar
  would hand one browser's cookies to every other client of the gateway.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from shared.logs import get_logger
from shared.routes import PUBLIC_ROUTES, SERVICES, service_for_path

log = get_logger(__name__)

MAX_BODY_BYTES: Final = 1024 * 1024
UPSTREAM_TIMEOUT_S: Final = 30.0
# How long a request waits for its service to be ready (start-up, a restart after a crash).
READY_WAIT_S: Final = 30.0
# How long a client may take to send its request body.
BODY_TIMEOUT_S: Final = 30.0
_RETRY_CONNECT_S: Final = 0.2
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PROBES: Final = ("healthz", "readyz", "metrics")
_CHUNK = 64 * 1024

# RFC 9110 section 7.6.1: these describe one connection, not the message, so a proxy must not
# pass them on. Proxy-* headers are matched by prefix.
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)
# Recomputed for the new hop (Host, Content-Length) or set by the gateway alone (forwarding).
_REQUEST_REPLACED: Final = frozenset(
    {
        "host",
        "content-length",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)


class Upstreams:
    """The services behind the gateway: each one's base URL and whether it is ready.

    Whoever runs the services (``attune dev``'s supervisor) moves a service between ready and
    not ready and gives it a new address after a restart; requests wait on it
    (``wait_ready``). Built from a plain mapping every service starts ready.
    """

    def __init__(self, urls: Mapping[str, str], *, ready: bool = True) -> None:
        unknown = set(urls) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {', '.join(sorted(unknown))}")
        self._urls = dict(urls)
        self._ready = {name: asyncio.Event() for name in urls}
        if ready:
            for event in self._ready.values():
                event.set()

    def __contains__(self, name: object) -> bool:
        return name in self._urls

    def __iter__(self) -> Iterator[str]:
        return iter(self._urls)

    def url(self, name: str) -> str:
        return self._urls[name]

    def move(self, name: str, url: str) -> None:
        """``name`` now listens at ``url`` (a restarted process on a new port)."""
        self._urls[name] = url

    def is_ready(self, name: str) -> bool:
        return self._ready[name].is_set()

    def mark_ready(self, name: str) -> None:
        self._ready[name].set()

    def mark_not_ready(self, name: str) -> None:
        self._ready[name].clear()

    async def wait_ready(self, name: str, within_s: float) -> bool:
        """Whether ``name`` is ready, waiting up to ``within_s`` seconds for it."""
        if self._ready[name].is_set():
            return True
        try:
            async with asyncio.timeout(max(within_s, 0)):
                await self._ready[name].wait()
        except TimeoutError:
            return False
        return True


UPSTREAMS_KEY = web.AppKey("upstreams", Upstreams)
CLIENT_KEY = web.AppKey("client_session", aiohttp.ClientSession)
READY_WAIT_KEY = web.AppKey("ready_wait_s", float)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)


def _is_hop_by_hop(name: str, listed: frozenset[str]) -> bool:
    lowered = name.lower()
    return lowered in HOP_BY_HOP or lowered.startswith("proxy-") or lowered in listed


def _connection_listed(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Header names a ``Connection`` header declares hop-by-hop (RFC 9110 section 7.6.1)."""
    names: set[str] = set()
    for value in headers.getall("Connection", []):
        names.update(part.strip().lower() for part in value.split(",") if part.strip())
    return frozenset(names)


def forward_request_headers(request: web.Request) -> CIMultiDict[str]:
    """The headers to send upstream: the client's minus hop-by-hop, plus X-Forwarded-*."""
    listed = _connection_listed(request.headers)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if _is_hop_by_hop(name, listed) or name.lower() in _REQUEST_REPLACED:
            continue
        headers.add(name, value)
    headers["X-Forwarded-For"] = request.remote or ""
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    listed = _connection_listed(upstream.headers)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        if not _is_hop_by_hop(name, listed):
            headers.add(name, value)
    return headers


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


async def _read_body(request: web.Request) -> bytes | web.Response:
    """The whole request body, or the error answer: 413 when too large, 408 (connection
    closed) when it does not arrive in time."""
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(
            413, "request_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes."
        )
    except TimeoutError:
        log.info("request_body_timeout", path=request.path, method=request.method)
        response = _error(
            408,
            "request_timeout",
            f"The request body did not arrive within {request.app[BODY_TIMEOUT_KEY]:g} s.",
        )
        response.force_close()  # the rest of the body is unread: the connection is done
        return response


async def _proxy(
    request: web.Request, service: str, raw_path_qs: str, *, wait: bool = True
) -> web.StreamResponse:
    """Send ``request`` to ``service`` at ``raw_path_qs`` and stream its answer back; with
    ``wait``, wait for the service to be ready and retry refused connections meanwhile."""
    upstreams = request.app[UPSTREAMS_KEY]
    if service not in upstreams:
        return _error(502, "upstream_unavailable", f"The {service} service is not running.")
    body: bytes | None = None
    if request.body_exists:
        read = await _read_body(request)
        if isinstance(read, web.Response):
            return read
        body = read
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (request.app[READY_WAIT_KEY] if wait else 0.0)
    while True:
        if wait and not await upstreams.wait_ready(service, deadline - loop.time()):
            log.warning("upstream_not_ready", service=service, path=request.path)
            return _error(
                503,
                "upstream_starting",
                f"The {service} service is starting; try again in a moment.",
                headers={"Retry-After": "2"},
            )
        # encoded=True: the path and query go upstream exactly as the client wrote them.
        url = URL(upstreams.url(service).rstrip("/") + raw_path_qs, encoded=True)
        try:
            return await _forward(request, url, body)
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached the service (a restart in progress): safe to send again.
            if loop.time() + _RETRY_CONNECT_S < deadline:
                log.info("upstream_not_listening", service=service, error=str(exc.os_error))
                await asyncio.sleep(_RETRY_CONNECT_S)
                continue
            return _upstream_error(service, request.path, exc)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # The connection died before any answer (a service killed with requests on its
            # kept-alive connections). Only a safe method may be sent again: a POST may have
            # been processed.
            if request.method in _SAFE_METHODS and loop.time() + _RETRY_CONNECT_S < deadline:
                log.info("upstream_connection_lost", service=service, error=repr(exc))
                await asyncio.sleep(_RETRY_CONNECT_S)
                continue
            return _upstream_error(service, request.path, exc)
        except _UpstreamBroke:
            # The status line is already out: all that is left is to cut the body short,
            # which the client detects from the missing bytes or chunk terminator.
            log.warning("upstream_broke_mid_body", service=service, path=request.path)
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _upstream_error(service, request.path, exc)


class _UpstreamBroke(Exception):
    """The upstream failed after the answer's status line went to the client."""


async def _upstream_chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _UpstreamBroke from exc


async def _forward(request: web.Request, url: URL, body: bytes | None) -> web.StreamResponse:
    async with request.app[CLIENT_KEY].request(
        request.method,
        url,
        headers=forward_request_headers(request),
        data=body,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=_response_headers(upstream)
        )
        try:
            await response.prepare(request)
            async for chunk in _upstream_chunks(upstream):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            # Writing to the client failed: it went away (a browser leaving a page). Not an
            # error of anyone's; the rest of the answer has nowhere to go.
            log.info("client_went_away", path=request.path, status=upstream.status)
        return response


def _upstream_error(service: str, path: str, exc: BaseException) -> web.Response:
    if isinstance(exc, TimeoutError):
        log.warning("upstream_timeout", service=service, path=path)
        return _error(504, "upstream_timeout", f"The {service} service did not answer in time.")
    if isinstance(exc, aiohttp.ClientConnectorError):
        log.warning("upstream_unavailable", service=service, path=path, error=str(exc.os_error))
        return _error(502, "upstream_unavailable", f"The {service} service is not reachable.")
    log.warning("upstream_failed", service=service, path=path, error=repr(exc))
    return _error(502, "upstream_unavailable", f"The {service} service failed to answer.")


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    """Every path not handled by the gateway itself: route by the public routing table."""
    service = service_for_path(request.path)
    if service is None:
        return _error(404, "not_found", "There is nothing at this address.")
    return await _proxy(request, service, request.raw_path)


async def service_probe_handler(request: web.Request) -> web.StreamResponse:
    """``/_services/<service>/<probe>`` → that service's own ``/<probe>``, at once: a probe
    says how the service is now, it does not wait for it."""
    service = request.match_info["service"]
    probe = request.match_info["probe"]
    if service not in request.app[UPSTREAMS_KEY] or probe not in PROBES:
        return _error(404, "not_found", "There is nothing at this address.")
    return await _proxy(request, service, f"/{probe}", wait=False)


async def healthz(request: web.Request) -> web.Response:
    """Liveness of the gateway itself; says nothing about the services behind it."""
    return web.json_response({"status": "ok", "service": "gateway"})


async def index(request: web.Request) -> web.Response:
    """A plain page listing the services, their readiness links and their public routes."""
    e = html.escape
    rows = []
    for service in request.app[UPSTREAMS_KEY]:
        prefixes = ", ".join(e(p) for p, owner in PUBLIC_ROUTES if owner == service)
        link = f"/_services/{e(service)}/readyz"
        rows.append(
            f'<li><b>{e(service)}</b>: <a href="{link}">{link}</a>'
            f" &middot; routes: {prefixes or '(none)'}</li>"
        )
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Attune dev gateway</title>'
        "</head><body><h1>Attune dev gateway</h1><ul>" + "".join(rows) + "</ul></body></html>"
    )
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the one upstream ``ClientSession`` for the gateway's lifetime."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
        # Proxies pass bodies through untouched and must not keep per-client state.
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    ) as session:
        app[CLIENT_KEY] = session
        yield


def create_gateway(
    upstreams: Mapping[str, str] | Upstreams,
    *,
    ready_wait_s: float = READY_WAIT_S,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> web.Application:
    """The gateway app; ``upstreams`` maps a service name to its base URL (``http://h:p``),
    or is an ``Upstreams`` whose readiness its owner keeps.

    Names must come from ``shared.routes.SERVICES``; a routed service missing from the map
    answers 502 ``upstream_unavailable``.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[UPSTREAMS_KEY] = upstreams if isinstance(upstreams, Upstreams) else Upstreams(upstreams)
    app[READY_WAIT_KEY] = ready_wait_s
    app[BODY_TIMEOUT_KEY] = body_timeout_s
    app.cleanup_ctx.append(client_session_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(
        "/_services/{service}/{probe:" + "|".join(PROBES) + "}", service_probe_handler
    )
    app.router.add_route("*", "/{tail:.*}", proxy_handler)
    return app
