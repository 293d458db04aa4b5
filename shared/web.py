"""The application skeleton every service is built on.

``base_app`` returns an ``aiohttp.web.Application`` with: a request id and structured request
log per request, Prometheus metrics, the error edge that turns ``AttuneError`` (and aiohttp's
own HTTP errors) into a JSON or HTML 4xx with a stable ``code`` and turns anything unexpected
into a logged 500 without internals, the rate limits, a 415 ``json_required`` for any body sent
to an ``/api/`` route that is not declared JSON, ``/healthz`` (liveness: the event loop answers),
``/readyz`` (readiness: every registered dependency check passes) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.dberrors import DATABASE_UNAVAILABLE
from shared.errors import AttuneError
from shared.forms import require_json
from shared.i18n.catalogues import _, load_all, translate
from shared.i18n.jinja import environment, page_context
from shared.i18n.web import request_language
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.ratelimit import rate_limit_middleware
from shared.settings import Settings
from shared.tasks import stop_task

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CheckFn = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ReadinessCheck:
    """A dependency probe. ``fn`` raises when the dependency is unusable."""

    name: str
    fn: CheckFn
    required: bool = True
    timeout_s: float = 2.0


SETTINGS_KEY = web.AppKey("settings", Settings)
SERVICE_KEY = web.AppKey("service", str)
METRICS_KEY = web.AppKey("metrics", Metrics)
READINESS_KEY = web.AppKey("readiness", list[ReadinessCheck])
SHUTTING_DOWN_KEY = web.AppKey("shutting_down", asyncio.Event)
TEMPLATES_KEY = web.AppKey("templates", jinja2.Environment)
REQUEST_ID_KEY = web.RequestKey("request_id", str)
# Routes whose successful requests are not logged one by one (probes, and hot public documents
# such as the JWKS: a log line costs more CPU than serving them). Metrics still count them.
QUIET_ROUTES_KEY = web.AppKey("quiet_routes", set[str])
# Who reads this service's error pages: "user" (students and teachers in the LMS: their LMS
# administrator is who helps) or "admin" (the LMS administrator installing Attune and whoever
# runs Attune: the request reference leads to Attune's logs). The pages' wording follows it.
ERROR_AUDIENCE_KEY = web.AppKey("error_audience", str)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_TEMPLATE_DIR = Path(__file__).parent / "templates"

_STATUS_CODES: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", _("Bad request"), _("The request was malformed.")),
    401: ("unauthorized", _("Sign-in required"), _("This page needs credentials.")),
    403: ("forbidden", _("Not allowed"), _("You are not allowed to do this.")),
    404: ("not_found", _("Not found"), _("There is nothing at this address.")),
    405: (
        "method_not_allowed",
        _("Method not allowed"),
        _("This address does not accept that method."),
    ),
    413: (
        "request_too_large",
        _("Request too large"),
        _("The request body is larger than allowed."),
    ),
    415: (
        "unsupported_media_type",
        _("Unsupported content type"),
        _("That content type is refused."),
    ),
    429: ("rate_limited", _("Too many requests"), _("Too many requests; slow down and retry.")),
}


_INTERNAL_ERROR_HINTS = {
    "user": _(
        "Try again. If it keeps happening, give the reference below to your LMS administrator."
    ),
    "admin": _(
        "Try again. If it keeps happening, give the reference below to whoever runs "
        "Attune: it finds this request in Attune's logs."
    ),
}


def _database_unavailable(exc: BaseException) -> bool:
    # aiohttp's own connection errors (outbound HTTP, a peer gone) are not the database's.
    return isinstance(exc, DATABASE_UNAVAILABLE) and not isinstance(exc, aiohttp.ClientError)


# Pages with inline styles only: no script, no form target, no base.
_STATIC_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)
HTML_SECURITY_HEADERS = {
    "Content-Security-Policy": f"{_STATIC_PAGE_CSP}; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Error pages of LMS-facing paths are shown inside the LMS's iframe (a refused launch must say
# why, not leave a blank frame), often before the platform is known. They carry no script, form
# or data, so there is nothing to clickjack: any web origin may frame them. Elsewhere
# (admin, API, unknown paths) errors keep frame-ancestors 'none'.
_LMS_FACING = ("/lti/", "/app/")
_FRAMED_ERROR_CSP = f"{_STATIC_PAGE_CSP}; frame-ancestors *"


def templates() -> jinja2.Environment:
    return environment(jinja2.FileSystemLoader(str(_TEMPLATE_DIR)))


def wants_json(request: web.Request) -> bool:
    """JSON for API paths and clients that prefer it; HTML for people in browsers."""
    if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz"):
        return True
    accept = request.headers.get("Accept", "")
    if "application/json" not in accept:
        return False
    if "text/html" not in accept:
        return True
    return accept.index("application/json") < accept.index("text/html")


def error_response(
    request: web.Request,
    *,
    status: int,
    code: str,
    title: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    request_id = request.get(REQUEST_ID_KEY)
    # In the reader's language (the launch's, else the browser's); the code stays the same.
    lang = request_language(request)
    title, message = translate(title, lang), translate(message, lang)
    hint = translate(hint, lang) if hint else hint
    if wants_json(request):
        body: dict[str, Any] = {"code": code, "message": message}
        if hint:
            body["hint"] = hint
        if request_id:
            body["request_id"] = request_id
        return web.json_response({"error": body}, status=status, headers=headers)
    env = request.app[TEMPLATES_KEY]
    html = env.get_template("error.html").render(
        title=title,
        message=message,
        hint=hint,
        code=code,
        request_id=request_id,
        audience=request.app.get(ERROR_AUDIENCE_KEY, "user"),
        **page_context(lang),
    )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={**HTML_SECURITY_HEADERS, **_error_csp(request.path), **(headers or {})},
    )


def _error_csp(path: str) -> dict[str, str]:
    if path.startswith(_LMS_FACING) or path == "/app":
        return {"Content-Security-Policy": _FRAMED_ERROR_CSP}
    return {}


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, structured request log and metrics for every request."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id
    metrics = request.app[METRICS_KEY]
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            _response_headers(request, response.headers, request_id)
            return response
        except web.HTTPException as exc:  # a raised redirect (errors became responses already)
            status = exc.status
            _response_headers(request, exc.headers, request_id)
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = _route_name(request)
            metrics.http_requests.labels(metrics.service, request.method, route, str(status)).inc()
            metrics.http_latency.labels(metrics.service, request.method, route).observe(elapsed)
            if status >= 400 or route not in request.app[QUIET_ROUTES_KEY]:
                log.info(
                    "request",
                    method=request.method,
                    route=route,
                    path=request.path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


HSTS = "max-age=31536000; includeSubDomains"


def _response_headers(request: web.Request, headers: MutableMapping[str, str], rid: str) -> None:
    headers["X-Request-Id"] = rid
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if _behind_tls(request):
        headers.setdefault("Strict-Transport-Security", HSTS)


def _behind_tls(request: web.Request) -> bool:
    """TLS to this process, or (only behind trusted proxies) TLS to the ingress."""
    if request.secure:
        return True
    if request.app[SETTINGS_KEY].trusted_proxy_hops > 0:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip()
        return proto == "https"
    return False


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one edge where failures become HTTP responses."""
    metrics = request.app[METRICS_KEY]
    try:
        return await handler(request)
    except AttuneError as exc:
        metrics.http_errors.labels(metrics.service, exc.code).inc()
        log.info("request_rejected", code=exc.code, status=exc.status)
        if exc.page is not None and not wants_json(request):
            page = exc.page(request, exc)
            page.headers.update(exc.headers or {})
            return page
        return error_response(
            request,
            status=exc.status,
            code=exc.code,
            title=exc.title,
            message=exc.message,
            hint=exc.hint,
            headers=exc.headers,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, title, message = _STATUS_CODES.get(
            exc.status, ("http_error", _("Request failed"), exc.reason)
        )
        metrics.http_errors.labels(metrics.service, code).inc()
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(
            request,
            status=exc.status,
            code=code,
            title=title,
            message=message,
            headers=headers,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if _database_unavailable(exc):
            metrics.http_errors.labels(metrics.service, "database_unavailable").inc()
            log.warning(
                "database_unavailable",
                path=request.path,
                reason=type(exc).__name__,
                detail=str(exc)[:200],
            )
            return error_response(
                request,
                status=503,
                code="database_unavailable",
                title=_("Temporarily unavailable"),
                message=_("Attune cannot reach its database right now."),
                hint=_("Try again in a moment."),
                headers={"Retry-After": "5"},
            )
        # The only bare catch in the code base: log it once, with the traceback, and show the
        # user a reference instead of internals.
        log.exception("unhandled_error", path=request.path)
        metrics.http_errors.labels(metrics.service, "internal_error").inc()
        return error_response(
            request,
            status=500,
            code="internal_error",
            title=_("Something went wrong"),
            message=_("Attune hit an unexpected error. Nothing was changed."),
            hint=_INTERNAL_ERROR_HINTS[request.app.get(ERROR_AUDIENCE_KEY, "user")],
        )


JSON_API_PREFIX = "/api/"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name the file system refuses (too long, ...)
        return False


@web.middleware
async def static_file_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A static route asked for a file that is not there: aiohttp's ``FileResponse`` would
    answer a bare 404 with no body (and the request log would say 200), and a name the file
    system refuses (over 255 bytes) escaped as ``OSError``, a 500. Both are a ``not_found``
    from the error edge here, like every other 404."""
    if not isinstance(request.match_info.route.resource, web.StaticResource):
        return await handler(request)
    try:
        response = await handler(request)
    except OSError:
        raise web.HTTPNotFound() from None
    if isinstance(response, web.FileResponse):
        path = getattr(response, "_path", None)
        if isinstance(path, Path) and not await asyncio.to_thread(_is_file, path):
            raise web.HTTPNotFound()
    return response


@web.middleware
async def json_api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request to an ``/api/`` route that carries a body must declare it JSON: anything
    else (a form, ``text/plain``, no content type) is refused 415 ``json_required`` before any
    handler runs, so a new API route cannot forget it. (No route or a wrong method stays a 404
    or 405.)"""
    if (
        request.path.startswith(JSON_API_PREFIX)
        and request.can_read_body
        and request.match_info.http_exception is None
    ):
        require_json(request)
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": request.app[SERVICE_KEY]})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS_KEY]
    if app[SHUTTING_DOWN_KEY].is_set():
        return web.json_response({"status": "shutting_down"}, status=503)
    checks = app[READINESS_KEY]
    results = await asyncio.gather(*(_run_check(c) for c in checks))
    body: dict[str, Any] = {}
    ready = True
    for check, error in zip(checks, results, strict=True):
        metrics.readiness.labels(metrics.service, check.name).set(0 if error else 1)
        body[check.name] = {"ok": error is None, "required": check.required}
        if error is not None:
            body[check.name]["error"] = error
            ready = ready and not check.required
    status = 200 if ready else 503
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "service": app[SERVICE_KEY], "checks": body},
        status=status,
    )


