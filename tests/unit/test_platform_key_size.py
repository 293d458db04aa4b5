"""Platform keys under 2048 bits are never prepared for verification (RSA modulus length as
published in the JWK, counted in bits)."""

from __future__ import annotations

import pytest

from shared.jose import MIN_RSA_BITS, UnusableJwk, WeakJwk, jwk_rsa_bits, prepare_key
from tests.fakes.platform import new_key, weak_key


@pytest.mark.parametrize("bits", [1024, 2040])
def test_short_rsa_keys_are_weak(bits: int) -> None:
    jwk = weak_key(bits).public_jwk
    assert jwk_rsa_bits(jwk) == bits
    with pytest.raises(WeakJwk):
        prepare_key(jwk)


def test_2048_bits_are_enough() -> None:
    jwk = new_key().public_jwk
    assert jwk_rsa_bits(jwk) == MIN_RSA_BITS == 2048
    prepare_key(jwk)


def test_leading_zero_bytes_do_not_lengthen_a_key() -> None:
    jwk = dict(weak_key(1024).public_jwk)
    jwk["n"] = "AAAA" + jwk["n"]  # three zero bytes in front: still a 1024-bit modulus
    assert jwk_rsa_bits(jwk) == 1024
    with pytest.raises(WeakJwk):
        prepare_key(jwk)


@pytest.mark.parametrize("n", ["", "!!!", 7, None])
def test_unreadable_modulus_is_unusable(n: object) -> None:
    jwk = {**new_key().public_jwk, "n": n}
    with pytest.raises(UnusableJwk):
        prepare_key(jwk)
