"""Key material: the key-encryption keys, RSA key generation, wrapping and unwrapping.

Private keys exist in plaintext only in memory. At rest they are PKCS#8 DER encrypted with
AES-256-GCM under a key-encryption key (KEK) from ``ATTUNE_KEY_ENCRYPTION_KEYS``, with a
random 96-bit nonce and the key's ``kid`` as associated data, so a ciphertext moved to another
row does not decrypt. Nothing in this module logs, and no error message carries key bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.jose import MIN_RSA_BITS
from shared.settings import Settings, SettingsError

KEK_VAR = "ATTUNE_KEY_ENCRYPTION_KEYS"
KEY_BITS = 2048
PUBLIC_EXPONENT = 65537
NONCE_BYTES = 12
_KEK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class KeyConfigError(SettingsError):
    """The KEK configuration is missing, malformed, or cannot decrypt the stored keys.

    A ``SettingsError``, so every command prints it as one line and exits with status 2. The
    message names ``ATTUNE_KEY_ENCRYPTION_KEYS`` and KEK ids, never key bytes.
    """


class UnwrapError(Exception):
    """A stored private key could not be decrypted (unknown KEK id, wrong KEK, bad data)."""


@dataclass(frozen=True, slots=True, repr=False)
class Kek:
    id: str
    _aes: AESGCM

    def __repr__(self) -> str:
        return f"Kek(id={self.id!r})"


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A private key as stored: ciphertext, the id of the KEK that wrapped it, the nonce."""

    ciphertext: bytes
    kek_id: str
    nonce: bytes


class KeyEncryptionKeys:
    """The configured KEKs: the first wraps, every one unwraps (so a KEK can be rotated)."""

    def __init__(self, keks: list[Kek]) -> None:
        if not keks:
            raise ValueError("at least one KEK is required")
        self._keks = {k.id: k for k in keks}
        self._primary = keks[0]

    @property
    def primary_id(self) -> str:
        return self._primary.id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keks)

    def __repr__(self) -> str:
        return f"KeyEncryptionKeys(ids={list(self._keks)!r})"

    def wrap(self, kid: str, private_key: rsa.RSAPrivateKey) -> WrappedKey:
        """Encrypt ``private_key`` under the first KEK, bound to ``kid``."""
        plaintext = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._primary._aes.encrypt(nonce, plaintext, kid.encode())
        return WrappedKey(ciphertext=ciphertext, kek_id=self._primary.id, nonce=nonce)

    def unwrap(self, kid: str, wrapped: WrappedKey) -> rsa.RSAPrivateKey:
        """Decrypt a stored key; raises ``UnwrapError`` naming the KEK id, never the bytes."""
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            raise UnwrapError(
                f"tool key {kid} is wrapped with KEK {wrapped.kek_id!r}, which {KEK_VAR} "
                f"does not contain (configured: {', '.join(self._keks)})"
            )
        try:
            plaintext = kek._aes.decrypt(wrapped.nonce, wrapped.ciphertext, kid.encode())
        except InvalidTag:
            raise UnwrapError(
                f"{KEK_VAR} entry {wrapped.kek_id!r} cannot decrypt tool key {kid} "
                "(wrong key for this id, or the stored key was altered)"
            ) from None
        key = serialization.load_der_private_key(plaintext, password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
            raise UnwrapError(f"tool key {kid} is not an RSA key of {MIN_RSA_BITS}+ bits")
        return key


def _decode_kek(raw: str) -> bytes | None:
    text = raw.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_keks(value: str) -> KeyEncryptionKeys:
    """Parse ``id:base64(32 bytes)[,id:base64(32 bytes)...]``; raises ``KeyConfigError``.

    Errors name the variable and the entry's position, never its value.
    """
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if not entries:
        raise KeyConfigError(f"invalid configuration: {KEK_VAR} is missing")
    keks: list[Kek] = []
    for position, entry in enumerate(entries, start=1):
        kek_id, sep, encoded = entry.partition(":")
        kek_id = kek_id.strip()
        problem = None
        if not sep or not _KEK_ID.match(kek_id):
            problem = "is not id:base64 (id: 1-32 of A-Z a-z 0-9 _ . -)"
        else:
            secret = _decode_kek(encoded)
            if secret is None:
                problem = "is not valid base64"
            elif len(secret) != 32:
                problem = f"decodes to {len(secret)} bytes; 32 are required"
            elif any(k.id == kek_id for k in keks):
                problem = f"repeats the id {kek_id!r}"
            else:
                keks.append(Kek(id=kek_id, _aes=AESGCM(secret)))
        if problem is not None:
            raise KeyConfigError(
                f"invalid configuration: {KEK_VAR} is invalid: entry {position} {problem}"
            )
    return KeyEncryptionKeys(keks)


def keks_from_settings(settings: Settings) -> KeyEncryptionKeys:
    """The KEKs of ``settings``; ``KeyConfigError`` when missing or malformed."""
    if settings.key_encryption_keys is None:
        raise KeyConfigError(f"invalid configuration: {KEK_VAR} is missing")
    return parse_keks(settings.key_encryption_keys.get_secret_value())


def generate_private_key() -> rsa.RSAPrivateKey:
    """A new RSA key for RS256. CPU-bound (~50-200 ms): run it in a thread from async code."""
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)


def public_der(private_key: rsa.RSAPrivateKey) -> bytes:
    """The public half as SubjectPublicKeyInfo DER, which is what ``tool_keys`` stores."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_der(data: bytes) -> rsa.RSAPublicKey:
    """Parse a stored public key; ``ValueError`` unless it is RSA of ``MIN_RSA_BITS``+ bits."""
    key = serialization.load_der_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise ValueError(f"not an RSA public key of {MIN_RSA_BITS}+ bits")
    return key
