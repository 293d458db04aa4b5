"""Registrations as login and launch see them: platforms and their deployments, cached.

The registration service owns the tables; login and launch only read them. Lookups go to an
in-memory cache keyed by (issuer, client_id) — never by issuer alone, since Canvas shares one
issuer across every customer. Entries expire after a TTL (so a missed invalidation heals by
itself), are dropped at once on registration events, and misses are cached briefly so garbage
logins cannot turn into a database query each.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from shared.lti.frame import platform_ancestors

Product = Literal["canvas", "moodle", "generic"]
DeploymentPolicy = Literal["accept", "hold"]
DeploymentStatus = Literal["active", "pending", "disabled"]


@dataclass(frozen=True)
class Platform:
    id: int
    issuer: str
    client_id: str
    auth_url: str
    jwks_url: str
    token_url: str | None
    product: Product
    deployment_policy: DeploymentPolicy
    deployments: dict[str, DeploymentStatus] = field(default_factory=dict)
    # Origins the LMS's pages come from (CSP frame-ancestors); see shared.lti.frame.
    frame_origins: tuple[str, ...] = ()
    # The cell that serves this registration (a Moodle or manual registration's choice);
    # None: any cell (Canvas sends each school to its own region's login URL).
    region: str | None = None

    def served_in(self, region: str) -> bool:
        """Whether the cell of ``region`` may log in and launch this registration."""
        return self.region is None or self.region == region

    @functools.cached_property
    def frame_ancestors(self) -> tuple[str, ...]:
        """Origins allowed to frame this platform's pages (recorded, else derived); computed
        once per cached registration, not per request."""
        return platform_ancestors(self.issuer, self.frame_origins)


Loader = Callable[[str, str], Awaitable[Platform | None]]

_SELECT_PLATFORM = """
SELECT p.id, p.issuer, p.client_id, p.auth_url, p.jwks_url, p.token_url, p.product,
       p.deployment_policy, p.frame_origins, p.region,
       coalesce(
           (SELECT jsonb_object_agg(d.deployment_id, d.status)
              FROM deployments d WHERE d.platform_id = p.id),
           '{}'::jsonb
       ) AS deployments
FROM platforms p
WHERE p.issuer = $1 AND p.client_id = $2
"""


def db_loader(pool: asyncpg.Pool) -> Loader:
    async def load(issuer: str, client_id: str) -> Platform | None:
        row = await pool.fetchrow(_SELECT_PLATFORM, issuer, client_id)
        if row is None:
            return None
        return Platform(
            id=row["id"],
            issuer=row["issuer"],
            client_id=row["client_id"],
            auth_url=row["auth_url"],
            jwks_url=row["jwks_url"],
            token_url=row["token_url"],
            product=row["product"],
            deployment_policy=row["deployment_policy"],
            deployments=json.loads(row["deployments"]),
            frame_origins=tuple(row["frame_origins"]),
            region=row["region"],
        )

    return load


class RegistrationCache:
    def __init__(self, loader: Loader, *, ttl_s: float = 60.0, miss_ttl_s: float = 5.0) -> None:
        self._loader = loader
        self._ttl = ttl_s
        self._miss_ttl = miss_ttl_s
        self._entries: dict[tuple[str, str], tuple[float, Platform | None]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Platform | None]] = {}

    async def get(self, issuer: str, client_id: str) -> Platform | None:
        key = (issuer, client_id)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Platform | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            platform = await self._loader(issuer, client_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)
        ttl = self._ttl if platform is not None else self._miss_ttl
        self._entries[key] = (time.monotonic() + ttl, platform)
        if len(self._entries) > 50_000:  # bounded memory under a flood of bogus client ids
            self._entries.clear()
        future.set_result(platform)
        return platform

    def invalidate(self, issuer: str | None = None, client_id: str | None = None) -> None:
        """Drop one entry, every entry of an issuer, or everything."""
        if issuer is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if k[0] == issuer]:
            if client_id is None or key[1] == client_id:
                del self._entries[key]
