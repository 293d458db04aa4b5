"""Per-IP and per-platform rate limits: 429 with Retry-After and a stable code."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shared.ratelimit import TokenBucket
from shared.settings import load_settings
from shared.web import base_app

ENV = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(3)] == [0, 0, 0]
    assert bucket.take("a") == 0.5  # empty: one token every 0.5 s
    assert bucket.take("b") == 0  # other keys have their own bucket
    now[0] += 0.5
    assert bucket.take("a") == 0
    assert bucket.take("a") > 0


def make_app(**overrides: Any) -> web.Application:
    app = base_app(load_settings(ENV, **overrides), service="test")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_route("*", "/lti/login", ok)
    app.router.add_get("/app/", ok)
    return app


async def test_per_ip_limit(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(rate_limit_ip_per_s=0.5, rate_limit_ip_burst=2))
    assert (await client.get("/lti/login")).status == 200
    assert (await client.get("/lti/login")).status == 200
    resp = await client.get("/lti/login", headers={"Accept": "application/json"})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "2"
    assert (await resp.json())["error"]["code"] == "rate_limited"
    html = await client.get("/lti/login", headers={"Accept": "text/html"})
    assert html.status == 429
    assert "rate_limited" in await html.text()
    # Paths outside the LTI and admin endpoints are not limited.
    assert all([(await client.get("/app/")).status == 200 for _ in range(5)])


async def test_forwarded_for_is_used_only_behind_trusted_proxies(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        make_app(rate_limit_ip_per_s=0.1, rate_limit_ip_burst=1, trusted_proxy_hops=1)
    )
    for n in range(5):  # five different clients behind the ingress
        resp = await client.get("/lti/login", headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert resp.status == 200
    again = await client.get("/lti/login", headers={"X-Forwarded-For": "203.0.113.1"})
    assert again.status == 429
    # Without trusted hops, a client cannot pick its own address.
    untrusted = await aiohttp_client(make_app(rate_limit_ip_per_s=0.1, rate_limit_ip_burst=1))
    assert (await untrusted.get("/lti/login", headers={"X-Forwarded-For": "1.1.1.1"})).status == 200
    spoofed = await untrusted.get("/lti/login", headers={"X-Forwarded-For": "2.2.2.2"})
    assert spoofed.status == 429


async def test_per_platform_limit(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        make_app(trusted_proxy_hops=1, rate_limit_platform_per_s=0.1, rate_limit_platform_burst=2)
    )
    params = {"iss": "https://canvas.instructure.com", "client_id": "100"}
    for n in range(2):
        resp = await client.post(
            "/lti/login", data=params, headers={"X-Forwarded-For": f"198.51.100.{n}"}
        )
        assert resp.status == 200
    refused = await client.post(
        "/lti/login", data=params, headers={"X-Forwarded-For": "198.51.100.9"}
    )
    assert refused.status == 429
    other = await client.get(
        "/lti/login",
        params={**params, "client_id": "200"},
        headers={"X-Forwarded-For": "198.51.100.9"},
    )
    assert other.status == 200


async def test_hsts_only_behind_tls(aiohttp_client: Any) -> None:
    plain = await aiohttp_client(make_app())
    resp = await plain.get("/app/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in resp.headers  # untrusted header ignored
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    proxied = await aiohttp_client(make_app(trusted_proxy_hops=1))
    resp = await proxied.get("/app/", headers={"X-Forwarded-Proto": "https"})
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    resp = await proxied.get("/app/", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in resp.headers
