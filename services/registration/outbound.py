"""Calls to a platform during registration: GET the openid configuration, POST the registration.

Both go through the service's ``OutboundHttp`` (its SSRF-guarded session: https only, public
addresses only, checked again by its resolver at connect time, so DNS rebinding cannot slip
past), send the registration token as a Bearer, never follow redirects and read at most
``max_bytes``. A host name is resolved once before the call so that a name pointing at a
private address is refused with its own reason instead of a generic connection error.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.forms import parse_json
from shared.http import OutboundError, OutboundHttp, is_public_address, read_limited

MAX_CONFIG_BYTES = 256 * 1024
MAX_RESPONSE_BYTES = 256 * 1024


@dataclass(frozen=True)
class PlatformReply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        """The parsed body; raises ``ValueError`` when it is not JSON (or nests too deep)."""
        return parse_json(self.body)


async def refuse_private_names(url: str, timeout_s: float) -> None:
    """Refuse a host name that resolves only to non-public addresses."""
    host = urlsplit(url).hostname or ""
    try:
        is_public_address(host)
        return  # a literal address: OutboundHttp.check_url has judged it already
    except ValueError:
        pass
    port = urlsplit(url).port or 443
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
            timeout_s,
        )
    except TimeoutError:
        raise OutboundError("timeout", "name resolution") from None
    except OSError:
        raise OutboundError("unreachable", "name does not resolve") from None
    addresses = {str(info[4][0]) for info in infos}
    if not any(is_public_address(a) for a in addresses):
        raise OutboundError("private_address", host)


async def call(
    http: OutboundHttp,
    method: str,
    url: str,
    *,
    bearer: str,
    payload: Any = None,
    max_bytes: int,
    allow_insecure: bool,
    timeout_s: float,
) -> PlatformReply:
    """One guarded call; every failure is an ``OutboundError`` with a stable ``reason``."""
    http.check_url(url)
    if not allow_insecure:
        await refuse_private_names(url, timeout_s)
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
    data: bytes | None = None
    if payload is not None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    try:
        async with http.session.request(
            method, url, headers=headers, data=data, allow_redirects=False
        ) as resp:
            body = await read_limited(resp, max_bytes)
            return PlatformReply(resp.status, body, resp.headers.get("Content-Type", ""))
    except OutboundError:
        raise
    except TimeoutError:
        raise OutboundError("timeout") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise OutboundError("unreachable", type(exc).__name__) from None
