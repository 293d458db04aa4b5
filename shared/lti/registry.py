"""Registrations as login and launch see them: platforms and their deployments, cached.

The registration service owns the tables; login and launch only read them (and the page
origins verified launches of each deployment proved, ``deployment_observations``, which the
launch service writes). Lookups go to an in-memory cache keyed by (issuer, client_id) — never
by issuer alone, since Canvas shares one issuer across every customer. Entries expire after a
TTL (so a missed invalidation heals by itself), are dropped at once on registration events,
and misses are cached briefly so garbage logins cannot turn into a database query each.

``RegistrationCache.resolve`` is how login and launch look a registration up: a hosted Canvas
beta or test issuer without a registration of its own gets the production registration of the
same client_id, with that environment's issuer, keys and endpoints (``shared.lti.canvas``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import asyncpg

from shared.lti.canvas import DEFAULT_CLOUDS, CanvasClouds, HostedCanvas
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
    # The hosted Canvas environment the issuer names, if any (its fallback page origins).
    hosted: HostedCanvas | None = None
    # Page origins verified launches of a deployment proved (deployment_observations).
    learned_origins: dict[str, tuple[str, ...]] = field(default_factory=dict)
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
        if self.frame_origins:
            return self.frame_origins
        if self.hosted is not None:
            return self.hosted.fallback_origins
        return platform_ancestors(self.issuer, ())

    def ancestors_for(self, deployment_id: str | None) -> tuple[str, ...]:
        """The platform's page origins plus those launches of this deployment proved."""
        learned = self.learned_origins.get(deployment_id or "", ())
        return self.frame_ancestors + tuple(o for o in learned if o not in self.frame_ancestors)


@dataclass(frozen=True)
class Resolved:
    """A registration as the environment that sends a message sees it: the platform itself,
    or — a hosted Canvas beta or test launch of a client_id registered under the production
    issuer — that environment's issuer, keys and endpoints (``shared.lti.canvas``)."""

    platform: Platform
    issuer: str  # the issuer this environment's messages carry
    environment: str | None  # hosted Canvas: production, beta or test
    auth_url: str
    jwks_url: str
    token_url: str | None

    @property
    def auth_origin(self) -> str:
        parts = urlsplit(self.auth_url)
        return f"{parts.scheme}://{parts.netloc}"


Loader = Callable[[str, str], Awaitable[Platform | None]]

_SELECT_PLATFORM = """
SELECT p.id, p.issuer, p.client_id, p.auth_url, p.jwks_url, p.token_url, p.product,
       p.deployment_policy, p.frame_origins, p.region,
       coalesce(
           (SELECT jsonb_object_agg(d.deployment_id, d.status)
              FROM deployments d WHERE d.platform_id = p.id),
           '{}'::jsonb
       ) AS deployments,
       coalesce(
           (SELECT jsonb_object_agg(o.deployment_id, o.frame_origins)
              FROM deployment_observations o
             WHERE o.platform_id = p.id AND cardinality(o.frame_origins) > 0),
           '{}'::jsonb
       ) AS learned
FROM platforms p
WHERE p.issuer = $1 AND p.client_id = $2
"""


def db_loader(pool: asyncpg.Pool, clouds: CanvasClouds = DEFAULT_CLOUDS) -> Loader:
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
            hosted=clouds.get(row["issuer"]),
            learned_origins={k: tuple(v) for k, v in json.loads(row["learned"]).items()},
            region=row["region"],
        )

    return load


class RegistrationCache:
    def __init__(
        self,
        loader: Loader,
        *,
        ttl_s: float = 60.0,
        miss_ttl_s: float = 5.0,
        clouds: CanvasClouds = DEFAULT_CLOUDS,
    ) -> None:
        self._loader = loader
        self._clouds = clouds
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

    async def resolve(self, issuer: str, client_id: str) -> Resolved | None:
        """The registration of (issuer, client_id) with the endpoints of the environment that
        sends ``issuer``; a hosted Canvas beta or test issuer falls back to the production
        registration of the same client_id (beta and test are refreshed copies of production)."""
        canvas = self._clouds.get(issuer)
        platform = await self.get(issuer, client_id)
        if platform is None and canvas is not None and canvas.environment != "production":
            platform = await self.get(self._clouds.production_of(canvas).issuer, client_id)
            if platform is not None and platform.product != "canvas":
                platform = None
        if platform is None:
            return None
        if canvas is None or canvas.issuer == platform.issuer.strip().rstrip("/"):
            return Resolved(
                platform,
                issuer=platform.issuer,
                environment=canvas.environment if canvas is not None else None,
                auth_url=platform.auth_url,
                jwks_url=platform.jwks_url,
                token_url=platform.token_url,
            )
        return Resolved(
            platform,
            issuer=canvas.issuer,
            environment=canvas.environment,
            auth_url=canvas.auth_url,
            jwks_url=canvas.jwks_url,
            token_url=canvas.token_url,
        )

    def invalidate(self, issuer: str | None = None, client_id: str | None = None) -> None:
        """Drop one entry, every entry of an issuer, or everything."""
        if issuer is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if k[0] == issuer]:
            if client_id is None or key[1] == client_id:
                del self._entries[key]
