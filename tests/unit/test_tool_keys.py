"""Tool-key building blocks without infrastructure: KEK parsing, wrapping, the JOSE module,
the rotation plan and the prebuilt JWKS document."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.jwks.jwks import JwksDocument
from shared.jose import JoseKeyError, public_jwk, rs256_signing_key, sign_rs256
from shared.keys.crypto import (
    KeyConfigError,
    UnwrapError,
    keks_from_settings,
    parse_keks,
    public_der,
)
from shared.keys.store import (
    KeyInfo,
    KeyTimings,
    PublishedKey,
    activation_due,
    new_kid,
    next_due,
    plan,
)
from shared.settings import SettingsError, load_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def kek(kek_id: str) -> str:
    return f"{kek_id}:{base64.b64encode(os.urandom(32)).decode()}"


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- KEKs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is missing"),
        (" , ", "is missing"),
        ("nocolon", "entry 1 is not id:base64"),
        (":" + base64.b64encode(b"k" * 32).decode(), "entry 1 is not id:base64"),
        ("bad id!:" + base64.b64encode(b"k" * 32).decode(), "entry 1 is not id:base64"),
        ("k1:***not-base64***", "entry 1 is not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "entry 1 decodes to 5 bytes"),
        ("k1:" + base64.b64encode(b"k" * 31).decode(), "decodes to 31 bytes"),
        ("k1:" + base64.b64encode(b"k" * 48).decode(), "decodes to 48 bytes"),
        (
            "k1:"
            + base64.b64encode(b"k" * 32).decode()
            + ",k1:"
            + base64.b64encode(b"j" * 32).decode(),
            "entry 2 repeats the id 'k1'",
        ),
    ],
)
def test_malformed_keks_are_refused_by_name_without_the_value(value: str, problem: str) -> None:
    with pytest.raises(KeyConfigError) as exc:
        parse_keks(value)
    message = str(exc.value)
    assert message.startswith("invalid configuration: ATTUNE_KEY_ENCRYPTION_KEYS ")
    assert problem in message
    assert "\n" not in message
    secret = value.partition(":")[2]
    if len(secret) > 8:
        assert secret not in message
    assert isinstance(exc.value, SettingsError)  # so every command exits 2 with one line


def test_kek_missing_from_settings() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://u@h/db"}, need_kafka=False)
    with pytest.raises(KeyConfigError, match="ATTUNE_KEY_ENCRYPTION_KEYS is missing"):
        keks_from_settings(settings)


def test_kek_accepts_standard_and_urlsafe_base64() -> None:
    raw = bytes(range(250, 256)) * 5 + b"\xfb\xff"  # has + and / in standard base64
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_keks(f"a:{standard},b:{urlsafe}").ids == ("a", "b")


def test_wrap_unwrap_round_trip_binds_kid_and_kek() -> None:
    keks = parse_keks(kek("new") + "," + kek("old"))
    key = rsa_key()
    wrapped = keks.wrap("kid-1", key)
    assert wrapped.kek_id == "new"
    assert len(wrapped.nonce) == 12
    assert public_der(keks.unwrap("kid-1", wrapped)) == public_der(key)
    assert keks.wrap("kid-1", key).nonce != wrapped.nonce  # a fresh nonce every time

    with pytest.raises(UnwrapError, match="cannot decrypt tool key kid-2"):
        keks.unwrap("kid-2", wrapped)  # AAD = kid: a ciphertext moved to another row fails
    other = parse_keks("new:" + base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(UnwrapError, match="'new' cannot decrypt"):
        other.unwrap("kid-1", wrapped)  # same id, different key material
    unknown = parse_keks(kek("third"))
    with pytest.raises(UnwrapError, match=r"wrapped with KEK 'new'.*configured: third"):
        unknown.unwrap("kid-1", wrapped)


def test_kek_objects_do_not_print_their_secret() -> None:
    value = kek("k1")
    keks = parse_keks(value)
    assert value.partition(":")[2] not in repr(keks)
    assert repr(keks) == "KeyEncryptionKeys(ids=['k1'])"


# --- shared.jose ---------------------------------------------------------------------------


def test_sign_rs256_header_and_signature() -> None:
    key = rsa_key()
    signing = rs256_signing_key(key, "kid-1")
    claims = {"iss": "tool", "exp": 2_000_000_000, "nested": {"a": [1, 2]}}
    token = sign_rs256(claims, signing)
    header_b64, payload_b64, sig_b64 = token.split(".")
    assert json.loads(b64url_decode(header_b64)) == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    assert json.loads(b64url_decode(payload_b64)) == claims
    key.public_key().verify(
        b64url_decode(sig_b64),
        f"{header_b64}.{payload_b64}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert repr(signing) == "SigningKey(kid='kid-1')"


def test_public_jwk_has_exactly_the_public_members() -> None:
    key = rsa_key()
    jwk = public_jwk(key.public_key(), "kid-1")
    assert set(jwk) == {"kty", "kid", "alg", "use", "n", "e"}
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert int.from_bytes(b64url_decode(jwk["n"]), "big") == key.public_key().public_numbers().n


def test_short_and_wrong_keys_are_refused() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.raises(JoseKeyError, match="1024 bits; at least 2048"):
        rs256_signing_key(short, "kid-short")
    with pytest.raises(JoseKeyError, match="1024 bits"):
        public_jwk(short.public_key(), "kid-short")
    with pytest.raises(JoseKeyError, match="needs a kid"):
        rs256_signing_key(rsa_key(), "")
    with pytest.raises(JoseKeyError, match="RSA private key"):
        rs256_signing_key(rsa_key().public_key(), "kid")  # type: ignore[arg-type]


# --- the rotation plan ---------------------------------------------------------------------

TIMINGS = KeyTimings(
    rotation=timedelta(days=30),
    publish_ahead=timedelta(hours=1),
    token_lifetime=timedelta(hours=1),
    propagation=timedelta(seconds=360),
)


def test_plan_empty_store_creates_a_current_key_at_once() -> None:
    assert [a.kind for a in plan([], T0, TIMINGS)] == ["create_current"]
    assert next_due([], TIMINGS) is None


def test_plan_publishes_next_key_ahead_of_the_rotation_date() -> None:
    current = KeyInfo("a", "current", T0, activated_at=T0)
    publish_at = T0 + TIMINGS.rotation - TIMINGS.activate_after
    assert next_due([current], TIMINGS) == publish_at
    assert plan([current], publish_at - timedelta(seconds=1), TIMINGS) == []
    assert [a.kind for a in plan([current], publish_at, TIMINGS)] == ["create_next"]


def test_plan_activates_only_after_publish_ahead_plus_propagation() -> None:
    published = T0 + timedelta(days=29)
    keys = [
        KeyInfo("a", "current", T0, activated_at=T0),
        KeyInfo("b", "next", published),
    ]
    due = published + TIMINGS.publish_ahead + TIMINGS.propagation
    assert next_due(keys, TIMINGS) == due
    assert plan(keys, due - timedelta(seconds=1), TIMINGS) == []
    actions = plan(keys, due, TIMINGS)
    assert [(a.kind, a.kid) for a in actions] == [("retire", "a"), ("activate", "b")]


def test_plan_removes_retired_keys_after_token_lifetime_plus_cache_period() -> None:
    retired_at = T0 + timedelta(days=30)
    keys = [
        KeyInfo("a", "retired", T0, activated_at=T0, retired_at=retired_at),
        KeyInfo("b", "current", T0, activated_at=retired_at),
    ]
    removal = retired_at + TIMINGS.token_lifetime + TIMINGS.publish_ahead
    assert next_due(keys, TIMINGS) == removal
    assert plan(keys, removal - timedelta(seconds=1), TIMINGS) == []
    assert [(a.kind, a.kid) for a in plan(keys, removal, TIMINGS)] == [("remove", "a")]


def test_plan_in_a_cell_activates_only_a_published_next_key() -> None:
    """A cell outside the home region: its next key becomes current only once the public
    JWKS (served by home) shows it; until then the current key keeps signing."""
    published = T0 + timedelta(days=29)
    keys = [KeyInfo("a", "current", T0, activated_at=T0), KeyInfo("b", "next", published)]
    due = published + TIMINGS.activate_after
    assert activation_due(keys, due - timedelta(seconds=1), TIMINGS) is None
    assert activation_due(keys, due, TIMINGS) == "b"
    assert plan(keys, due, TIMINGS, published=frozenset()) == []
    assert plan(keys, due, TIMINGS, published=frozenset({"other"})) == []
    actions = plan(keys, due, TIMINGS, published=frozenset({"b"}))
    assert [(a.kind, a.kid) for a in actions] == [("retire", "a"), ("activate", "b")]
    # Without a current key nothing can sign: the first key is never held back.
    assert [a.kind for a in plan([], T0, TIMINGS, published=frozenset())] == ["create_current"]


def test_cell_kids_name_their_region() -> None:
    assert new_kid(T0, "eu-west-1").startswith("eu-west-1.20")
    assert "." not in new_kid(T0)


def test_plan_without_current_activates_a_pending_next_key() -> None:
    keys = [KeyInfo("b", "next", T0)]
    assert [(a.kind, a.kid) for a in plan(keys, T0, TIMINGS)] == [("activate", "b")]


def test_timings_from_settings() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "ATTUNE_KEY_PUBLISH_AHEAD_S": "600",
            "ATTUNE_KEY_TOKEN_LIFETIME_S": "120",
            "ATTUNE_KEY_ROTATION_DAYS": "7",
        },
        need_kafka=False,
    )
    timings = KeyTimings.from_settings(settings)
    # propagation = jwks reload period (60 s) + max-age min(300, 600 / 4)
    assert timings.activate_after == timedelta(seconds=600 + 60 + 150)
    assert timings.keep_retired == timedelta(seconds=120 + 600)
    assert timings.rotation == timedelta(days=7)


# --- the JWKS document -------------------------------------------------------------------


def published(kid: str, state: str, at: datetime, key: rsa.RSAPrivateKey) -> PublishedKey:
    return PublishedKey(kid, state, at, key.public_key())  # type: ignore[arg-type]


def test_jwks_document_is_deterministic_and_ordered() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = [
        published("old", "retired", T0, other),
        published("cur", "current", T0 + timedelta(days=1), rsa_key()),
        published("new", "next", T0 + timedelta(days=2), other),
    ]
    doc = JwksDocument.build(keys, max_age_s=75)
    assert doc.kids == ("cur", "new", "old")
    assert doc.current_kid == "cur"
    assert JwksDocument.build(list(reversed(keys)), max_age_s=75).etag == doc.etag
    body = json.loads(doc.body)
    assert [k["kid"] for k in body["keys"]] == ["cur", "new", "old"]
    assert doc.headers["Cache-Control"] == "public, max-age=75"
    assert doc.headers["ETag"] == doc.etag and doc.etag.startswith('"')
    assert doc.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ("*", True),
        ("{etag}", True),
        ("W/{etag}", True),
        ('"other", {etag}', True),
        ('"other"', False),
        ("{etag_unquoted}", False),
    ],
)
def test_jwks_if_none_match(header: str | None, matches: bool) -> None:
    doc = JwksDocument.build([published("cur", "current", T0, rsa_key())], max_age_s=75)
    if header is not None:
        header = header.format(etag=doc.etag, etag_unquoted=doc.etag.strip('"'))
    assert doc.matches(header) is matches
