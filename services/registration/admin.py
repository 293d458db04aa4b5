"""The admin JSON API (``/api/admin/...``) and the small server-rendered admin UI (``/admin/``).

Every API handler starts with ``require_admin``: no admin endpoint does anything for a request
without a valid, unrevoked token, and every change is audited and announced (see ``store``).
The HTML pages hold no data; their own script keeps the token in sessionStorage and sends it
as ``Authorization: Bearer`` — no cookie is ever set.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.registration import credentials, errors, manual, store
from services.registration import queries as q
from services.registration.auth import Admin, require_admin
from services.registration.pagestrings import admin_data
from services.registration.toolconfig import compare, describe_diff, moodle_manual_values
from services.registration.wiring import ADMIN_PAGE_CSP, ADMIN_STATIC, region_of, render
from shared.db import POOL_KEY
from shared.forms import read_json
from shared.http import HTTP_KEY
from shared.i18n.languages import Language
from shared.i18n.web import request_language
from shared.identifiers import identifier, row_id
from shared.logs import get_logger
from shared.lti.frame import normalize_origins
from shared.lti.urls import LAUNCH_PATH, LOGIN_PATH
from shared.lti.wiring import CLOUDS_KEY, URLS_KEY
from shared.web import REQUEST_ID_KEY, SETTINGS_KEY

log = get_logger(__name__)

MAX_AUDIT = 500
MIN_CODE_TTL_S = 300
MAX_LABEL = 200

DATA_RETENTION = (
    "The registration and its deployments were deleted now, and login and launch refuse this "
    "LMS within seconds (platform_unknown / registration_unknown). The audit trail keeps a "
    "record of the registration and of this deletion. Data other services hold about launches "
    "from this LMS (launch records, first sightings of deployments, check-ins and responses) "
    "is not deleted by this request: it stays until those services' own retention removes "
    "it. Registering the same LMS again creates a new platform id, so that older data is not "
    "re-attached to the new registration."
)


def _no_store(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _platform_id(request: web.Request) -> int:
    return int(request.match_info["platform_id"])


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The JSON object sent (415 ``json_required`` for a body that is not JSON); ``{}``
    when there is no body."""
    if not request.can_read_body:
        return {}
    try:
        body = await read_json(request)
    except ValueError:
        raise errors.bad_json("it is not JSON") from None
    if not isinstance(body, dict):
        raise errors.bad_json("it must be a JSON object")
    return body


def _with_diff(platform: dict[str, Any], lang: Language) -> dict[str, Any]:
    requested, granted = platform["requested"], platform["granted"]
    platform["not_granted"] = compare(requested, granted) if requested and granted else {}
    # In words, in the reader's language (the admin page shows them as they are).
    platform["not_granted_summary"] = describe_diff(platform["not_granted"], lang)
    return platform


# --- API -----------------------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    return _no_store({"name": admin.name, "token_id": admin.token_id})


async def list_platforms(request: web.Request) -> web.Response:
    await require_admin(request)
    async with request.app[POOL_KEY].acquire() as conn:
        platforms = await q.list_platforms(
            conn, request.app[SETTINGS_KEY].region, request.app[CLOUDS_KEY]
        )
    return _no_store({"platforms": [_with_diff(p, request_language(request)) for p in platforms]})


async def get_platform(request: web.Request) -> web.Response:
    await require_admin(request)
    async with request.app[POOL_KEY].acquire() as conn:
        platform = await q.get_platform(
            conn, _platform_id(request), request.app[SETTINGS_KEY].region, request.app[CLOUDS_KEY]
        )
    if platform is None:
        raise errors.platform_not_found()
    return _no_store({"platform": _with_diff(platform, request_language(request))})


async def create_platform(request: web.Request) -> web.Response:
    """Manual registration (Moodle's "Configure a tool manually", a Canvas developer key)."""
    admin = await require_admin(request)
    settings = request.app[SETTINGS_KEY]
    body = await _json_body(request)
    try:
        reg = manual.parse(
            body,
            allow_insecure=settings.allow_insecure_urls,
            clouds=request.app[CLOUDS_KEY],
            regions=list(request.app[URLS_KEY].regions),
            home=settings.region,
        )
        await manual.check_jwks(
            request.app[HTTP_KEY],
            reg,
            allow_insecure=settings.allow_insecure_urls,
            timeout_s=settings.http_timeout_s,
        )
    except manual.FieldErrors as exc:
        return _field_errors(request, exc.fields)
    saved = await store.save_registration(
        request.app[POOL_KEY],
        reg.record,
        reg.deployment_ids,
        actor=admin.actor,
        details={"warnings": reg.warnings} if reg.warnings else None,
    )
    async with request.app[POOL_KEY].acquire() as conn:
        platform = await q.get_platform(
            conn, saved.platform_id, settings.region, request.app[CLOUDS_KEY]
        )
    return _no_store(
        {"created": saved.created, "platform": platform, "warnings": reg.warnings},
        status=201 if saved.created else 200,
    )


