"""Admin API tokens and install codes: random values shown once, stored as SHA-256 only.

A token carries 256 random bits, an install code 160; both are looked up by their hash (a
database read leaks nothing useful: finding a matching value means inverting SHA-256) and then
compared in constant time. A stolen database never yields a usable credential.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "attune_at_"  # noqa: S105 - a prefix, not a secret
CODE_PREFIX = "attune_ic_"
_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,200}$")


def new_admin_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_install_code() -> str:
    return CODE_PREFIX + secrets.token_urlsafe(20)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def well_formed(value: str) -> bool:
    """Cheap shape check before any database work; never says which part is wrong."""
    return bool(_SHAPE.match(value))


def same_digest(stored: bytes, value: str) -> bool:
    return hmac.compare_digest(bytes(stored), digest(value))


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
