"""LTI Dynamic Registration (IMS LTI-DR 1.0; Canvas and Moodle flavours).

``GET /lti/register?openid_configuration=...&registration_token=...`` fetches and validates the
platform's configuration and shows the install page: placements to choose and the install code
(or admin token) that guards it. ``POST /lti/register`` carries a signed, short-lived form value
binding the configuration URL and the registration token; it re-fetches and re-validates the
configuration (a hidden field is never trusted for a URL), checks the credential and the
platform's keys, posts the registration to the platform and stores the result in one
transaction with its event, its audit row and the use of the install code. A platform refusing
the registration stores nothing.

A dynamic registration creates a registration. It updates an existing (issuer, client_id) only
with a re-registration code an admin issued for that platform, or with the admin token; any
other collision is refused (``registration_collision``), audited, and changes nothing — the
caller never sees the other registration's data (``store.save_registration``).
"""

from __future__ import annotations

import functools
import html
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.registration import credentials, errors, outbound, platform_jwks, store
from services.registration.auth import authenticate
from services.registration.platform_config import (
    PlatformConfiguration,
    validate,
    without_query,
)
from services.registration.queries import PlatformRecord
from services.registration.toolconfig import (
    PLACEMENT_IDS,
    PRIVACY_LABELS,
    TOOL_CONFIG,
    Product,
    choices,
    compare,
    describe_diff,
    registration_request,
    scopes,
    services_of,
    summarize,
    validate_choice,
)
from services.registration.wiring import (
    FORM_SIGNER_KEY,
    REGISTER_STATIC,
    lms_page_csp,
    region_of,
    render,
)
from shared.db import POOL_KEY
from shared.errors import AttuneError
from shared.forms import read_form
from shared.http import HTTP_KEY, OutboundError
from shared.i18n.web import request_language
from shared.identifiers import identifier
from shared.logs import get_logger
from shared.lti.wiring import CLOUDS_KEY, URLS_KEY
from shared.signing import InvalidToken
from shared.storable import storable_json
from shared.web import METRICS_KEY, REQUEST_ID_KEY, SETTINGS_KEY

log = get_logger(__name__)

REGISTER_PATH = "/lti/register"
FORM_TTL_S = 30 * 60
MAX_URL = 2048
MAX_TOKEN = 3000  # keeps the signed form value under TokenSigner's 8 KiB bound
_TOKEN_SHAPE = re.compile(r"^[\x21-\x7e]+$")
MAX_PLATFORM_ERROR = 300
UNSTORABLE = "it contains NUL characters or unpaired surrogates"


def policy_for(product: Product) -> str:
    # Canvas: one global developer key (client_id) is installed in many accounts and courses,
    # each a new deployment_id. Moodle: the returned deployment; more show up as Moodle creates
    # them. Unknown platforms: new deployments wait for an admin's approval.
    return "hold" if product == "generic" else "accept"


def _check_params(config_url: str | None, token: str | None) -> tuple[str, str]:
    if not config_url:
        raise errors.openid_configuration_missing()
    if not token:
        raise errors.registration_token_missing()
    if len(token) > MAX_TOKEN or not _TOKEN_SHAPE.match(token):
        raise errors.registration_token_invalid()
    if len(config_url) > MAX_URL:
        raise errors.openid_configuration_url_invalid("it is too long")
    return config_url, token


async def fetch_configuration(
    app: web.Application, config_url: str, token: str
) -> PlatformConfiguration:
    """GET the openid configuration with the registration token and validate it."""
    settings = app[SETTINGS_KEY]
    http = app[HTTP_KEY]
    try:
        reply = await outbound.call(
            http,
            "GET",
            config_url,
            bearer=token,
            max_bytes=outbound.MAX_CONFIG_BYTES,
            allow_insecure=settings.allow_insecure_urls,
            timeout_s=settings.http_timeout_s,
        )
    except ValueError:  # urlsplit: e.g. an unbalanced [ in the host
        raise errors.openid_configuration_url_invalid("it is not a URL") from None
    except OutboundError as exc:
        raise _config_fetch_error(exc) from None
    if reply.status in (401, 403):
        raise errors.registration_token_invalid()
    if reply.status != 200:
        raise errors.openid_configuration_unreachable(f"HTTP {reply.status}")
    try:
        doc = reply.json()
    except ValueError:
        raise errors.openid_configuration_malformed("it is not JSON") from None
    if not storable_json(doc):
        raise errors.openid_configuration_malformed(UNSTORABLE)
    return validate(doc, config_url, http.check_url, app[CLOUDS_KEY])


