"""The launch service: id_token verification and the hand-off to the app.

``POST /lti/launch`` runs the verification pipeline of ``shared.lti.launch``; on success one
statement uses up the nonce and writes the launch record and its ``attune.launch.v1`` event,
then the browser goes to the app of this region's cell (``ATTUNE_REGIONS``: the region's own
host, whose checkins alone holds the launch) with a short-lived launch token in the URL fragment
(never sent to a server, never a cookie).

In a cell outside the home region (``ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS`` set) the launch
service also runs the registration mirror (``shared.cells.registrations``): the cell's own copy
of the registrations, which login, launch and checkins read without leaving the region.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from services.launch import queries
from services.launch.observations import Observations
from shared.app import service_app
from shared.batching import GroupWriter
from shared.cells.registrations import mirror_ctx
from shared.db import DB_ERRORS, POOL_KEY
from shared.events.envelope import Event
from shared.forms import read_form
from shared.http import HTTP_KEY, http_ctx
from shared.i18n.jinja import page_context
from shared.i18n.web import set_language
from shared.identifiers import row_id
from shared.ids import uuid7
from shared.logs import get_logger
from shared.lti import claims as C
from shared.lti import errors
from shared.lti.cookies import set_partitioned_cookie
from shared.lti.frame import REF_PARAM, frame_ancestors, secure_origin
from shared.lti.launch import DeploymentHeld, LaunchVerifier, NeedsPlatformStorage, VerifiedLaunch
from shared.lti.launch_token import DeepLinkContext, LaunchTokens, Shares
from shared.lti.platform_keys import PlatformKeys
from shared.lti.state import StateCodec
from shared.lti.urls import LANG_PARAM, LAUNCH_PATH
from shared.lti.wiring import (
    ASSETS_DIR,
    FRAME_REFS_KEY,
    REGISTRATIONS_KEY,
    SECRETS_KEY,
    URLS_KEY,
    configure_lti,
    registrations_ctx,
)
from shared.settings import Settings
from shared.tasks import repeat
from shared.web import (
    HTML_SECURITY_HEADERS,
    METRICS_KEY,
    QUIET_ROUTES_KEY,
    SETTINGS_KEY,
    TEMPLATES_KEY,
    background_task,
)

SERVICE = "launch"
ASSETS = "/lti/launch/assets"
VERIFIER_KEY = web.AppKey("launch_verifier", LaunchVerifier)
TOKENS_KEY = web.AppKey("launch_tokens", LaunchTokens)
CODEC_KEY = web.AppKey("state_codec", StateCodec)
WRITER_KEY = web.AppKey("launch_writer", GroupWriter[queries.LaunchRecord, bool])
OBSERVATIONS_KEY = web.AppKey("launch_observations", Observations)

log = get_logger(__name__)


async def launch(request: web.Request) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS_KEY]
    try:
        response = await _launch(request)
    except errors.LtiError as exc:
        metrics.lti_outcomes.labels(SERVICE, "launch", exc.code).inc()
        raise
    metrics.lti_outcomes.labels(SERVICE, "launch", "ok").inc()
    return response


async def _launch(request: web.Request) -> web.StreamResponse:
    app = request.app
    form = {k: v for k, v in (await read_form(request)).items() if isinstance(v, str)}
    verifier = app[VERIFIER_KEY]
    storage_bind = form.get("lti_storage_bind") if "lti_storage_bind" in form else None
    state = verifier.read_state(form, request.cookies, storage_bind)
    try:
        # Without a cookie the binding comes from Platform Storage: the token is verified first
        # (nothing is recorded), so the page that fetches the binding may name the LMS page
        # origin the token proves, and a bad token is refused without the round trip.
        verified = await verifier.verify(
            state.state if isinstance(state, NeedsPlatformStorage) else state, form, request
        )
    except DeploymentHeld as held:
        await queries.record_held_deployment(
            app[POOL_KEY], held.platform_id, held.deployment_id, app[URLS_KEY].region
        )
        log.info("deployment_held", platform_id=held.platform_id, deployment_id=held.deployment_id)
        raise
    if isinstance(state, NeedsPlatformStorage):
        return _platform_storage_page(request, state, form, verified)
    launch_id = uuid7()
    settings = app[SETTINGS_KEY]
    recorded = await app[WRITER_KEY].write(
        queries.LaunchRecord(
            nonce=verified.nonce,
            nonce_expires_at=_nonce_expiry(verified, settings),
            launch_id=launch_id,
            platform_id=verified.platform.id,
            deployment_id=verified.deployment_id,
            message_type=verified.message_type,
            subject=verified.subject,
            context_id=verified.context_id,
            resource_link_id=verified.resource_link_id,
            roles=list(verified.roles),
            region=verified.region,
            new_deployment=verified.deployment_is_new,
            event=_launch_event(launch_id, verified),
            event_key=f"{verified.platform.id}:{verified.context_id or verified.deployment_id}",
        )
    )
    if not recorded:
        raise errors.nonce_replayed()
    seen = await app[OBSERVATIONS_KEY].record(verified)
    log.info(
        "launch_verified",
        launch_id=str(launch_id),
        platform_id=verified.platform.id,
        deployment_id=verified.deployment_id,
        message_type=verified.message_type,
    )
    language = set_language(request, launch_locale(verified.claims))
    token = app[TOKENS_KEY].issue(
        launch_id=str(launch_id),
        platform_id=verified.platform.id,
        deployment_id=verified.deployment_id,
        subject=verified.subject,
        context_id=verified.context_id,
        resource_link_id=verified.resource_link_id,
        roles=verified.role_kinds,
        message_type=verified.message_type,
        region=verified.region,
        deep_link=_deep_link_context(verified),
        custom_checkin_id=_custom_checkin_id(verified),
        language=language.tag,
        page_origin=seen.page_origin,
        shares=Shares(roster=verified.roster_shared, names=verified.names_shared),
    )
    response = web.Response(
        status=303,
        headers={
            # The app of this cell, which alone holds the launch (docs/architecture.md,
            # "Regions"). f=: which platform (and page origin, proven by this launch) frames
            # the app (signed; picks its CSP frame-ancestors); lang=: the page's language (the
            # token carries it too, for the API's messages).
            "Location": f"{app[URLS_KEY].app_url()}/?{REF_PARAM}="
            f"{app[FRAME_REFS_KEY].issue(verified.platform.id, seen.page_origin)}"
            f"&{LANG_PARAM}={language.tag}#lt={token}",
            "Cache-Control": "no-store",
        },
    )
    # The binding is spent: expire the cookie (with the same attributes, or it would not match).
    set_partitioned_cookie(response, state.cookie_name, "", max_age=0, path=LAUNCH_PATH)
    return response


def _deep_link_context(v: VerifiedLaunch) -> DeepLinkContext | None:
    """For a deep-linking request: what the app's signed response needs, from verified claims."""
    if v.message_type != C.DEEP_LINKING_REQUEST or not v.deep_link_return_url:
        return None
    return DeepLinkContext(
        issuer=v.issuer,
        client_id=v.platform.client_id,
        return_url=v.deep_link_return_url,
        data=v.deep_link_data,
    )