def _field_errors(request: web.Request, fields: dict[str, str]) -> web.Response:
    error: dict[str, Any] = {
        "code": "validation_failed",
        "message": "Some values are not usable; see fields.",
        "fields": fields,
    }
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        error["request_id"] = request_id
    return _no_store({"error": error}, status=400)


async def _deployment_change(request: web.Request, status: str) -> web.Response:
    admin = await require_admin(request)
    body = await _json_body(request)
    deployment_id = identifier(body.get("deployment_id"))
    label = body.get("label")
    problems: dict[str, str] = {}
    if deployment_id is None:
        problems["deployment_id"] = "is required (1 to 255 printable ASCII characters, no spaces)"
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        problems["label"] = f"must be text of at most {MAX_LABEL} characters"
    if problems:
        return _field_errors(request, problems)
    assert deployment_id is not None
    result = await store.change_deployment(
        request.app[POOL_KEY],
        _platform_id(request),
        deployment_id,
        status=status,
        label=label if isinstance(label, str) else None,
        actor=admin.actor,
    )
    return _no_store({"deployment": result})


async def approve_deployment(request: web.Request) -> web.Response:
    return await _deployment_change(request, "active")


async def disable_deployment(request: web.Request) -> web.Response:
    return await _deployment_change(request, "disabled")


async def set_frame_origins(request: web.Request) -> web.Response:
    """``PUT /api/admin/platforms/{id}/frame-origins`` ``{"frame_origins": [...]}``: the
    origins the LMS's pages come from (the school's Canvas host(s), the Moodle site), allowed
    to frame Attune's pages for this platform. Replaces the list; ``[]`` falls back to what
    the registration implies (see docs/registration.md)."""
    admin = await require_admin(request)
    settings = request.app[SETTINGS_KEY]
    body = await _json_body(request)
    try:
        origins = normalize_origins(
            body.get("frame_origins"), allow_insecure=settings.allow_insecure_urls
        )
    except ValueError as exc:
        return _field_errors(request, {"frame_origins": str(exc)})
    result = await store.change_frame_origins(
        request.app[POOL_KEY], _platform_id(request), origins, actor=admin.actor
    )
    return _no_store({"platform": result})


async def set_region(request: web.Request) -> web.Response:
    """``PUT /api/admin/platforms/{id}/region`` ``{"region": "eu-west-1"}``: the cell whose
    login and launch serve this registration, where its launches and check-ins are stored
    (``null``: any cell, as for Canvas, whose schools each sign in at their own region)."""
    admin = await require_admin(request)
    body = await _json_body(request)
    if "region" not in body:
        return _field_errors(request, {"region": "is required (a region, or null)"})
    region = body["region"]
    problem = manual.region_problem(region, list(request.app[URLS_KEY].regions))
    if problem:
        return _field_errors(request, {"region": problem})
    result = await store.change_region(
        request.app[POOL_KEY],
        _platform_id(request),
        region if isinstance(region, str) else None,
        actor=admin.actor,
    )
    return _no_store({"platform": result})


