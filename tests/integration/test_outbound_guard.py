"""SSRF guard: every outbound fetch Attune makes, refused for private, loopback and link-local
targets when insecure URLs are off (production), with a listener on loopback proving that no
connection was made.

The outbound fetches (all through ``shared.http.OutboundHttp``'s session, whose resolver drops
non-public addresses at connect time, so DNS rebinding cannot slip past an earlier check):

- platform JWKS at launch: ``shared/lti/platform_keys.py`` → ``OutboundHttp.get_json``
  (``check_url`` + resolver);
- openid configuration GET and registration POST (dynamic registration):
  ``services/registration/outbound.call`` (``check_url`` + name check + resolver);
- platform JWKS at manual registration: ``services/registration/manual.check_jwks``
  (name check + ``get_json``);
- NRPS token request, membership pages and the platform-chosen ``Link: rel=next`` URLs:
  ``services/checkins/nrps.NrpsClient._request`` (``check_url`` + resolver).

The dynamic-registration GET is covered end to end in ``test_registration_negative.py``
(``test_private_or_insecure_configuration_url``); here each fetch path is driven directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from services.checkins.nrps import NrpsClient, NrpsError
from services.registration import manual, outbound
from shared.http import OutboundError, OutboundHttp
from shared.lti.platform_keys import KeySetUnavailable, PlatformKeys
from shared.settings import Settings
from tests.conftest import Infra
from tests.fakes.registration_platform import ConnectionCounter

pytestmark = pytest.mark.integration


@pytest.fixture
def secure(infra: Infra) -> Settings:
    return infra.settings(allow_insecure_urls=False, public_url="https://attune.example.edu")


@pytest.fixture
async def http(secure: Settings) -> AsyncIterator[OutboundHttp]:
    client = OutboundHttp(secure)
    yield client
    await client.close()


@pytest.fixture
async def listener() -> AsyncIterator[ConnectionCounter]:
    counter = ConnectionCounter()
    await counter.start()
    yield counter
    await counter.stop()


def targets(port: int) -> list[str]:
    return [
        f"https://127.0.0.1:{port}/x",  # a literal loopback address
        f"https://localhost:{port}/x",  # a name resolving to loopback (the resolver's case)
        f"https://[::ffff:127.0.0.1]:{port}/x",  # IPv4-mapped IPv6
        f"http://127.0.0.1:{port}/x",  # plain http
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://10.0.0.1/x",
        f"https://[64:ff9b::7f00:1]:{port}/x",  # NAT64 (DNS64's answer for 127.0.0.1)
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of the metadata address
        f"https://[::ffff:0:7f00:1]:{port}/x",  # IPv4-translated
        f"https://[::7f00:1]:{port}/x",  # IPv4-compatible
    ]


async def test_platform_jwks_at_launch(http: OutboundHttp, listener: ConnectionCounter) -> None:
    keys = PlatformKeys(http, cooldown_s=0)
    for url in targets(listener.port):
        with pytest.raises(KeySetUnavailable):
            await keys.key_for(url, "kid-1")
    assert listener.connections == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_registration_calls(
    http: OutboundHttp, secure: Settings, listener: ConnectionCounter, method: str
) -> None:
    """The openid configuration GET and the registration POST."""
    for url in targets(listener.port):
        with pytest.raises(OutboundError) as refused:
            await outbound.call(
                http,
                method,
                url,
                bearer="tok",
                payload={"a": 1} if method == "POST" else None,
                max_bytes=1024,
                allow_insecure=False,
                timeout_s=2,
            )
        assert refused.value.reason in ("private_address", "insecure_url"), (url, refused.value)
    assert listener.connections == 0


async def test_manual_registration_jwks(http: OutboundHttp, listener: ConnectionCounter) -> None:
    for url in targets(listener.port)[1:3]:  # literal addresses never get past manual.parse
        reg = manual.parse(
            {
                "product": "moodle",
                "issuer": "https://moodle.example.org",
                "client_id": "c1",
                "deployment_id": "1",
                "auth_url": "https://moodle.example.org/mod/lti/auth.php",
                "jwks_url": "https://moodle.example.org/mod/lti/certs.php",
            },
            allow_insecure=False,
        )
        reg.record = dataclasses.replace(reg.record, jwks_url=url)
        with pytest.raises(manual.FieldErrors) as refused:
            await manual.check_jwks(http, reg, allow_insecure=False, timeout_s=2)
        assert "private or loopback" in refused.value.fields["jwks_url"]
    assert listener.connections == 0


async def test_nrps_requests(http: OutboundHttp, listener: ConnectionCounter) -> None:
    """Token endpoint, membership pages and the platform-chosen ``rel=next`` links all go
    through the one guarded request method."""
    client = NrpsClient(http, None, max_lifetime_s=60)  # type: ignore[arg-type]  # never signs
    for url in targets(listener.port):
        for method in ("GET", "POST"):
            with pytest.raises(NrpsError):
                await client._request(method, url)
    assert listener.connections == 0
