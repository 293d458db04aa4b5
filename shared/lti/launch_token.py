"""The launch token: what the app (checkins) receives after a verified launch.

Internal to Attune, sent by the app's own JavaScript in an ``Authorization: Bearer`` header
(never a cookie), HMAC-signed with a key derived for this purpose only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared.signing import InvalidToken, TokenSigner

PURPOSE = "attune/launch-token/v1"


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

    @property
    def is_teacher(self) -> bool:
        return bool({"instructor", "ta", "admin"} & set(self.roles))


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
    ) -> str:
        return self._signer.sign(
            {
                "lid": launch_id,
                "p": platform_id,
                "d": deployment_id,
                "sub": subject,
                "ctx": context_id,
                "rl": resource_link_id,
                "ro": list(roles),
                "mt": message_type,
                "r": region,
                "exp": int(time.time()) + self._ttl,
            }
        )

    def read(self, token: str) -> LaunchIdentity:
        """Raises ``InvalidToken`` (reason ``expired`` or another)."""
        p = self._signer.verify(token)
        try:
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
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("malformed") from None
