"""Every python-jose call of the code base, behind a few typed functions.

Keeping the library in this one module means it can be swapped (or its defaults audited)
without touching any service. Key objects are prepared once by the ``*_key`` constructors and
reused for every token; the functions themselves keep no state.

Only RS256 exists here: the algorithm is fixed by the code, never chosen by a token or a JWK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiohttp.web import RequestKey
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws
from jose.backends.base import Key
from jose.exceptions import JOSEError

from shared.signing import b64url_decode

RS256 = "RS256"
MIN_RSA_BITS = 2048


class JoseKeyError(ValueError):
    """A key unfit for RS256: not RSA, or shorter than ``MIN_RSA_BITS``."""


def _check_rsa_size(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> None:
    if key.key_size < MIN_RSA_BITS:
        raise JoseKeyError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} required")


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """A private RSA key prepared for RS256 signing, with the ``kid`` its tokens carry.

    ``repr`` shows the kid only, so a key object logged by mistake leaks nothing.
    """

    kid: str
    _jose_key: Any

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


def rs256_signing_key(private_key: rsa.RSAPrivateKey, kid: str) -> SigningKey:
    """Prepare ``private_key`` for ``sign_rs256``; raises ``JoseKeyError`` for unfit keys."""
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise JoseKeyError("RS256 needs an RSA private key")
    _check_rsa_size(private_key)
    if not kid:
        raise JoseKeyError("a signing key needs a kid")
    return SigningKey(kid=kid, _jose_key=jwk.construct(private_key, RS256))


def sign_rs256(claims: Mapping[str, Any], key: SigningKey) -> str:
    """A compact JWS of ``claims``: header ``{"alg": "RS256", "typ": "JWT", "kid": key.kid}``.

    ``claims`` is serialised as given (python-jose's datetime conversion is not used, so the
    caller's mapping is never modified); values must be JSON-serialisable.
    """
    token: str = jws.sign(
        dict(claims), key._jose_key, headers={"kid": key.kid, "typ": "JWT"}, algorithm=RS256
    )
    return token


def public_jwk(public_key: rsa.RSAPublicKey, kid: str) -> dict[str, str]:
    """The JWKS entry of ``public_key``: ``kty``, ``kid``, ``alg``, ``use``, ``n``, ``e``.

    Built from the public key only, so no private member can appear in it.
    """
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise JoseKeyError("a JWKS entry needs an RSA public key")
    _check_rsa_size(public_key)
    data = jwk.construct(public_key, RS256).to_dict()
    return {
        "kty": "RSA",
        "kid": kid,
        "alg": RS256,
        "use": "sig",
        "n": str(data["n"]),
        "e": str(data["e"]),
    }


# --- verification -------------------------------------------------------------------------
#
# Rules: the allow-list is exactly RS256 whatever the header says; exactly one key, chosen by the
# caller by ``kid`` and prepared once (given a whole set, python-jose would try every key);
# claims come from the verified payload only. ``peek`` serves the few values needed *before*
# the signature (header alg/kid; iss, aud, azp to find the registration) and its result must
# never be trusted for anything else. Claim checks (exp, iat, aud, azp, iss, nonce) are done
# by the caller explicitly, each with its own error code and leeway.

MAX_TOKEN_BYTES = 64 * 1024


class TokenShapeError(ValueError):
    """Not a compact JWS with JSON header and payload objects."""


class SignatureError(ValueError):
    """The signature does not verify with the given key, or the algorithm is not RS256."""


class UnusableJwk(ValueError):
    """A JWK that cannot be used as an RS256 public verification key."""


class WeakJwk(UnusableJwk):
    """An RSA JWK whose modulus is shorter than ``MIN_RSA_BITS``."""


def jwk_rsa_bits(jwk_data: dict[str, Any]) -> int:
    """The modulus length of an RSA JWK in bits; ``UnusableJwk`` when ``n`` is not base64url."""
    n = jwk_data.get("n")
    if not isinstance(n, str) or not n or len(n) > 4096:
        raise UnusableJwk("RSA modulus missing or too long")
    try:
        return int.from_bytes(b64url_decode(n), "big").bit_length()
    except (ValueError, UnicodeEncodeError):
        raise UnusableJwk("RSA modulus is not base64url") from None


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims WITHOUT verification. Bounded in size; never trust the claims."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenShapeError("token too large")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenShapeError("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenShapeError("header or payload is not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenShapeError("header or payload is not a JSON object")
    return header, claims


# A request key (aiohttp warns about plain strings); any mapping can hold it.
_PEEKED: RequestKey[tuple[str, tuple[dict[str, Any], dict[str, Any]]]] = RequestKey(
    "attune_jose_peeked", tuple
)


def peek_once(memo: MutableMapping[Any, Any], token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`peek`, remembered in ``memo`` (the request): a launch's id_token is read by the
    per-platform rate limit and then by the pipeline, and decoded once per request."""
    known = memo.get(_PEEKED)
    if known is not None and known[0] == token:
        return known[1]  # type: ignore[no-any-return]
    result = peek(token)
    memo[_PEEKED] = (token, result)
    return result


def prepare_key(jwk_data: dict[str, Any]) -> Key:
    """Build the verification key once; reuse it for every token signed with this ``kid``.

    Raises ``UnusableJwk`` for anything but an RS256 signature key, and its subclass
    ``WeakJwk`` for an RSA modulus under ``MIN_RSA_BITS``."""
    if jwk_data.get("kty") != "RSA" or not jwk_data.get("n") or not jwk_data.get("e"):
        raise UnusableJwk("not an RSA public key")
    if jwk_data.get("alg") not in (None, RS256):
        raise UnusableJwk(f"key is for {jwk_data.get('alg')}, not RS256")
    if jwk_data.get("use") not in (None, "sig"):
        raise UnusableJwk("key is not for signatures")
    bits = jwk_rsa_bits(jwk_data)
    if bits < MIN_RSA_BITS:
        raise WeakJwk(f"RSA key of {bits} bits; at least {MIN_RSA_BITS} required")
    public = {k: jwk_data[k] for k in ("kty", "n", "e")}
    try:
        key: Key = jwk.construct(public, algorithm=RS256)
    except (JOSEError, ValueError, TypeError) as exc:
        raise UnusableJwk(f"unusable RSA key: {exc}") from None
    return key


def verify_signature(token: str, key: Key) -> None:
    """Verify the RS256 signature of a token already read with :func:`peek`.

    For the launch hot path: the caller has checked the header's ``alg`` (RS256) and will use
    the claims :func:`peek` decoded from these very bytes, so the token is not split, decoded
    and parsed a second time (``jws.verify`` would). Raises ``SignatureError``.
    """
    signing_input, _, signature = token.rpartition(".")
    try:
        raw = b64url_decode(signature)
    except (ValueError, UnicodeEncodeError):
        raise SignatureError("signature is not base64url") from None
    if not signature or not key.verify(signing_input.encode(), raw):
        raise SignatureError("signature verification failed")


def verify_rs256(token: str, key: Key) -> dict[str, Any]:
    """Verify the RS256 signature with ``key`` and return the payload's claims."""
    try:
        payload = jws.verify(token, key, algorithms=[RS256], verify=True)
    except JOSEError:
        raise SignatureError("signature verification failed") from None
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise TokenShapeError("payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenShapeError("payload is not a JSON object")
    return claims
