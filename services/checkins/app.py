"""The checkins service: the check-in product (UI, API, insights).

Every API request is authenticated by the launch token the launch service handed to the
browser; the page's own JavaScript sends it in a header, so nothing depends on third-party
cookies inside the LMS iframe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.checkins.auth import identity
from shared.app import service_app
from shared.lti.launch_token import LaunchTokens
from shared.lti.wiring import SECRETS_KEY, configure_lti
from shared.settings import Settings
from shared.web import HTML_SECURITY_HEADERS, SETTINGS_KEY

SERVICE = "checkins"
HERE = Path(__file__).parent
TOKENS_KEY = web.AppKey("launch_tokens", LaunchTokens)
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'"
)


async def app_page(request: web.Request) -> web.Response:
    return web.Response(
        body=(HERE / "templates" / "app.html").read_bytes(),
        content_type="text/html",
        headers={
            **HTML_SECURITY_HEADERS,
            "Content-Security-Policy": APP_CSP,
            "Cache-Control": "no-store",
        },
    )


async def me(request: web.Request) -> web.Response:
    who = identity(request, request.app[TOKENS_KEY])
    return web.json_response(
        {
            "launch_id": who.launch_id,
            "platform_id": who.platform_id,
            "deployment_id": who.deployment_id,
            "context_id": who.context_id,
            "resource_link_id": who.resource_link_id,
            "roles": list(who.roles),
            "is_teacher": who.is_teacher,
            "message_type": who.message_type,
            "expires_at": who.expires_at,
        },
        headers={"Cache-Control": "no-store"},
    )


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, service=SERVICE, relays_events=True)
    configure_lti(app)

    async def tokens_ctx(app: web.Application) -> AsyncIterator[None]:
        app[TOKENS_KEY] = LaunchTokens(app[SECRETS_KEY], ttl_s=app[SETTINGS_KEY].launch_token_ttl_s)
        yield

    app.cleanup_ctx.append(tokens_ctx)
    app.router.add_get("/app/", app_page)
    app.router.add_get("/api/checkins/me", me)
    app.router.add_static("/static", HERE / "static", append_version=False)
    return app