def launch_locale(claims: Mapping[str, Any]) -> str | None:
    """The user's LMS language: ``launch_presentation.locale`` (Canvas: ``I18n.locale`` such
    as ``pt-BR``; Moodle: ``current_language()`` such as ``pt_br``). Anything else: None."""
    presentation = claims.get(C.LAUNCH_PRESENTATION)
    locale = presentation.get("locale") if isinstance(presentation, dict) else None
    return locale if isinstance(locale, str) else None


def _custom_checkin_id(v: VerifiedLaunch) -> str | None:
    """The ``checkin_id`` custom parameter a deep-linked resource link carries (digits only)."""
    custom = v.claims.get(C.CUSTOM)
    value = custom.get("checkin_id") if isinstance(custom, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and row_id(value) is not None else None


def _nonce_expiry(verified: VerifiedLaunch, settings: Settings) -> float:
    # After this moment the token fails its exp or iat-age check anyway, so the nonce row
    # is no longer needed to stop a replay.
    iat = verified.issued_at
    return min(verified.expires_at, iat + settings.jwt_max_age_s) + settings.jwt_leeway_s + 60


def _launch_event(launch_id: uuid.UUID, v: VerifiedLaunch) -> Event:
    return Event(
        type="launch.completed",
        source=SERVICE,
        subject=f"platform:{v.platform.id}:deployment:{v.deployment_id}",
        data={
            "launch_id": str(launch_id),
            "platform": {
                "id": v.platform.id,
                "issuer": v.platform.issuer,
                "client_id": v.platform.client_id,
            },
            "deployment_id": v.deployment_id,
            "new_deployment": v.deployment_is_new,
            "message_type": v.message_type,
            "user": {"sub": v.subject, "name": v.name},
            "roles": list(v.roles),
            "role_kinds": list(v.role_kinds),
            "context": {"id": v.context_id, "title": v.context_title},
            "resource_link_id": v.resource_link_id,
            "nrps_url": v.nrps_url,
            # The token endpoint of the environment the launch came from (hosted Canvas beta
            # and test have their own), for the roster sync the NRPS URL asks for.
            "token_url": v.token_url,
            "region": v.region,
        },
    )


def _platform_storage_page(
    request: web.Request,
    needs: NeedsPlatformStorage,
    form: dict[str, str],
    verified: VerifiedLaunch,
) -> web.Response:
    app = request.app
    state = needs.state
    platform = verified.platform
    ancestors = platform.ancestors_for(verified.deployment_id)
    proven = secure_origin(
        verified.page_origin, allow_insecure=app[SETTINGS_KEY].allow_insecure_urls
    )
    if proven is not None:
        ancestors = (*ancestors, proven)  # signed by the platform: the page it came from
    html = (
        app[TEMPLATES_KEY]
        .get_template("platform_storage.html")
        .render(
            mode="get",
            origin=verified.auth_origin,
            target=state.storage_target,
            key=state.storage_key,
            value=None,
            next=None,
            action=LAUNCH_PATH,
            id_token=form.get("id_token", ""),
            state=form.get("state", ""),
            script=f"{ASSETS}/platform-storage.js",
            # The token is verified before this page: it speaks the launch's language.
            **page_context(set_language(request, launch_locale(verified.claims))),
        )
    )
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            **HTML_SECURITY_HEADERS,
            "Content-Security-Policy": "default-src 'none'; script-src 'self'; base-uri 'none'; "
            f"form-action 'self'; {frame_ancestors(ancestors)}",
            "Cache-Control": "no-store",
        },
    )


