"""Launch verification: the ordered pipeline from a form POST to a ``VerifiedLaunch``.

Order (each step has one stable error code, see ``shared.lti.errors``):
 1. state: present, ours, unexpired, bound to this browser (cookie or Platform Storage)
 2. JWT shape (the only claims read before the signature: iss, aud, azp; header alg, kid)
 3. registration by (iss, client_id), and the same one the login was for
 4. signature: RS256 only, no critical header extension, key chosen by kid (RSA of at least
    2048 bits), platform JWKS cached with refresh on unknown kid
 5. exp, iat (not in the future, not too old), nbf, with an explicit leeway
 6. iss, aud (this client_id only), azp from the verified claims
 7. nonce equals the state's nonce (used up atomically later, with the launch record)
 8. LTI version 1.3.0
 9. deployment: known and active, or new under the platform's policy
10. message type supported
11. claims the message type requires
12. target_link_uri is ours
Nothing is written here; the caller records the launch (and uses up the nonce) in one
statement after every check passed, so a rejected launch leaves no row behind.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from shared.identifiers import identifier
from shared.jose import SignatureError, TokenShapeError, peek_once, verify_signature
from shared.lti import claims as C
from shared.lti import errors
from shared.lti.frame import origin_of
from shared.lti.platform_keys import KeySetUnavailable, PlatformKeys, WeakKey
from shared.lti.registry import Platform, RegistrationCache
from shared.lti.roles import role_kinds
from shared.lti.state import LoginState, StateCodec
from shared.lti.urls import ToolUrls
from shared.signing import InvalidToken

MAX_ID_TOKEN = 64 * 1024


@dataclass(frozen=True)
class NeedsPlatformStorage:
    """No cookie came back: the browser must fetch the binding from Platform Storage."""

    state: LoginState


class DeploymentHeld(errors.LtiError):
    """A deployment seen for the first time under a hold policy: record it for approval."""

    def __init__(self, platform_id: int, deployment_id: str) -> None:
        base = errors.deployment_pending()
        super().__init__(base.message, code=base.code, status=base.status, hint=base.hint)
        self.platform_id = platform_id
        self.deployment_id = deployment_id


@dataclass(frozen=True)
class VerifiedLaunch:
    """Only ``LaunchVerifier.verify`` builds these: every field comes from a verified token."""

    platform: Platform
    issuer: str  # the environment's issuer (a hosted Canvas beta or test launch: its own)
    token_url: str | None  # that environment's token endpoint
    auth_origin: str  # that environment's auth endpoint origin (Platform Storage messages)
    # The origin of the LMS page the launch came from: its signed
    # launch_presentation.return_url (Canvas builds it on the host the page was served from).
    page_origin: str | None
    region: str
    nonce: str
    expires_at: int
    issued_at: float
    deployment_id: str
    deployment_is_new: bool
    message_type: str
    subject: str | None
    roles: tuple[str, ...]
    role_kinds: tuple[str, ...]  # shared.lti.roles: context roles only
    context_id: str | None
    context_title: str | None
    resource_link_id: str | None
    target_link_uri: str
    deep_link_return_url: str | None
    deep_link_data: str | None
    nrps_url: str | None
    name: str | None
    names_shared: bool  # the LMS sent the user's name (Canvas: its privacy level allows it)
    claims: Mapping[str, Any]

    @property
    def roster_shared(self) -> bool:
        """The LMS offers the course roster (Canvas sends the NRPS claim only when the
        developer key holds the Names and Role Provisioning scope)."""
        return self.nrps_url is not None


class LaunchVerifier:
    def __init__(
        self,
        registrations: RegistrationCache,
        keys: PlatformKeys,
        codec: StateCodec,
        urls: ToolUrls,
        *,
        leeway_s: int,
        max_age_s: int,
    ) -> None:
        self._registrations = registrations
        self._keys = keys
        self._codec = codec
        self._urls = urls
        self._leeway = leeway_s
        self._max_age = max_age_s

    def read_state(
        self, form: Mapping[str, str], cookies: Mapping[str, str], storage_bind: str | None
    ) -> LoginState | NeedsPlatformStorage:
        token = form.get("state")
        if not token:
            raise errors.state_missing()
        try:
            state = self._codec.read(token)
        except InvalidToken as exc:
            if exc.reason == "expired":
                raise errors.state_expired() from None
            raise errors.state_invalid() from None
        if state.bound_by(cookies.get(state.cookie_name)):
            return state
        if storage_bind is not None:
            # Only a login that put the binding into Platform Storage may be bound by it: else
            # anyone could post the binding of their own login from another browser (login
            # CSRF), and the cookie would bind nothing.
            if state.storage_target and state.bound_by(storage_bind):
                return state
            raise errors.state_not_bound()
        if state.storage_target:
            return NeedsPlatformStorage(state)
        raise errors.state_not_bound()

    async def verify(
        self,
        state: LoginState,
        form: Mapping[str, str],
        memo: MutableMapping[Any, Any] | None = None,
    ) -> VerifiedLaunch:
        """``memo``: the request, where the rate limiter may already have peeked the token."""
        # 2. shape
        id_token = form.get("id_token", "")
        if not id_token or len(id_token) > MAX_ID_TOKEN:
            raise errors.jwt_malformed()
        try:
            header, unverified = peek_once({} if memo is None else memo, id_token)
        except TokenShapeError:
            raise errors.jwt_malformed() from None
        issuer = unverified.get("iss")
        aud, azp = unverified.get("aud"), unverified.get("azp")
        if isinstance(aud, list) and len(aud) > 1 and (not isinstance(azp, str) or azp not in aud):
            raise errors.jwt_azp_invalid()  # several audiences: azp must say which is us
        aud_ok = isinstance(aud, str) or (
            isinstance(aud, list) and bool(aud) and all(isinstance(a, str) for a in aud)
        )
        if not isinstance(issuer, str) or not aud_ok:
            raise errors.jwt_malformed()
        client_id = _client_id(aud, azp)
        if text(issuer, 1024) is None or client_id is None:
            # Unusable as a registration key (NUL, lone surrogate, too long): no such platform.
            raise errors.registration_unknown()

        # 3. registration (a hosted Canvas beta or test issuer: the production registration of
        # the client_id, with that environment's keys)
        resolved = await self._registrations.resolve(issuer, client_id)
        if resolved is None:
            raise errors.registration_unknown()
        platform = resolved.platform
        if platform.id != state.platform_id or resolved.issuer != state.issuer:
            raise errors.registration_mismatch()
        if state.region != self._urls.region:
            raise errors.state_invalid()  # another cell's login: its launch is there
        if not platform.served_in(self._urls.region):
            raise errors.platform_other_region(*self._urls.where(platform.region))

        # 4. signature
        if header.get("alg") != "RS256":
            raise errors.jwt_alg_not_allowed()
        if "crit" in header:
            # RFC 7515 4.1.11: extensions listed as critical must be understood; Attune
            # understands none, so a token that needs one is not valid here.
            raise errors.jwt_crit_unsupported()
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise errors.jwt_kid_unknown()
        try:
            key = await self._keys.key_for(resolved.jwks_url, kid)
        except KeySetUnavailable:
            raise errors.platform_jwks_unavailable() from None
        except WeakKey:
            raise errors.platform_key_too_weak() from None
        if key is None:
            raise errors.jwt_kid_unknown()
        try:
            verify_signature(id_token, key)
        except SignatureError:
            raise errors.jwt_signature_invalid() from None
        claims = unverified  # decoded by peek from the bytes the signature covers

        # 5. time
        now = time.time()
        exp, iat = _time(claims.get("exp")), _time(claims.get("iat"))
        if exp is None:
            raise errors.claim_missing("exp")
        if iat is None:
            raise errors.claim_missing("iat")
        if now > exp + self._leeway:
            raise errors.jwt_expired()
        if iat > now + self._leeway:
            raise errors.jwt_iat_future()
        if now - iat > self._max_age + self._leeway:
            raise errors.jwt_too_old()
        if "nbf" in claims:
            nbf = _time(claims["nbf"])
            if nbf is None:
                raise errors.jwt_malformed()
            if nbf > now + self._leeway:
                raise errors.jwt_not_yet_valid()

        # 6. iss / aud / azp, now from verified claims
        if claims.get("iss") != resolved.issuer:
            raise errors.registration_mismatch()
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        # Addressed to this registration and nobody else: a token that also names another
        # audience is refused even when azp is ours (OIDC Core 3.1.3.7 step 3; 1EdTech
        # Security Framework 5.1.3: reject additional untrusted audiences).
        if not audiences or any(a != platform.client_id for a in audiences):
            raise errors.jwt_aud_invalid()
        azp = claims.get("azp")
        if azp is not None and azp != platform.client_id:
            raise errors.jwt_azp_invalid()
        if len(audiences) > 1 and azp is None:
            raise errors.jwt_azp_invalid()

        # 7. nonce (constant-time, like every value bound to a state)
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), state.nonce.encode()
        ):
            raise errors.nonce_mismatch()

        # 8. version
        if claims.get(C.VERSION) != C.LTI_VERSION:
            raise errors.lti_version_unsupported()

        # 9. deployment
        # An identifier (printable ASCII, at most 255: shared/identifiers.py), as the admin API
        # takes deployment ids; a JSON number is no deployment id (the claim is a string).
        raw_deployment = claims.get(C.DEPLOYMENT_ID)
        deployment_id = identifier(raw_deployment) if isinstance(raw_deployment, str) else None
        if deployment_id is None:
            raise errors.deployment_missing()
        status = platform.deployments.get(deployment_id)
        if status == "disabled":
            raise errors.deployment_disabled()
        if status == "pending":
            raise errors.deployment_pending()
        is_new = status is None
        if is_new and platform.deployment_policy == "hold":
            raise DeploymentHeld(platform.id, deployment_id)

        # 10. message type
        message_type = claims.get(C.MESSAGE_TYPE)
        if not isinstance(message_type, str) or message_type not in C.SUPPORTED_MESSAGE_TYPES:
            raise errors.message_type_unsupported()

        # 11. required claims
        roles = claims.get(C.ROLES)
        if not isinstance(roles, list) or len(roles) > 100 or any(text(r) is None for r in roles):
            raise errors.claim_missing(C.ROLES)
        subject = claims.get("sub")
        if subject is not None and text(subject, 255) is None:
            raise errors.claim_missing("sub")
        context_id = _get_str(claims, C.CONTEXT, "id")
        if C.CONTEXT in claims and context_id is None:
            raise errors.claim_missing(C.CONTEXT)  # a context must carry a usable id
        resource_link_id = _get_str(claims, C.RESOURCE_LINK, "id")
        return_url = _get_str(claims, C.DEEP_LINKING_SETTINGS, "deep_link_return_url")
        if message_type == C.RESOURCE_LINK_REQUEST:
            if resource_link_id is None:
                raise errors.claim_missing(C.RESOURCE_LINK)
            if subject is None:
                raise errors.claim_missing("sub")
        if message_type == C.DEEP_LINKING_REQUEST and return_url is None:
            raise errors.claim_missing(C.DEEP_LINKING_SETTINGS)

        # 12. target_link_uri
        target = claims.get(C.TARGET_LINK_URI)
        if not isinstance(target, str):
            raise errors.claim_missing(C.TARGET_LINK_URI)
        if not self._urls.is_ours(target):
            raise errors.target_link_uri_foreign()

        return VerifiedLaunch(
            platform=platform,
            issuer=resolved.issuer,
            token_url=resolved.token_url,
            auth_origin=resolved.auth_origin,
            page_origin=_page_origin(claims),
            region=state.region,
            nonce=state.nonce,
            expires_at=int(exp),
            issued_at=iat,
            deployment_id=deployment_id,
            deployment_is_new=is_new,
            message_type=message_type,
            subject=subject,
            roles=tuple(roles),
            role_kinds=tuple(role_kinds(roles)),
            context_id=context_id,
            context_title=_get_str(claims, C.CONTEXT, "title"),
            resource_link_id=resource_link_id,
            target_link_uri=target,
            deep_link_return_url=return_url,
            deep_link_data=_get_str(claims, C.DEEP_LINKING_SETTINGS, "data"),
            nrps_url=_get_str(claims, C.NRPS, "context_memberships_url"),
            name=text(claims.get("name"), 255),
            names_shared=any(text(claims.get(k), 255) for k in NAME_CLAIMS),
            claims=claims,
        )


NAME_CLAIMS = ("name", "given_name", "family_name")


def _page_origin(claims: Mapping[str, Any]) -> str | None:
    """The origin of the signed ``launch_presentation.return_url``, if it is an http(s) URL."""
    url = _get_str(claims, C.LAUNCH_PRESENTATION, "return_url")
    if url is None or not url.startswith(("https://", "http://")):
        return None
    return origin_of(url)


def _time(value: object) -> float | None:
    """A finite JSON number usable as a Unix time, else None (NaN, Infinity, 1e400...)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) < 1e12 else None


def text(value: object, max_len: int = 2048) -> str | None:
    """``value`` if it is a string Postgres and logs can take safely, else None.

    Rejects empty, over-long, NUL-bearing and lone-surrogate strings: all are valid JSON but
    none is a valid identifier, and some would fail in the database.
    """
    if not isinstance(value, str) or not value or len(value) > max_len or "\x00" in value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _get_str(claims: Mapping[str, Any], claim: str, field: str) -> str | None:
    obj = claims.get(claim)
    if isinstance(obj, dict):
        return text(obj.get(field))
    return None


def _client_id(aud: object, azp: object) -> str | None:
    if isinstance(aud, str):
        return text(aud, 255)
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        if isinstance(azp, str) and azp in aud:
            return text(azp, 255)
        if len(aud) == 1:
            return text(aud[0], 255)
    return None
