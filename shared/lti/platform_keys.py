"""Platform public keys (JWKS), cached per JWKS URL, with prepared verification keys.

- Keys are prepared once per ``kid`` and reused (building one per call costs 2.5 verifies).
- Unknown ``kid``: refetch, at most once per cooldown per URL (a flood of tokens with random
  kids cannot turn into a flood of fetches); concurrent refreshes share one fetch.
- A failed or empty fetch never replaces the last good set, so an LMS JWKS outage does not
  break launches signed with keys Attune already knows.
- RSA keys under 2048 bits are never used: their kids are remembered as weak, so a token
  signed with one is refused as such (``WeakKey``) instead of as an unknown kid.
- The set is also refreshed when older than ``max_age_s`` (platforms rotate: D2L hourly).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from jose.backends.base import Key

from shared.http import OutboundError, OutboundHttp
from shared.jose import UnusableJwk, WeakJwk, prepare_key
from shared.logs import get_logger
from shared.metrics import Metrics

log = get_logger(__name__)


class KeySetUnavailable(Exception):
    """No usable key set could be fetched and none is cached."""


class WeakKey(Exception):
    """The platform publishes this kid, but as an RSA key shorter than 2048 bits."""


@dataclass
class _Entry:
    keys: dict[str, Key] = field(default_factory=dict)
    weak: frozenset[str] = frozenset()  # kids of too-short RSA keys in the latest set
    fetched_at: float = 0.0  # last successful fetch (monotonic)
    attempted_at: float = -1e9  # last attempt, successful or not
    inflight: asyncio.Task[None] | None = None


class PlatformKeys:
    def __init__(
        self,
        http: OutboundHttp,
        *,
        cooldown_s: float = 10.0,
        max_age_s: float = 3600.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._http = http
        self._cooldown = cooldown_s
        self._max_age = max_age_s
        self._metrics = metrics
        self._entries: dict[str, _Entry] = {}

    async def key_for(self, jwks_url: str, kid: str) -> Key | None:
        """The prepared key for ``kid``, or None when the platform does not publish it.

        Raises ``KeySetUnavailable`` only when nothing usable is cached and fetching failed,
        ``WeakKey`` when the platform publishes ``kid`` as an RSA key under 2048 bits.
        """
        entry = self._entries.setdefault(jwks_url, _Entry())
        now = time.monotonic()
        key = entry.keys.get(kid)
        if key is not None and now - entry.fetched_at <= self._max_age:
            return key
        if key is None and kid in entry.weak:
            raise WeakKey(kid)
        # Unknown kid, stale set or nothing cached: join a fetch in flight or start one. Within
        # the cooldown of the last attempt, an unknown kid waits for the cooldown to end (a
        # platform that just rotated is served a moment later; a flood of bogus kids still
        # costs at most one fetch per cooldown), while a merely stale set keeps being used.
        elapsed = now - entry.attempted_at
        if entry.inflight is None and elapsed < self._cooldown:
            if key is not None or not entry.keys:
                if not entry.keys:
                    raise KeySetUnavailable(jwks_url)
                return key
            await asyncio.sleep(self._cooldown - elapsed + 0.01)
            key = entry.keys.get(kid)
            if key is not None:
                return key
        await self._refresh(jwks_url, entry)
        if kid in entry.weak and kid not in entry.keys:
            raise WeakKey(kid)
        if not entry.keys:
            raise KeySetUnavailable(jwks_url)
        return entry.keys.get(kid)

    async def _refresh(self, url: str, entry: _Entry) -> None:
        if entry.inflight is None and time.monotonic() - entry.attempted_at >= self._cooldown:
            entry.attempted_at = time.monotonic()
            entry.inflight = asyncio.create_task(self._fetch(url, entry))
        task = entry.inflight
        if task is None:
            return  # another waiter refreshed within the cooldown; use what it fetched
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                entry.inflight = None

    async def _fetch(self, url: str, entry: _Entry) -> None:
        try:
            document = await self._http.get_json(url)
            keys, weak = parse_jwks(document)
        except (OutboundError, ValueError) as exc:
            self._count("fetch_failed")
            log.warning(
                "platform_jwks_fetch_failed", url=url, reason=str(exc), cached_keys=len(entry.keys)
            )
            return
        entry.weak = weak
        if weak:
            self._count("weak_keys")
            log.warning("platform_jwks_weak_keys", url=url, kids=sorted(weak))
        if not keys:
            self._count("fetch_empty")
            log.warning("platform_jwks_empty", url=url)
            return
        entry.keys = keys
        entry.fetched_at = time.monotonic()
        self._count("fetched")
        log.info("platform_jwks_fetched", url=url, kids=sorted(keys))

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.platform_jwks.labels(self._metrics.service, outcome).inc()


def parse_jwks(document: Any) -> tuple[dict[str, Key], frozenset[str]]:
    """(usable keys by kid, kids of RSA keys too short to use): what launches can verify with
    (a key without a kid is never chosen; registration judges key sets by this too)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str, Key] = {}
    weak: set[str] = set()
    for item in document["keys"][:100]:
        if not isinstance(item, dict) or not isinstance(item.get("kid"), str):
            continue
        try:
            keys[item["kid"]] = prepare_key(item)
        except WeakJwk:
            weak.add(item["kid"])
        except UnusableJwk:
            continue  # a platform may publish other key types next to its RS256 keys
    return keys, frozenset(weak)