def _config_fetch_error(exc: OutboundError) -> AttuneError:
    if exc.reason == "insecure_url":
        return errors.openid_configuration_url_invalid("only https addresses are accepted")
    if exc.reason == "bad_url":
        return errors.openid_configuration_url_invalid("it has no host")
    if exc.reason == "private_address":
        return errors.openid_configuration_private_address()
    if exc.reason == "too_large":
        return errors.openid_configuration_too_large()
    return errors.openid_configuration_unreachable(exc.reason)


def _count(request: web.Request, outcome: str) -> None:
    metrics = request.app[METRICS_KEY]
    metrics.lti_outcomes.labels(metrics.service, "register", outcome).inc()


async def start(request: web.Request) -> web.Response:
    """The install page."""
    try:
        return await _start(request)
    except AttuneError as exc:
        _count(request, exc.code)
        raise


async def _start(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS_KEY]
    config_url, token = _check_params(
        request.query.get("openid_configuration"), request.query.get("registration_token")
    )
    config = await fetch_configuration(app, config_url, token)
    # The LMS's page origins ride in the signed form, so a page answered before the
    # configuration is fetched again (a refused install code: the retry page) can still be
    # framed by the LMS that opened it, and by nobody else.
    form = app[FORM_SIGNER_KEY].sign(
        {
            "oc": config_url,
            "rt": token,
            "po": config.page_origins,
            "exp": int(time.time()) + FORM_TTL_S,
        }
    )
    return render(
        request,
        "install.html",
        csp=lms_page_csp(config.page_origins),
        static=REGISTER_STATIC,
        action=REGISTER_PATH,
        form=form,
        tool_name=settings.tool_name,
        platform=config,
        product=config.product,
        placements=choices(config.product),
        auth_mode=settings.registration_auth,
        services=services_of(scopes(settings)),
        privacy_level=settings.canvas_privacy_level,
        privacy_label=PRIVACY_LABELS[settings.canvas_privacy_level],
        # Canvas sends each school to its region's login URL; others choose a region.
        regions=[] if config.product == "canvas" else list(app[URLS_KEY].regions),
        home_region=settings.region,
    )


async def finish(request: web.Request) -> web.Response:
    """Register with the platform and store the result."""
    try:
        response = await _finish(request)
    except AttuneError as exc:
        _count(request, exc.code)
        raise
    _count(request, "ok")
    return response


@dataclass(frozen=True)
class Credential:
    actor: str  # for the audit trail
    code_hash: bytes | None = None  # the install code to use up; None: an admin token
    code: store.InstallCode | None = None


async def _credential(request: web.Request, form: Any) -> Credential:
    """Who registers: an admin (admin token) or the holder of an install code — or a refusal."""
    app = request.app
    pool = app[POOL_KEY]
    if app[SETTINGS_KEY].registration_auth == "admin_token":
        value = form.get("admin_token")
        admin = await authenticate(pool, value.strip() if isinstance(value, str) else None)
        return Credential(admin.actor)
    code = form.get("install_code")
    code = code.strip() if isinstance(code, str) else ""
    if not code:
        raise errors.install_code_missing()
    if not credentials.well_formed(code):
        raise errors.install_code_invalid()
    code_hash = credentials.digest(code)
    checked = await store.check_install_code(pool, code_hash)
    return Credential("install-code", code_hash, checked)


async def _check_keys(request: web.Request, config: PlatformConfiguration) -> dict[str, Any]:
    """Refuse a platform without a usable signing key before registering with it; what to
    note in the audit otherwise. Hosted Canvas's key set is Instructure's documented one."""
    if config.hosted_canvas:
        return {}
    settings = request.app[SETTINGS_KEY]
    found = await platform_jwks.check(
        request.app[HTTP_KEY],
        config.jwks_uri,
        allow_insecure=settings.allow_insecure_urls,
        timeout_s=settings.http_timeout_s,
    )
    if found.problem == "private_address":
        raise errors.openid_configuration_private_address()
    if found.problem == "weak_keys_only":
        raise errors.platform_key_too_weak()
    if found.problem == "not_jwks":
        raise errors.platform_jwks_unusable("they are not a JSON Web Key Set")
    if found.problem == "no_rs256_key":
        raise errors.platform_jwks_unusable("there is no RS256 signing key")
    noted: dict[str, Any] = {}
    if found.warning is not None:
        noted["jwks_warning"] = found.warning
    if found.weak_kids:
        noted["weak_keys_ignored"] = found.weak_kids
    return noted


