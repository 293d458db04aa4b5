"""The registration service: dynamic and manual registration, Canvas JSON config, admin.

Routes (all owned by this service in ``shared.routes``):

- ``GET|POST /lti/register``: LTI Dynamic Registration (install page, then the registration);
- ``GET /lti/config/canvas.json``: the Canvas developer key JSON configuration;
- ``GET /lti/config/moodle.json``: the values for Moodle's "Configure a tool manually";
- ``/api/admin/...``: the admin API (admin token required); ``/admin/...``: its pages.

It runs in the home region only (one writer of the registrations): every change also
publishes the registration's state for the other cells, the whole state is published again at
start and every ``ATTUNE_REGISTRATION_REPUBLISH_S``, and the other cells' first sightings of
deployments are read from their clusters (``ATTUNE_CELL_KAFKA``; ``shared.cells``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.registration import admin, dynamic
from services.registration.toolconfig import (
    CANVAS_AWS_REGIONS,
    canvas_json,
    moodle_manual_json,
)
from services.registration.wiring import (
    ADMIN_STATIC,
    FORM_SIGNER_KEY,
    PAGES_KEY,
    REGISTER_STATIC,
    STATIC_DIR,
    pages,
    region_of,
)
from shared.app import service_app
from shared.cells.registrations import republish_ctx
from shared.cells.sightings import sightings_ctx
from shared.http import http_ctx
from shared.logs import get_logger
from shared.lti.wiring import SECRETS_KEY, URLS_KEY, configure_lti
from shared.settings import Settings, SettingsError
from shared.signing import TokenSigner
from shared.web import ERROR_AUDIENCE_KEY, SETTINGS_KEY

SERVICE = "registration"
FORM_PURPOSE = "attune:registration-form:v1"

log = get_logger(__name__)


async def canvas_config(request: web.Request) -> web.Response:
    body = canvas_json(request.app[URLS_KEY], request.app[SETTINGS_KEY])
    return web.json_response(body, headers={"Cache-Control": "public, max-age=300"})


async def moodle_config(request: web.Request) -> web.Response:
    """``?region=eu-west-1``: the values for a Moodle served by that region's cell (default:
    the home region's, as a manual registration without a region is)."""
    settings = request.app[SETTINGS_KEY]
    region = region_of(request) or settings.region
    body = moodle_manual_json(request.app[URLS_KEY], settings, region)
    return web.json_response(body, headers={"Cache-Control": "public, max-age=300"})


async def _announce_regions(app: web.Application) -> AsyncIterator[None]:
    others = [r for r in app[URLS_KEY].regions if r not in CANVAS_AWS_REGIONS]
    if others:
        log.warning(
            "regions_not_in_canvas_json",
            regions=others,
            detail="oidc_initiation_urls lists only regions named like Canvas's AWS regions; "
            "Canvas installs in other regions use oidc_initiation_url (the home region).",
        )
    yield


def create_app(settings: Settings) -> web.Application:
    if settings.is_remote_cell:
        raise SettingsError(
            "invalid configuration: the registration service runs in the home region only "
            "(ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS is set: this is another region's cell, whose "
            "registrations are a copy of the home's)"
        )
    app = service_app(settings, service=SERVICE, relays_events=True)
    app[ERROR_AUDIENCE_KEY] = "admin"  # LMS administrators and whoever runs Attune
    configure_lti(app)
    unknown = sorted(set(settings.cells()) - set(app[URLS_KEY].regions))
    if unknown:
        raise SettingsError(
            f"invalid configuration: ATTUNE_CELL_KAFKA is invalid: {', '.join(unknown)} "
            "is not in ATTUNE_REGIONS"
        )
    app.cleanup_ctx.append(http_ctx)
    app.cleanup_ctx.append(_announce_regions)
    app.cleanup_ctx.append(republish_ctx)
    app.cleanup_ctx.append(sightings_ctx)
    app[PAGES_KEY] = pages()
    secrets: list[bytes] = app[SECRETS_KEY]
    app[FORM_SIGNER_KEY] = TokenSigner(secrets, FORM_PURPOSE)
    app.router.add_get(dynamic.REGISTER_PATH, dynamic.start)
    app.router.add_post(dynamic.REGISTER_PATH, dynamic.finish)
    app.router.add_get("/lti/config/canvas.json", canvas_config)
    app.router.add_get("/lti/config/moodle.json", moodle_config)
    admin.add_routes(app)
    app.router.add_static(REGISTER_STATIC, STATIC_DIR, append_version=False)
    app.router.add_static(ADMIN_STATIC, STATIC_DIR, append_version=False)
    return app
