"""The launch token: what the app (checkins) receives after a verified launch.

Internal to Attune, sent by the app's own JavaScript in an ``Authorization: Bearer`` header
(never a cookie), HMAC-signed with a key derived for this purpose only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.lti.roles import TEACHER_KINDS
from shared.signing import InvalidToken, TokenSigner

PURPOSE = "attune/launch-token/v1"


@dataclass(frozen=True)
class DeepLinkContext:
    """What a deep-linking response needs, taken from the verified ``LtiDeepLinkingRequest``
    (never from the client): who we answer (issuer), as whom (client_id), where and what to
    echo back."""

    issuer: str
    client_id: str
    return_url: str
    data: str | None


@dataclass(frozen=True)
class Shares:
    """What the LMS shared with this launch (from its verified claims): the course roster
    (Names and Role Provisioning) and the user's name. Canvas decides both after the
    registration (the admin's scopes and privacy level), so only launches can tell."""

    roster: bool
    names: bool


@dataclass(frozen=True)
class LaunchIdentity:
    launch_id: str
    platform_id: int
    deployment_id: str
    subject: str | None
    context_id: str | None
    resource_link_id: str | None
    roles: tuple[str, ...]  # role kinds: instructor, ta, admin, learner, mentor
    message_type: str
    region: str
    expires_at: int
    deep_link: DeepLinkContext | None = None
    custom_checkin_id: str | None = None  # custom parameter ``checkin_id`` of the link
    language: str = "en"  # the page's language (BCP 47), chosen from the launch's locale
    # The LMS page origin the launch proved (its signed return_url), allowed to frame the
    # pages of this launch (the deep-linking return page) on top of the platform's origins.
    page_origin: str | None = None
    shares: Shares | None = None  # None: a token issued before Attune recorded it

    @property
    def is_teacher(self) -> bool:
        return not TEACHER_KINDS.isdisjoint(self.roles)


class LaunchTokens:
    def __init__(self, secret_keys: list[bytes], *, ttl_s: int) -> None:
        self._signer = TokenSigner(secret_keys, PURPOSE)
        self._ttl = ttl_s

    def issue(
        self,
        *,
        launch_id: str,
        platform_id: int,
        deployment_id: str,
        subject: str | None,
        context_id: str | None,
        resource_link_id: str | None,
        roles: tuple[str, ...],
        message_type: str,
        region: str,
        deep_link: DeepLinkContext | None = None,
        custom_checkin_id: str | None = None,
        language: str = "en",
        page_origin: str | None = None,
        shares: Shares | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "lid": launch_id,
            "p": platform_id,
            "d": deployment_id,
            "sub": subject,
            "ctx": context_id,
            "rl": resource_link_id,
            "ro": list(roles),
            "mt": message_type,
            "r": region,
            "lg": language,
            "exp": int(time.time()) + self._ttl,
        }
        if deep_link is not None:
            claims["dl"] = {
                "iss": deep_link.issuer,
                "cid": deep_link.client_id,
                "ret": deep_link.return_url,
                "data": deep_link.data,
            }
        if custom_checkin_id is not None:
            claims["ck"] = custom_checkin_id
        if page_origin is not None:
            claims["po"] = page_origin
        if shares is not None:
            claims["sh"] = [int(shares.roster), int(shares.names)]
        return self._signer.sign(claims)

    def read(self, token: str) -> LaunchIdentity:
        """Raises ``InvalidToken`` (reason ``expired`` or another)."""
        p = self._signer.verify(token)
        try:
            dl = p.get("dl")
            deep_link = (
                DeepLinkContext(
                    issuer=str(dl["iss"]),
                    client_id=str(dl["cid"]),
                    return_url=str(dl["ret"]),
                    data=None if dl.get("data") is None else str(dl["data"]),
                )
                if dl is not None
                else None
            )
            ck = p.get("ck")
            po = p.get("po")
            sh = p.get("sh")
            return LaunchIdentity(
                launch_id=str(p["lid"]),
                platform_id=int(p["p"]),
                deployment_id=str(p["d"]),
                subject=p.get("sub"),
                context_id=p.get("ctx"),
                resource_link_id=p.get("rl"),
                roles=tuple(str(r) for r in p["ro"]),
                message_type=str(p["mt"]),
                region=str(p["r"]),
                expires_at=int(p["exp"]),
                deep_link=deep_link,
                custom_checkin_id=None if ck is None else str(ck),
                language=str(p.get("lg") or "en"),
                page_origin=None if po is None else str(po),
                shares=None if sh is None else Shares(roster=bool(sh[0]), names=bool(sh[1])),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidToken("malformed") from None
