"""The local development gateway: one port in front of every service, like the Ingress.

``create_gateway`` returns an aiohttp application that reverse-proxies each request to the
service that owns its path according to ``shared.routes`` (the same table the Kubernetes
Ingress is rendered from), so URLs in a local run look like production's. Guarantees:

* routing: the owner of ``request.path`` per ``service_for_path``; no owner is a 404 JSON error
  with code ``not_found``. ``/_services/<service>/{healthz,readyz,metrics}`` reach a service's
  own probes (local development only: the Ingress does not expose them);
* forwarding: method, raw path and query string (byte for byte), body (at most 1 MiB, else a
  413 JSON error) and headers minus hop-by-hop ones; ``X-Forwarded-For``/``-Proto``/``-Host``
  are set by the gateway, which plays the edge, so values a client sent are replaced;
* responses come back as the upstream sent them: status, every header (several
  ``Set-Cookie`` included) except hop-by-hop ones, and the body streamed without decoding.
  Redirects are not followed; the browser gets them;
* failures: an upstream that refuses the connection is a 502 JSON error with code
  ``upstream_unavailable``; one that does not answer within 30 s is a 504 with code
  ``upstream_timeout``;
* one shared ``ClientSession`` lives in a cleanup context. It keeps no cookies: a shared jar
  would hand one browser's cookies to every other client of the gateway.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Mapping
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

UPSTREAMS_KEY = web.AppKey("upstreams", dict[str, str])
CLIENT_KEY = web.AppKey("client_session", aiohttp.ClientSession)


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


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _proxy(request: web.Request, service: str, raw_path_qs: str) -> web.StreamResponse:
    """Send ``request`` to ``service`` at ``raw_path_qs`` and stream its answer back."""
    base = request.app[UPSTREAMS_KEY].get(service)
    if base is None:
        return _error(502, "upstream_unavailable", f"The {service} service is not running.")
    # encoded=True: the path and query go upstream exactly as the client wrote them.
    url = URL(base.rstrip("/") + raw_path_qs, encoded=True)
    body: bytes | None = None
    if request.body_exists:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(
                413, "request_too_large", f"The request body is larger than {MAX_BODY_BYTES} bytes."
            )
    session = request.app[CLIENT_KEY]
    response: web.StreamResponse | None = None
    try:
        async with session.request(
            request.method,
            url,
            headers=forward_request_headers(request),
            data=body,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=_response_headers(upstream)
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        if response is not None and response.prepared:
            # The status line is already out: all that is left is to cut the body short,
            # which the client detects from the missing bytes or chunk terminator.
            log.warning("upstream_broke_mid_body", service=service, path=request.path)
            raise
        return _upstream_error(service, request.path, exc)


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
    """``/_services/<service>/<probe>`` → that service's own ``/<probe>``."""
    service = request.match_info["service"]
    probe = request.match_info["probe"]
    if service not in request.app[UPSTREAMS_KEY] or probe not in PROBES:
        return _error(404, "not_found", "There is nothing at this address.")
    return await _proxy(request, service, f"/{probe}")


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


def create_gateway(upstreams: Mapping[str, str]) -> web.Application:
    """The gateway app; ``upstreams`` maps a service name to its base URL (``http://h:p``).

    Names must come from ``shared.routes.SERVICES``; a routed service missing from the map
    answers 502 ``upstream_unavailable``.
    """
    unknown = set(upstreams) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services: {', '.join(sorted(unknown))}")
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[UPSTREAMS_KEY] = dict(upstreams)
    app.cleanup_ctx.append(client_session_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(
        "/_services/{service}/{probe:" + "|".join(PROBES) + "}", service_probe_handler
    )
    app.router.add_route("*", "/{tail:.*}", proxy_handler)
    return app
