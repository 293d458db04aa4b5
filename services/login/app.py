"""The login service: OIDC third-party login initiation (per region).

``GET|POST /lti/login`` validates the platform's request against the (cached) registration,
issues a signed state bound to this browser and sends the browser to the platform's auth
endpoint. It writes nothing to the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from shared.app import service_app
from shared.forms import read_form
from shared.i18n.jinja import page_context
from shared.i18n.web import request_language
from shared.lti.cookies import set_partitioned_cookie
from shared.lti.frame import frame_ancestors
from shared.lti.login import LoginFlow, parse_login
from shared.lti.state import StateCodec
from shared.lti.urls import LAUNCH_PATH
from shared.lti.wiring import (
    ASSETS_DIR,
    REGISTRATIONS_KEY,
    SECRETS_KEY,
    URLS_KEY,
    configure_lti,
    registrations_ctx,
)
from shared.settings import Settings
from shared.web import (
    HTML_SECURITY_HEADERS,
    METRICS_KEY,
    QUIET_ROUTES_KEY,
    SETTINGS_KEY,
    TEMPLATES_KEY,
)

SERVICE = "login"
ASSETS = "/lti/login/assets"
FLOW_KEY = web.AppKey("login_flow", LoginFlow)


async def login(request: web.Request) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS_KEY]
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: v for k, v in (await read_form(request)).items() if isinstance(v, str)})
    page_origin = request.headers.get("Origin") if request.method == "POST" else None
    decision = await app[FLOW_KEY].start(parse_login(params), page_origin)
    state = decision.state
    response: web.StreamResponse
    if state.storage_target:
        # The page runs in the LMS's frame: only that platform's page origins may frame it
        # (with those verified launches of the named deployment proved).
        ancestors = frame_ancestors(decision.ancestors)
        html = (
            app[TEMPLATES_KEY]
            .get_template("platform_storage.html")
            .render(
                mode="put",
                origin=decision.auth_origin,
                target=state.storage_target,
                key=state.storage_key,
                value=decision.bind,
                next=decision.auth_url,
                script=f"{ASSETS}/platform-storage.js",
                **page_context(request_language(request)),
            )
        )
        response = web.Response(
            text=html,
            content_type="text/html",
            headers={
                **HTML_SECURITY_HEADERS,
                "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
                f"base-uri 'none'; form-action 'none'; {ancestors}",
                "Cache-Control": "no-store",
            },
        )
    else:
        response = web.Response(
            status=302, headers={"Location": decision.auth_url, "Cache-Control": "no-store"}
        )
    # Partitioned (CHIPS) so the cookie survives in the LMS iframe where third-party cookies
    # are blocked; SameSite=None because the launch arrives as a cross-site form POST.
    set_partitioned_cookie(
        response,
        state.cookie_name,
        decision.bind,
        max_age=app[SETTINGS_KEY].state_ttl_s,
        path=LAUNCH_PATH,
    )
    metrics.lti_outcomes.labels(SERVICE, "login", "ok").inc()
    return response


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, service=SERVICE, relays_events=False)
    configure_lti(app)
    app.cleanup_ctx.append(registrations_ctx)

    async def flow_ctx(app: web.Application) -> AsyncIterator[None]:
        app[FLOW_KEY] = LoginFlow(
            app[REGISTRATIONS_KEY],
            StateCodec(app[SECRETS_KEY], ttl_s=settings.state_ttl_s),
            app[URLS_KEY],
        )
        yield

    app.cleanup_ctx.append(flow_ctx)
    # Successful logins are counted in /metrics, not logged one by one (a log line costs about
    # as much CPU as the login itself); refusals are still logged with their code.
    app[QUIET_ROUTES_KEY].add("/lti/login")
    app.router.add_route("GET", "/lti/login", login)
    app.router.add_route("POST", "/lti/login", login)
    app.router.add_static(ASSETS, ASSETS_DIR, append_version=False)
    return app
