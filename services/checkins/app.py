"""The checkins service: the check-in product (UI, API, insights).

Every API request is authenticated by the launch token the launch service handed to the
browser; the page's own JavaScript sends it in a header, so nothing depends on third-party
cookies inside the LMS iframe.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from services.checkins import api, auth, deep_linking, emotions, rights
from services.checkins.deployments import deployments_ctx, read_only_middleware
from services.checkins.keys import PAGES_KEY, PSEUDONYMS_KEY, TOKENS_KEY
from services.checkins.nrps import nrps_ctx
from services.checkins.privacy import Pseudonyms
from services.checkins.recurrence import recurrence_ctx
from services.checkins.roster import roster_ctx
from shared.app import service_app
from shared.cells.keys import cell_rotation_ctx
from shared.http import http_ctx
from shared.i18n.jinja import environment, page_context
from shared.i18n.languages import Language
from shared.i18n.web import set_language
from shared.keys.signer import signer_ctx
from shared.lti.frame import REF_PARAM, with_frame_ancestors
from shared.lti.launch_token import LaunchTokens
from shared.lti.urls import LANG_PARAM
from shared.lti.wiring import (
    FRAME_REFS_KEY,
    SECRETS_KEY,
    configure_lti,
    framed_by,
    platform_frames_ctx,
)
from shared.settings import Settings
from shared.web import HTML_SECURITY_HEADERS, SETTINGS_KEY

SERVICE = "checkins"
HERE = Path(__file__).parent
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'"
)


API = "/api/checkins"


@functools.lru_cache(maxsize=32)
def page_strings(lang: Language, group: int) -> tuple[dict[str, Any], str]:
    """The page's strings in ``lang`` and its JSON data block (the same for every request in
    that language: made once)."""
    strings = emotions.catalogue(lang, group=group)
    # A JSON data block is never executed, so it passes `script-src 'self'`; "<" is escaped so
    # no string can end the block.
    data = json.dumps(
        {"strings": strings, "vocabularies": emotions.vocabulary_payload(lang)},
        ensure_ascii=False,
    ).replace("<", "\\u003c")
    return strings, data


async def app_page(request: web.Request) -> web.Response:
    # The launch chose the language (lang=, also in the token); without one, the browser's.
    lang = set_language(request, request.query.get(LANG_PARAM))
    strings, data = page_strings(lang, request.app[SETTINGS_KEY].checkin_min_class_size)
    html = (
        request.app[PAGES_KEY]
        .get_template("app.html")
        .render(t=strings, data=data, **page_context(lang))
    )
    # The launch redirect names the platform in a signed reference (f=): the page may be framed
    # by that platform's LMS pages only (and the page the launch proved it came from). No
    # reference, or a forged or expired one: 'self' only.
    ref = request.app[FRAME_REFS_KEY].read(request.query.get(REF_PARAM))
    ancestors = await framed_by(request.app, ref.platform_id, ref.origin) if ref is not None else ()
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            **HTML_SECURITY_HEADERS,
            "Content-Security-Policy": with_frame_ancestors(APP_CSP, ancestors),
            "Cache-Control": "no-store",
        },
    )


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, service=SERVICE, relays_events=True)
    configure_lti(app)
    app.middlewares.append(auth.language_middleware)
    app.middlewares.append(api.validation_middleware)
    app.middlewares.append(read_only_middleware)
    app[PAGES_KEY] = environment(jinja2.FileSystemLoader(str(HERE / "templates")))

    async def tokens_ctx(app: web.Application) -> AsyncIterator[None]:
        app[TOKENS_KEY] = LaunchTokens(app[SECRETS_KEY], ttl_s=app[SETTINGS_KEY].launch_token_ttl_s)
        app[PSEUDONYMS_KEY] = Pseudonyms(app[SECRETS_KEY])
        yield

    app.cleanup_ctx.append(tokens_ctx)
    app.cleanup_ctx.append(platform_frames_ctx)
    app.cleanup_ctx.append(roster_ctx)
    app.cleanup_ctx.append(deployments_ctx)
    app.cleanup_ctx.append(rights.retention_ctx)
    app.cleanup_ctx.append(recurrence_ctx)
    app.cleanup_ctx.append(http_ctx)
    if settings.key_encryption_keys is not None:
        # Deep-linking responses and NRPS token requests are signed with the tool key: the
        # cell's own. Outside the home region no jwks service runs, so checkins rotates them
        # (their public halves go to the home region's JWKS; shared.cells.keys).
        if settings.is_remote_cell:
            app.cleanup_ctx.append(cell_rotation_ctx)
        app.cleanup_ctx.append(signer_ctx)
        app.cleanup_ctx.append(nrps_ctx)
    app.router.add_get("/app/", app_page)
    app.router.add_post("/app/deep-link", deep_linking.deep_link_return)
    app.router.add_get(f"{API}/me", api.me)
    app.router.add_get(f"{API}/checkins", api.list_checkins)
    app.router.add_post(f"{API}/checkins", api.create_checkin)
    app.router.add_get(f"{API}/checkins/{{checkin_id}}", api.get_checkin)
    app.router.add_patch(f"{API}/checkins/{{checkin_id}}", api.update_checkin)
    app.router.add_delete(f"{API}/checkins/{{checkin_id}}", api.delete_checkin)
    app.router.add_post(f"{API}/checkins/{{checkin_id}}/close", api.close_checkin)
    app.router.add_put(f"{API}/checkins/{{checkin_id}}/response", api.answer)
    app.router.add_get(f"{API}/history", api.history)
    app.router.add_get(f"{API}/insights", api.insights)
    app.router.add_get(f"{API}/students", api.students)
    app.router.add_get(f"{API}/export", rights.export_course)
    app.router.add_get(f"{API}/history/export", rights.export_own)
    app.router.add_static("/static", HERE / "static", append_version=False)
    return app
