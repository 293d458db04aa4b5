"""Outbound HTTP: one client session per service, guarded against SSRF, bounded in time and size.

Every call to a platform (JWKS, openid configuration, token endpoint) goes through
``OutboundHttp``. The resolver refuses loopback, private, link-local and other non-public
addresses *after* DNS resolution (so DNS rebinding cannot sneak past a check made earlier),
http:// is refused, and bodies are read up to a limit. ``ATTUNE_ALLOW_INSECURE_URLS`` lifts the
scheme and address rules for local development and tests only.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.logs import get_logger
from shared.settings import Settings
from shared.web import SETTINGS_KEY

log = get_logger(__name__)

USER_AGENT = "Attune-LTI-Tool/0.1 (+https://github.com/attune-lti/attune)"
DEFAULT_MAX_BYTES = 512 * 1024


class OutboundError(Exception):
    """An outbound call failed; ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# IPv6 forms that carry an IPv4 address in their last 32 bits and reach that IPv4 host: NAT64
# (RFC 6052's well-known prefix: a DNS64 resolver answers 64:ff9b::7f00:1 for 127.0.0.1),
# IPv4-translated (RFC 2765) and the deprecated IPv4-compatible form. IPv4-mapped addresses
# (::ffff:0:0/96) are judged through ``ipv4_mapped``.
_IPV4_CARRIERS = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96")
)
# NAT64 local-use prefixes (RFC 8215) embed IPv4 at an operator-chosen length: never public.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, translated, compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _IPV4_CARRIERS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    """True for a global unicast address. An IPv6 address that carries an IPv4 one is judged
    as that IPv4 address; tunnel forms (6to4, Teredo, NAT64 local-use) are never public.
    Raises ``ValueError`` when ``address`` is not a literal address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.sixtofour is not None or ip.teredo is not None or ip in _NAT64_LOCAL:
            return False
        carried = embedded_ipv4(ip)
        if carried is not None:
            return carried.is_global and not carried.is_multicast
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, then drops every non-public address."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


class OutboundHttp:
    def __init__(self, settings: Settings) -> None:
        self._allow_insecure = settings.allow_insecure_urls
        connector = aiohttp.TCPConnector(
            resolver=None if self._allow_insecure else PublicOnlyResolver(),
            limit=100,
            ttl_dns_cache=60,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.http_timeout_s),
            headers={"User-Agent": USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self._allow_insecure and parts.scheme == "http"):
            raise OutboundError("insecure_url", "only https URLs are allowed")
        if not parts.hostname:
            raise OutboundError("bad_url", "no host")
        if not self._allow_insecure:
            try:
                if not is_public_address(parts.hostname):
                    raise OutboundError("private_address", parts.hostname)
            except ValueError:
                pass  # a name, not a literal address: the resolver checks what it resolves to

    async def get_json(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> Any:
        """GET ``url`` and parse JSON; raises ``OutboundError`` for every failure."""
        self.check_url(url)
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise OutboundError("http_status", str(resp.status))
                body = await read_limited(resp, max_bytes)
        except OutboundError:
            raise
        except TimeoutError:
            raise OutboundError("timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise OutboundError("unreachable", type(exc).__name__) from None
        try:
            return json.loads(body)
        except ValueError:
            raise OutboundError("not_json") from None

    async def close(self) -> None:
        await self.session.close()


async def read_limited(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, refusing (``OutboundError("too_large")``) anything beyond ``max_bytes``."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise OutboundError("too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise OutboundError("too_large")
        chunks.append(chunk)
    return b"".join(chunks)


HTTP_KEY = web.AppKey("outbound_http", OutboundHttp)


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    if settings.allow_insecure_urls:
        log.warning(
            "insecure_urls_allowed",
            detail="ATTUNE_ALLOW_INSECURE_URLS is on: http and private addresses are accepted "
            "for platform URLs. Never use this in production.",
        )
    http = OutboundHttp(settings)
    app[HTTP_KEY] = http
    yield
    await http.close()
