"""The login ``state``: a signed, short-lived value that carries the nonce and is bound to the
browser. Nothing is written to the database at login.

Binding: login creates a random ``bind`` secret and puts only its hash in the state. The
browser keeps ``bind`` in a ``SameSite=None; Secure; Partitioned`` cookie named after the
state id and, when the platform offers it, in LTI Platform Storage. A state that leaks (through
a referrer or a platform log) is useless without the browser that holds ``bind``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

from shared.signing import InvalidToken, TokenSigner, b64url

PURPOSE = "attune/lti-state/v1"
COOKIE_PREFIX = "attune_lti_"
STORAGE_KEY_PREFIX = "attune_state_"


@dataclass(frozen=True)
class LoginState:
    sid: str  # state id: names the cookie and the platform-storage key
    nonce: str
    bind_hash: str
    platform_id: int
    issuer: str
    client_id: str
    region: str
    canvas_environment: str | None
    storage_target: str | None
    expires_at: int

    @property
    def cookie_name(self) -> str:
        return COOKIE_PREFIX + self.sid

    @property
    def storage_key(self) -> str:
        return STORAGE_KEY_PREFIX + self.sid

    def bound_by(self, bind: str | None) -> bool:
        """Constant-time check that ``bind`` is the secret this state was bound to."""
        if not bind or len(bind) > 128:
            return False
        return hmac.compare_digest(_hash(bind), self.bind_hash)


def _hash(bind: str) -> str:
    return b64url(hashlib.sha256(bind.encode()).digest()[:18])


class StateCodec:
    def __init__(self, secret_keys: list[bytes], *, ttl_s: int = 600) -> None:
        self._signer = TokenSigner(secret_keys, PURPOSE)
        self._ttl = ttl_s

    def issue(
        self,
        *,
        platform_id: int,
        issuer: str,
        client_id: str,
        region: str,
        canvas_environment: str | None,
        storage_target: str | None,
    ) -> tuple[str, str, LoginState]:
        """Returns (state token, bind secret for the browser, the state)."""
        # One read of the OS random source for the three values (bind 192, sid 96 and
        # nonce 192 bits), instead of three.
        rand = b64url(os.urandom(60))
        bind, sid, nonce = rand[:32], rand[32:48], rand[48:]
        state = LoginState(
            sid=sid,
            nonce=nonce,
            bind_hash=_hash(bind),
            platform_id=platform_id,
            issuer=issuer,
            client_id=client_id,
            region=region,
            canvas_environment=canvas_environment,
            storage_target=storage_target,
            expires_at=int(time.time()) + self._ttl,
        )
        payload: dict[str, Any] = {
            "sid": state.sid,
            "n": state.nonce,
            "b": state.bind_hash,
            "p": platform_id,
            "iss": issuer,
            "cid": client_id,
            "r": region,
            "exp": state.expires_at,
        }
        if canvas_environment:
            payload["env"] = canvas_environment
        if storage_target:
            payload["st"] = storage_target
        return self._signer.sign(payload), bind, state

    def read(self, token: str) -> LoginState:
        """Verify and decode; raises ``InvalidToken`` (reason ``expired`` or another)."""
        p = self._signer.verify(token)
        try:
            return LoginState(
                sid=str(p["sid"]),
                nonce=str(p["n"]),
                bind_hash=str(p["b"]),
                platform_id=int(p["p"]),
                issuer=str(p["iss"]),
                client_id=str(p["cid"]),
                region=str(p["r"]),
                canvas_environment=p.get("env"),
                storage_target=p.get("st"),
                expires_at=int(p["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("malformed") from None