async def _run_check(check: ReadinessCheck) -> str | None:
    try:
        await asyncio.wait_for(check.fn(), check.timeout_s)
    except TimeoutError:
        return "timeout"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a probe's failure is data for /readyz, not an error
        return type(exc).__name__
    return None


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_readiness_check(app: web.Application, check: ReadinessCheck) -> None:
    app[READINESS_KEY].append(check)


async def _mark_shutting_down(app: web.Application) -> None:
    app[SHUTTING_DOWN_KEY].set()


def base_app(settings: Settings, *, service: str) -> web.Application:
    """A service's application with the shared middlewares, keys and endpoints installed.

    The service adds its cleanup contexts (pool, Kafka, background tasks), readiness checks and
    routes to the returned app.
    """
    app = web.Application(
        middlewares=[
            request_context_middleware,
            error_middleware,
            rate_limit_middleware(settings),
            json_api_middleware,
            static_file_middleware,
        ],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[SERVICE_KEY] = service
    app[METRICS_KEY] = Metrics(service=service)
    app[READINESS_KEY] = []
    app[SHUTTING_DOWN_KEY] = asyncio.Event()
    load_all()  # every language's catalogue: a missing one stops the service here
    app[TEMPLATES_KEY] = templates()
    app[QUIET_ROUTES_KEY] = {"/healthz", "/readyz", "/metrics"}
    app.on_shutdown.append(_mark_shutting_down)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


def background_task(
    name: str, factory: Callable[[web.Application], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs ``factory(app)`` as a task and cancels it on shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(factory(app), name=name)
        yield
        await stop_task(task)  # logs a failure or a task that would not stop

    ctx.__name__ = f"{name}_ctx"
    return ctx


def run(app: web.Application, settings: Settings) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then drain for ``shutdown_timeout_s``.

    Runs on uvloop when it is installed (Linux): measured to cut the per-request CPU of the
    launch path (bench/launch.py); the standard loop otherwise.
    """
    loop: asyncio.AbstractEventLoop | None = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(
        app,
        loop=loop,
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_s,
        print=None,
        handle_signals=True,
    )
