"""The SSRF guard's address rule: an IPv6 address that carries an IPv4 one (NAT64, IPv4-mapped,
-translated, -compatible) is judged as that IPv4 address, and tunnel forms are never public.
Both ``check_url`` (literal addresses in URLs) and the connect-time resolver use the rule."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import ResolveResult

from shared.http import OutboundError, OutboundHttp, PublicOnlyResolver, is_public_address
from shared.settings import load_settings

# Each private or loopback IPv4 target, written in every IPv6 form that reaches it.
HIDDEN_IPV4 = [
    "64:ff9b::7f00:1",  # NAT64 well-known prefix, 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64, 169.254.169.254 (cloud metadata)
    "64:ff9b::a00:1",  # NAT64, 10.0.0.1
    "64:ff9b::c0a8:101",  # NAT64, 192.168.1.1
    "64:ff9b::6440:1",  # NAT64, 100.64.0.1 (shared address space)
    "::ffff:0:7f00:1",  # IPv4-translated, 127.0.0.1
    "::ffff:0:a9fe:a9fe",  # IPv4-translated, 169.254.169.254
    "::7f00:1",  # IPv4-compatible, 127.0.0.1
    "::a00:1",  # IPv4-compatible, 10.0.0.1
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "64:ff9b:1::808:808",  # NAT64 local-use prefix: the embedding is the operator's choice
    "2002:7f00:1::1",  # 6to4
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
PUBLIC = ["8.8.8.8", "64:ff9b::808:808", "::ffff:8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", HIDDEN_IPV4)
def test_ipv6_forms_of_private_ipv4_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_stay_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize("address", HIDDEN_IPV4)
async def test_check_url_refuses_literal_forms(address: str) -> None:
    settings = load_settings(
        {"DATABASE_URL": "postgresql://a:b@db.internal/a", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    )
    assert not settings.allow_insecure_urls
    http = OutboundHttp(settings)
    try:
        with pytest.raises(OutboundError) as refused:
            http.check_url(f"https://[{address}]/api/lti/security/jwks")
        assert refused.value.reason == "private_address"
    finally:
        await http.close()


class _Answers:
    """A resolver answering fixed addresses, in place of the system's."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_resolver_drops_names_resolving_to_nat64_forms() -> None:
    """DNS64 answers a name whose only A record is private with 64:ff9b::<that address>."""
    resolver = PublicOnlyResolver()
    await resolver.close()
    resolver._inner = _Answers(["64:ff9b::a9fe:a9fe", "::ffff:0:7f00:1"])  # type: ignore[assignment]
    with pytest.raises(OSError):
        await resolver.resolve("metadata.example", 443)
    resolver._inner = _Answers(["64:ff9b::7f00:1", "64:ff9b::808:808"])  # type: ignore[assignment]
    kept = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in kept] == ["64:ff9b::808:808"]