async def _purge_expired(app: web.Application) -> None:
    """Every minute: used nonces that can no longer stop a replay, and launch records past
    ``ATTUNE_LAUNCH_RETENTION_DAYS`` (personal data: who launched what, with which roles)."""
    pool = app[POOL_KEY]
    retention_days = app[SETTINGS_KEY].launch_retention_days

    async def purge() -> bool:
        await queries.purge_expired_nonces(pool)  # drains the backlog itself
        if retention_days:
            deleted = await queries.purge_expired_launches(pool, retention_days)
            if deleted:
                log.info("launch_records_purged", count=deleted, retention_days=retention_days)
        return False

    await repeat(purge, every_s=60, first_delay_s=60, errors=DB_ERRORS, event="purge_failed")


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, service=SERVICE, relays_events=True)
    configure_lti(app)
    app.cleanup_ctx.append(http_ctx)
    if settings.is_remote_cell:
        # This cell's copy of the registrations, fed from the home region (one writer).
        app.cleanup_ctx.append(mirror_ctx)
    app.cleanup_ctx.append(registrations_ctx)

    async def verifier_ctx(app: web.Application) -> AsyncIterator[None]:
        codec = StateCodec(app[SECRETS_KEY], ttl_s=settings.state_ttl_s)
        keys = PlatformKeys(
            app[HTTP_KEY],
            cooldown_s=settings.platform_jwks_cooldown_s,
            max_age_s=settings.platform_jwks_max_age_s,
            metrics=app[METRICS_KEY],
        )
        app[CODEC_KEY] = codec
        app[VERIFIER_KEY] = LaunchVerifier(
            app[REGISTRATIONS_KEY],
            keys,
            codec,
            app[URLS_KEY],
            leeway_s=settings.jwt_leeway_s,
            max_age_s=settings.jwt_max_age_s,
        )
        app[TOKENS_KEY] = LaunchTokens(app[SECRETS_KEY], ttl_s=settings.launch_token_ttl_s)
        yield

    app.cleanup_ctx.append(verifier_ctx)

    async def writer_ctx(app: web.Application) -> AsyncIterator[None]:
        app[WRITER_KEY] = writer = queries.launch_writer(app[POOL_KEY], app[URLS_KEY].region)
        app[OBSERVATIONS_KEY] = Observations(
            app[POOL_KEY],
            allow_insecure=settings.allow_insecure_urls,
            remote_cell=app[URLS_KEY].region if settings.is_remote_cell else None,
        )
        yield
        await writer.close()

    app.cleanup_ctx.append(writer_ctx)
    app.cleanup_ctx.append(background_task("purge", _purge_expired))
    # A verified launch is logged once, as launch_verified (with launch id, platform and
    # deployment); the generic per-request line would only repeat it at the same cost.
    app[QUIET_ROUTES_KEY].add(LAUNCH_PATH)
    app.router.add_post(LAUNCH_PATH, launch)
    app.router.add_static(ASSETS, ASSETS_DIR, append_version=False)
    return app
