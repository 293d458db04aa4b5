"""Rate limits for the public LTI and admin endpoints: per client IP and per platform.

Token buckets in process memory (each replica limits on its own; the ingress spreads load, so
the effective limit is roughly limit x replicas). A refused request gets 429 with
``Retry-After`` and the stable code ``rate_limited`` before any work is done for it.

Per platform means (iss, client_id) for logins and the unverified (iss, aud) of the id_token
for launches: an attacker can spend a platform's budget only by sending requests that name it,
which the per-IP limit already bounds. Limits are generous by default because a whole school
can sit behind one NAT address and open the same check-in at 9:00.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.errors import AttuneError
from shared.forms import read_form
from shared.i18n.catalogues import _
from shared.jose import TokenShapeError, peek_once
from shared.settings import Settings

LIMITED_PREFIXES = ("/lti/login", "/lti/launch", "/lti/register", "/api/admin", "/admin")
MAX_KEYS = 100_000


class RateLimited(AttuneError):
    status = 429
    code = "rate_limited"
    title = _("Too many requests")

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            _("Too many requests arrived from here in a short time."),
            hint=_("Wait {seconds} seconds and try again.", seconds=retry_after),
        )
        self.headers = {"Retry-After": str(retry_after)}


class TokenBucket:
    """``rate`` tokens per second up to ``burst``, per key; least recently used keys evicted."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds until one token is available."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return wait


def client_ip(request: web.Request, trusted_hops: int) -> str:
    """The client address: the peer, or the address ``trusted_hops`` proxies reported."""
    if trusted_hops > 0:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= trusted_hops:
            return forwarded[-trusted_hops]
    return request.remote or "unknown"


async def _platform_key(request: web.Request) -> str | None:
    if request.path == "/lti/login":
        params = dict(request.query)
        if request.method == "POST" and request.content_type.endswith("x-www-form-urlencoded"):
            params.update(
                {k: v for k, v in (await read_form(request)).items() if isinstance(v, str)}
            )
        iss, client_id = params.get("iss"), params.get("client_id")
        return f"{iss}|{client_id}"[:600] if iss and client_id else None
    if request.path == "/lti/launch" and request.method == "POST":
        if not request.content_type.endswith("x-www-form-urlencoded"):
            return None
        token = (await read_form(request)).get("id_token")
        if not isinstance(token, str):
            return None
        try:
            _, claims = peek_once(request, token)
        except TokenShapeError:
            return None
        return f"{claims.get('iss')}|{claims.get('aud')}"[:600]
    return None


def rate_limit_middleware(settings: Settings) -> Callable[..., Awaitable[web.StreamResponse]]:
    per_ip = TokenBucket(settings.rate_limit_ip_per_s, settings.rate_limit_ip_burst)
    per_platform = TokenBucket(
        settings.rate_limit_platform_per_s, settings.rate_limit_platform_burst
    )
    hops = settings.trusted_proxy_hops

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(LIMITED_PREFIXES):
            return await handler(request)
        wait = per_ip.take(client_ip(request, hops))
        if not wait:
            platform = await _platform_key(request)
            if platform is not None:
                wait = per_platform.take(platform)
        if wait:
            raise RateLimited(max(1, math.ceil(wait)))
        return await handler(request)

    return middleware