async def _finish(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS_KEY]
    form = await read_form(request)
    signed = form.get("form")
    try:
        bound = app[FORM_SIGNER_KEY].verify(signed if isinstance(signed, str) else "")
    except InvalidToken as exc:
        if exc.reason == "expired":
            raise errors.registration_form_expired() from None
        raise errors.registration_form_invalid() from None
    config_url, token = bound.get("oc"), bound.get("rt")
    if not isinstance(config_url, str) or not isinstance(token, str):
        raise errors.registration_form_invalid()
    config_url, token = _check_params(config_url, token)

    chosen = [v for v in form.getall("placement", []) if isinstance(v, str)]
    region = region_of(request, form.get("region"))
    try:
        who = await _credential(request, form)
    except AttuneError as exc:
        # The signed form is still good: the page offers a field for another code instead of
        # sending the administrator back to start the LMS's registration again.
        exc.page = functools.partial(
            _retry_page,
            form=str(signed),
            page_origins=_page_origins(bound),
            chosen=chosen,
            region=region,
        )
        raise
    config = await fetch_configuration(app, config_url, token)
    if config.product == "canvas" or len(app[URLS_KEY].regions) == 1:
        region = None  # every cell (Canvas: each school signs in at its own region)
    elif region is None:
        region = settings.region
    try:
        chosen = validate_choice(config.product, chosen)
    except ValueError as exc:
        raise errors.placements_invalid(str(exc)) from None
    origin = {
        "openid_configuration": without_query(config_url),
        "registration_endpoint": config.registration_endpoint,
    }
    if who.code is not None:
        kept = await store.check_reregistration(
            app[POOL_KEY], who.code, config.issuer, actor=who.actor, details=origin
        )
        if kept is not None and region is not None:
            region = kept  # a re-registration keeps the region (the admin page moves it)
    noted = await _check_keys(request, config)

    body = registration_request(
        app[URLS_KEY],
        settings,
        config.product,
        chosen,
        region=region,
        lang=request_language(request),
    )
    granted_raw = await _post_registration(request, config, token, body)
    client_id, deployment_ids = _identity(granted_raw)
    requested = summarize(body, config.product)
    granted = summarize(granted_raw, config.product)
    diff = compare(requested, granted)
    record = PlatformRecord(
        issuer=config.issuer,
        client_id=client_id,
        auth_url=config.authorization_endpoint,
        jwks_url=config.jwks_uri,
        token_url=config.token_endpoint,
        product=config.product,
        deployment_policy=policy_for(config.product),
        environment=config.environment,
        name=config.name,
        method="dynamic",
        requested=requested,
        granted=granted,
        platform_config=config.summary(),
        frame_origins=config.page_origins,
        region=region,
    )
    saved = await store.save_registration(
        app[POOL_KEY],
        record,
        deployment_ids,
        actor=who.actor,
        install_code_hash=who.code_hash,
        details={**origin, "placements": chosen, "not_granted": diff, **noted},
    )
    log.info(
        "registration_stored",
        platform_id=saved.platform_id,
        issuer=config.issuer,
        client_id=client_id,
        product=config.product,
        created=saved.created,
        deployment_ids=saved.deployment_ids,
    )
    return render(
        request,
        "registered.html",
        csp=lms_page_csp(config.page_origins),
        static=REGISTER_STATIC,
        tool_name=settings.tool_name,
        platform=config,
        client_id=client_id,
        product=config.product,
        created=saved.created,
        deployment_ids=saved.deployment_ids,
        policy=record.deployment_policy,
        not_granted=describe_diff(diff, request_language(request)),
    )


def _page_origins(bound: dict[str, Any]) -> list[str]:
    """The LMS page origins the install page signed into its form (none: only 'self')."""
    found = bound.get("po")
    if not isinstance(found, list):
        return []
    return [o for o in found if isinstance(o, str)]


