"""RSA signing keys of an emulated (or fake) LTI platform, with their public JWK."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from shared.jose import public_jwk


@dataclass
class SigningKey:
    kid: str
    private_pem: bytes
    public_jwk: dict[str, str]

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return str(
            jwt.encode(
                claims,
                self.private_pem.decode(),
                algorithm="RS256",
                headers={"kid": self.kid, **(headers or {})},
            )
        )


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _from_private(key: rsa.RSAPrivateKey, kid: str) -> SigningKey:
    return SigningKey(
        kid=kid, private_pem=private_pem(key), public_jwk=public_jwk(key.public_key(), kid)
    )


def new_key(kid: str | None = None, bits: int = 2048) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _from_private(
        key, kid or f"{time.strftime('%Y-%m-%dT%H:%M:%SZ')}-{secrets.token_hex(4)}"
    )


def load_key(kid: str, private_pem: str) -> SigningKey:
    """A key persisted as PEM (the emulator keeps its keys between ``attune dev`` runs)."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA key")
    return _from_private(key, kid)
