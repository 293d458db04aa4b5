"""OIDC third-party initiated login: validate the platform's request, build the auth request."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from shared.identifiers import identifier
from shared.lti import errors
from shared.lti.frame import origin_allowed
from shared.lti.registry import Platform, RegistrationCache
from shared.lti.state import LoginState, StateCodec
from shared.lti.urls import ToolUrls

MAX_PARAM = 4096
MAX_AUTH_PREFIXES = 50_000
_STORAGE_TARGET = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_INFO = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class LoginRequest:
    issuer: str
    login_hint: str
    target_link_uri: str
    client_id: str
    lti_message_hint: str | None
    deployment_id: str | None
    canvas_region: str | None
    canvas_environment: str | None
    storage_target: str | None


@dataclass(frozen=True)
class LoginDecision:
    state_token: str
    bind: str
    state: LoginState
    auth_url: str  # full URL of the platform's auth endpoint with every parameter
    auth_origin: str  # the platform origin for Platform Storage postMessages
    platform: Platform  # the registration the login was for
    # The origins that may frame this login's Platform Storage page: the platform's, plus those
    # verified launches of the deployment the login names proved.
    ancestors: tuple[str, ...]


def _deployment_id(value: str | None, name: str) -> str | None:
    if value is not None and identifier(value) is None:
        raise errors.login_bad_param(name)
    return value


def parse_login(params: Mapping[str, str]) -> LoginRequest:
    def get(name: str, required: bool = False) -> str | None:
        value = params.get(name)
        if value is None or value == "":
            if required:
                raise errors.login_missing_param(name)
            return None
        if len(value) > MAX_PARAM or "\x00" in value:
            raise errors.login_bad_param(name)
        return value

    issuer = get("iss", True)
    login_hint = get("login_hint", True)
    target = get("target_link_uri", True)
    client_id = get("client_id", True)
    assert issuer and login_hint and target and client_id
    try:
        scheme = urlsplit(issuer).scheme
    except ValueError:
        raise errors.login_bad_param("iss") from None
    if scheme not in ("https", "http"):
        raise errors.login_bad_param("iss")
    # Deployment ids are identifiers (printable ASCII, at most 255: shared/identifiers.py), as
    # the admin API takes them; anything else never names a deployment.
    deployment_id = _deployment_id(get("lti_deployment_id"), "lti_deployment_id")
    # Canvas's LoginRequest names it deployment_id (lti-advantage gem); the IMS name is
    # lti_deployment_id. Both may come; they must then agree.
    other = _deployment_id(get("deployment_id"), "deployment_id")
    if deployment_id is None:
        deployment_id = other
    elif other is not None and other != deployment_id:
        raise errors.login_bad_param("deployment_id")
    storage = get("lti_storage_target")
    if storage is not None and not _STORAGE_TARGET.fullmatch(storage):
        raise errors.login_bad_param("lti_storage_target")
    return LoginRequest(
        issuer=issuer,
        login_hint=login_hint,
        target_link_uri=target,
        client_id=client_id,
        lti_message_hint=get("lti_message_hint"),
        deployment_id=deployment_id,
        # Informational only, never a reason to refuse: self-hosted Canvas sends
        # canvas_region=not_configured and a test cluster's name as canvas_environment
        # (Lti::LtiAdvantageAdapter#login_request); the issuer decides the environment.
        canvas_region=_informational(params.get("canvas_region")),
        canvas_environment=_informational(params.get("canvas_environment")),
        storage_target=storage,
    )


def _informational(value: object) -> str | None:
    """A value kept for logs only: None unless it has the expected shape, never a reason to
    refuse the login."""
    return value if isinstance(value, str) and _INFO.fullmatch(value) else None


class LoginFlow:
    def __init__(self, registrations: RegistrationCache, codec: StateCodec, urls: ToolUrls) -> None:
        self._registrations = registrations
        self._codec = codec
        self._urls = urls
        # (auth endpoint, client_id) -> (the auth URL with its per-platform parameters encoded
        # once, the platform origin): only login_hint, state and nonce are encoded per login.
        self._auth_prefixes: dict[tuple[str, str], tuple[str, str]] = {}

    def _auth_prefix(self, auth: str, client_id: str) -> tuple[str, str]:
        key = (auth, client_id)
        known = self._auth_prefixes.get(key)
        if known is not None:
            return known
        fixed = urlencode(
            {
                "scope": "openid",
                "response_type": "id_token",
                "response_mode": "form_post",
                "prompt": "none",
                "client_id": client_id,
                "redirect_uri": self._urls.launch_url(),
            }
        )
        parts = urlsplit(auth)
        query = f"{parts.query}&{fixed}" if parts.query else fixed
        prefix = urlunsplit(parts._replace(query=query, fragment=""))
        if len(self._auth_prefixes) >= MAX_AUTH_PREFIXES:
            self._auth_prefixes.clear()
        known = self._auth_prefixes[key] = (prefix, f"{parts.scheme}://{parts.netloc}")
        return known

    async def start(self, request: LoginRequest, page_origin: str | None = None) -> LoginDecision:
        """``page_origin``: the ``Origin`` the browser sent with a form post (the LMS page that
        posted the login), used only to skip a Platform Storage page that could not show:
        framed by an origin its ``frame-ancestors`` would refuse, Attune redirects straight to
        the platform instead and the partitioned cookie alone binds the login. It grants
        nothing: a page is never allowed an origin because a request named it."""
        if not self._urls.is_ours(request.target_link_uri):
            raise errors.target_link_uri_foreign()
        resolved = await self._registrations.resolve(request.issuer, request.client_id)
        if resolved is None:
            raise errors.platform_unknown()
        platform = resolved.platform
        if not platform.served_in(self._urls.region):
            raise errors.platform_other_region(*self._urls.where(platform.region))
        if request.deployment_id is not None:
            status = platform.deployments.get(request.deployment_id)
            if status == "disabled":
                raise errors.deployment_disabled()
        ancestors = platform.ancestors_for(request.deployment_id)
        storage = request.storage_target
        if storage is not None and page_origin not in (None, "null"):
            if not origin_allowed(page_origin, ancestors):
                storage = None
        token, bind, state = self._codec.issue(
            platform_id=platform.id,
            issuer=resolved.issuer,
            client_id=platform.client_id,
            region=self._urls.region,
            canvas_environment=resolved.environment,
            storage_target=storage,
        )
        prefix, origin = self._auth_prefix(resolved.auth_url, platform.client_id)
        # state and nonce are base64url and dot: nothing in them needs percent-encoding.
        query = {"login_hint": request.login_hint, "state": token, "nonce": state.nonce}
        if request.lti_message_hint is not None:
            query["lti_message_hint"] = request.lti_message_hint
        return LoginDecision(
            state_token=token,
            bind=bind,
            state=state,
            auth_url=f"{prefix}&{urlencode(query)}",
            auth_origin=origin,
            platform=platform,
            ancestors=ancestors,
        )