def _retry_page(
    request: web.Request,
    exc: AttuneError,
    *,
    form: str,
    page_origins: list[str],
    chosen: list[str],
    region: str | None,
) -> web.Response:
    """The refused credential's page: the problem, and the same form with a field for another
    code (the placements chosen ride along; unknown ones are dropped, never echoed)."""
    settings = request.app[SETTINGS_KEY]
    return render(
        request,
        "install_retry.html",
        csp=lms_page_csp(page_origins),
        status=exc.status,
        static=REGISTER_STATIC,
        action=REGISTER_PATH,
        form=form,
        placements=[p for p in dict.fromkeys(chosen) if p in PLACEMENT_IDS],
        region=region,
        auth_mode=settings.registration_auth,
        tool_name=settings.tool_name,
        message=exc.message,
        code=exc.code,
        request_id=request.get(REQUEST_ID_KEY),
    )


async def _post_registration(
    request: web.Request, config: PlatformConfiguration, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    settings = request.app[SETTINGS_KEY]
    try:
        reply = await outbound.call(
            request.app[HTTP_KEY],
            "POST",
            config.registration_endpoint,
            bearer=token,
            payload=body,
            max_bytes=outbound.MAX_RESPONSE_BYTES,
            allow_insecure=settings.allow_insecure_urls,
            timeout_s=settings.http_timeout_s,
        )
    except OutboundError as exc:
        if exc.reason == "private_address":
            raise errors.openid_configuration_private_address() from None
        if exc.reason == "too_large":
            raise errors.registration_response_invalid("it is too large") from None
        raise errors.registration_endpoint_unreachable(exc.reason) from None
    if reply.status in (401, 403):
        raise errors.registration_token_invalid()
    if not 200 <= reply.status < 300:
        detail = platform_error(reply.status, reply.body)
        log.info(
            "registration_refused_by_platform",
            issuer=config.issuer,
            status=reply.status,
            detail=detail,
        )
        raise errors.registration_rejected(detail)
    try:
        granted = reply.json()
    except ValueError:
        raise errors.registration_response_invalid("it is not JSON") from None
    if not isinstance(granted, dict):
        raise errors.registration_response_invalid("it is not a JSON object")
    if not storable_json(granted):
        raise errors.registration_response_invalid(UNSTORABLE)
    return granted


def _identity(granted: dict[str, Any]) -> tuple[str, list[str]]:
    client_id = identifier(granted.get("client_id"))
    if client_id is None:
        raise errors.registration_response_invalid("it has no usable client_id")
    tool = granted.get(TOOL_CONFIG)
    raw = tool.get("deployment_id") if isinstance(tool, dict) else None
    if raw is None or raw == "":
        return client_id, []  # Canvas: deployments appear at their first launch
    deployment_id = identifier(raw)
    if deployment_id is None:
        raise errors.registration_response_invalid("its deployment_id is not usable")
    return client_id, [deployment_id]


_TAGS = re.compile(r"<[^>]{0,500}>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _error_text(doc: object) -> str | None:
    if not isinstance(doc, dict):
        return None
    parts: list[str] = []
    for key in ("error", "error_description", "message"):
        if isinstance(doc.get(key), str):
            parts.append(doc[key])
    found = doc.get("errors")  # Canvas: {"errors": [...]} with a 422
    for item in found[:10] if isinstance(found, list) else []:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            text = " ".join(
                str(item[k]) for k in ("field", "message") if isinstance(item.get(k), str)
            )
            parts.append(text)
    if isinstance(found, dict):
        parts += [f"{k}: {v}" for k, v in list(found.items())[:10]]
    return ": ".join(p for p in parts if p) or None


def platform_error(status: int, body: bytes) -> str:
    """The platform's own words, made safe to show: text only, one line, bounded."""
    raw = body[:16384].decode("utf-8", errors="replace")
    text: str | None = None
    try:
        text = _error_text(json.loads(raw))
    except ValueError:
        text = None
    if text is None:
        text = html.unescape(_TAGS.sub(" ", raw))
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) > MAX_PLATFORM_ERROR:
        text = text[: MAX_PLATFORM_ERROR - 1] + "…"
    return f"HTTP {status}: {text}" if text else f"HTTP {status} without an explanation"