async def delete_platform(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    result = await store.delete_platform(
        request.app[POOL_KEY], _platform_id(request), actor=admin.actor
    )
    log.info("platform_deleted", platform_id=result["platform_id"], actor=admin.actor)
    return _no_store({"deleted": result, "data_retention": DATA_RETENTION})


async def audit_trail(request: web.Request) -> web.Response:
    await require_admin(request)

    def number(name: str) -> int | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return None
        value = row_id(raw)
        if value is None:
            raise errors.bad_json(f"{name} must be a positive integer")
        return value

    limit = min(number("limit") or 100, MAX_AUDIT)
    async with request.app[POOL_KEY].acquire() as conn:
        entries = await q.list_audit(
            conn, platform_id=number("platform_id"), limit=limit, before_id=number("before")
        )
    return _no_store({"audit": entries})


async def list_install_codes(request: web.Request) -> web.Response:
    await require_admin(request)
    async with request.app[POOL_KEY].acquire() as conn:
        codes = await q.list_install_codes(conn)
    return _no_store({"install_codes": codes})


async def create_install_code(request: web.Request) -> web.Response:
    admin = await require_admin(request)
    settings = request.app[SETTINGS_KEY]
    body = await _json_body(request)
    label = body.get("label")
    ttl = body.get("ttl_s", settings.install_code_ttl_s)
    platform_id = body.get("platform_id")
    problems: dict[str, str] = {}
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL):
        problems["label"] = f"must be text of at most {MAX_LABEL} characters"
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_CODE_TTL_S <= ttl <= 90 * 86400:
        problems["ttl_s"] = f"must be whole seconds between {MIN_CODE_TTL_S} and 7776000"
    if platform_id is not None and (
        not isinstance(platform_id, int) or isinstance(platform_id, bool) or platform_id < 1
    ):
        problems["platform_id"] = "must be the id of a registered platform"
    if problems:
        return _field_errors(request, problems)
    assert isinstance(ttl, int)
    result = await issue_install_code(
        request.app,
        admin,
        label=label if isinstance(label, str) else None,
        ttl_s=ttl,
        for_platform_id=platform_id if isinstance(platform_id, int) else None,
    )
    return _no_store(result, status=201)


async def issue_install_code(
    app: web.Application,
    admin: Admin,
    *,
    label: str | None,
    ttl_s: int,
    for_platform_id: int | None = None,
) -> dict[str, Any]:
    """A single-use install code (shown once); with ``for_platform_id`` a re-registration code
    for that platform (404 ``platform_not_found`` when there is none)."""
    code = credentials.new_install_code()
    result = await store.create_install_code(
        app[POOL_KEY],
        credentials.digest(code),
        label=label,
        ttl_s=ttl_s,
        actor=admin.actor,
        for_platform_id=for_platform_id,
    )
    return {**result, "install_code": code}


async def list_tokens(request: web.Request) -> web.Response:
    await require_admin(request)
    async with request.app[POOL_KEY].acquire() as conn:
        tokens = await q.list_admin_tokens(conn)
    return _no_store({"tokens": tokens})


# --- pages ---------------------------------------------------------------------------------------


async def admin_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return render(
        request,
        "admin.html",
        csp=ADMIN_PAGE_CSP,
        static=ADMIN_STATIC,
        tool_name=settings.tool_name,
        regions=list(request.app[URLS_KEY].regions),
        admin_data=admin_data(request_language(request)),
    )


async def manual_page(request: web.Request) -> web.Response:
    """``?region=``: the Moodle is served by that region's cell (default: the home region)."""
    settings = request.app[SETTINGS_KEY]
    urls = request.app[URLS_KEY]
    region = region_of(request) or settings.region
    return render(
        request,
        "manual.html",
        csp=ADMIN_PAGE_CSP,
        static=ADMIN_STATIC,
        tool_name=settings.tool_name,
        values=moodle_manual_values(urls, settings, region),
        region=region,
        regions=list(urls.regions),
        admin_data=admin_data(request_language(request)),
        login_path=LOGIN_PATH,
        launch_path=LAUNCH_PATH,
    )


def add_routes(app: web.Application) -> None:
    pid = "{platform_id:[0-9]{1,18}}"
    r = app.router
    r.add_get("/api/admin/me", me)
    r.add_get("/api/admin/platforms", list_platforms)
    r.add_post("/api/admin/platforms", create_platform)
    r.add_get(f"/api/admin/platforms/{pid}", get_platform)
    r.add_delete(f"/api/admin/platforms/{pid}", delete_platform)
    r.add_post(f"/api/admin/platforms/{pid}/deployments/approve", approve_deployment)
    r.add_post(f"/api/admin/platforms/{pid}/deployments/disable", disable_deployment)
    r.add_put(f"/api/admin/platforms/{pid}/frame-origins", set_frame_origins)
    r.add_put(f"/api/admin/platforms/{pid}/region", set_region)
    r.add_get("/api/admin/audit", audit_trail)
    r.add_get("/api/admin/install-codes", list_install_codes)
    r.add_post("/api/admin/install-codes", create_install_code)
    r.add_get("/api/admin/tokens", list_tokens)
    r.add_get("/admin", admin_redirect)
    r.add_get("/admin/", admin_page)
    r.add_get("/admin/register/manual", manual_page)


async def admin_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/admin/")
