"""peek_once: a request's id_token is decoded once, whoever reads it first; nothing is shared
between requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import jose
from shared.signing import b64url


def token(claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "RS256", "kid": "k"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.c2ln"


def test_one_request_decodes_its_token_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = jose.peek

    def counting(value: str) -> tuple[dict[str, Any], dict[str, Any]]:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(jose, "peek", counting)
    request: dict[str, Any] = {}
    first = token({"iss": "a"})
    seen = jose.peek_once(request, first)
    assert seen[1] == {"iss": "a"}
    assert jose.peek_once(request, first) is seen
    assert calls == [first]
    second = token({"iss": "b"})  # another token in the same request is read afresh
    assert jose.peek_once(request, second)[1] == {"iss": "b"}
    other_request: dict[str, Any] = {}
    assert jose.peek_once(other_request, first)[1] is not seen[1]  # nothing shared
    assert len(calls) == 3


@pytest.mark.parametrize(
    "bad", ["", "a.b", "..", "e30.bm90LWpzb24.x", "W10.e30.x", "x" * (jose.MAX_TOKEN_BYTES + 1)]
)
def test_malformed_tokens_are_refused_and_not_remembered(bad: str) -> None:
    request: dict[str, Any] = {}
    with pytest.raises(jose.TokenShapeError):
        jose.peek_once(request, bad)
    assert request == {}
