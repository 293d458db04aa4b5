"""Values Attune signs for itself: compact HMAC-SHA256 tokens with rotating secrets.

Used for the login ``state`` and the launch token handed to the app. These never leave the
tool's trust boundary in a way that needs public-key crypto, so an HMAC (about a microsecond)
replaces an RSA signature (about a millisecond).

Keys are derived from ``ATTUNE_SECRET_KEYS`` with HKDF and a purpose label, so a state can
never be replayed as a launch token. The first secret signs; every secret verifies, which
allows rotation without invalidating tokens in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from shared.settings import SettingsError

MIN_SECRET_BYTES = 32
_MAC_BYTES = 32


class InvalidToken(ValueError):
    """The token is malformed, forged, for another purpose, or expired (see ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_secrets(raw: SecretStr | None, *, variable: str = "ATTUNE_SECRET_KEYS") -> list[bytes]:
    """Decode the comma-separated secrets (base64, base64url or hex), each 32+ bytes."""
    if raw is None:
        raise SettingsError(f"invalid configuration: {variable} is missing")
    secrets: list[bytes] = []
    for index, item in enumerate(s.strip() for s in raw.get_secret_value().split(",")):
        if not item:
            continue
        value = _decode_secret(item)
        if value is None or len(value) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"invalid configuration: {variable} is invalid: entry {index + 1} must be "
                f"{MIN_SECRET_BYTES}+ random bytes in base64 or hex"
            )
        secrets.append(value)
    if not secrets:
        raise SettingsError(f"invalid configuration: {variable} is missing")
    return secrets


def _decode_secret(item: str) -> bytes | None:
    if all(c in "0123456789abcdefABCDEF" for c in item) and len(item) % 2 == 0:
        return bytes.fromhex(item)
    try:
        return base64.b64decode(item.replace("-", "+").replace("_", "/") + "=" * (-len(item) % 4))
    except (binascii.Error, ValueError):
        return None


def derive_keys(secrets: Sequence[bytes], purpose: str) -> list[bytes]:
    """One 32-byte key per secret for ``purpose`` (HKDF-SHA256, no salt, info = purpose)."""
    return [
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(s)
        for s in secrets
    ]


class TokenSigner:
    """Signs and verifies ``payload.mac`` tokens for one purpose.

    The payload is compact JSON carrying ``exp`` (Unix seconds); ``verify`` checks the MAC with
    every key in constant time before it parses anything, then the expiry.
    """

    def __init__(self, secrets: Sequence[bytes], purpose: str) -> None:
        self._keys = derive_keys(secrets, purpose)

    def sign(self, payload: Mapping[str, Any]) -> str:
        body = b64url(json.dumps(payload, separators=(",", ":")).encode())
        mac = hmac.new(self._keys[0], body.encode(), hashlib.sha256).digest()
        return f"{body}.{b64url(mac)}"

    def verify(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        if not token or len(token) > 8192 or token.count(".") != 1:
            raise InvalidToken("malformed")
        body, _, mac_text = token.partition(".")
        try:
            mac = b64url_decode(mac_text)
        except (binascii.Error, ValueError):
            raise InvalidToken("malformed") from None
        if len(mac) != _MAC_BYTES:
            raise InvalidToken("malformed")
        if not any(
            hmac.compare_digest(hmac.new(k, body.encode(), hashlib.sha256).digest(), mac)
            for k in self._keys
        ):
            raise InvalidToken("bad_signature")
        try:
            payload = json.loads(b64url_decode(body))
        except (binascii.Error, ValueError):
            raise InvalidToken("malformed") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int | float):
            raise InvalidToken("malformed")
        if (time.time() if now is None else now) >= payload["exp"]:
            raise InvalidToken("expired")
        return payload
