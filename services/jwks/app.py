"""The jwks service: tool keys, their rotation and the public JWKS.

- ``GET /.well-known/jwks.json`` serves the prebuilt in-memory JWKS (``services.jwks.jwks``):
  strong ETag, ``If-None-Match`` → 304, ``Cache-Control: public, max-age`` well inside the
  pre-publication window, 503 ``jwks_unavailable`` while no key set could be loaded.
- Start-up checks that ``ATTUNE_KEY_ENCRYPTION_KEYS`` is well-formed (in ``create_app``) and
  decrypts every stored key, then creates the first key of an empty store; a KEK problem
  fails start-up with ``KeyConfigError``. Postgres being down does not: the service starts
  not-ready and catches up by itself.
- A rotation loop applies due transitions (``KeyStore.maintain``) at least every
  ``MAINTAIN_INTERVAL_S``; any number of replicas may run it.
- The readiness check ``keys`` passes once the KEKs were verified and the in-memory JWKS has
  a current key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from services.jwks.jwks import JwksCache
from shared.app import service_app
from shared.db import POOL_KEY
from shared.events import topics
from shared.events.consumer import EventListener
from shared.events.relay import TRANSIENT_ERRORS
from shared.keys.crypto import KeyConfigError, keks_from_settings
from shared.keys.store import Clock, KeyStore, jwks_max_age_s, utc_now
from shared.logs import get_logger
from shared.settings import Settings
from shared.web import (
    QUIET_ROUTES_KEY,
    SETTINGS_KEY,
    ReadinessCheck,
    add_readiness_check,
    background_task,
)

SERVICE = "jwks"
JWKS_PATH = "/.well-known/jwks.json"
MAINTAIN_INTERVAL_S = 60.0
MAINTAIN_RETRY_S = 2.0

log = get_logger(__name__)


class NotReady(Exception):
    """The keys readiness probe failed (/readyz shows the type; the message says why)."""


@dataclass
class KeyService:
    """The service's key machinery, built at start-up by ``keys_ctx``."""

    store: KeyStore
    cache: JwksCache
    keks_verified: bool = False

    async def start(self) -> None:
        """Verify the KEKs, create the first key if needed, load the JWKS.

        ``KeyConfigError`` propagates (start-up must fail); Postgres errors propagate too and
        the caller decides.
        """
        await self.store.verify_keks()
        self.keks_verified = True
        await self.store.maintain()
        await self.cache.reload()

    async def maintain_forever(self) -> None:
        delay = 0.0
        while True:
            await asyncio.sleep(delay)
            delay = await self.maintain_once()

    async def maintain_once(self) -> float:
        """One rotation pass; returns the seconds until the next one."""
        try:
            if not self.keks_verified:
                await self.store.verify_keks()
                self.keks_verified = True
            result = await self.store.maintain()
        except KeyConfigError as exc:
            # Found after start-up (Postgres was down then): stay not-ready and keep saying why.
            log.error("tool_keys_undecryptable", error=str(exc))
            return MAINTAIN_INTERVAL_S
        except TRANSIENT_ERRORS as exc:
            log.warning("key_maintenance_failed", reason=type(exc).__name__)
            return MAINTAIN_RETRY_S
        if result.changed or self.cache.document is None:
            self.cache.request_reload()
        if result.next_due is None:
            return MAINTAIN_RETRY_S
        until_due = (result.next_due - self.store.now()).total_seconds()
        return min(MAINTAIN_INTERVAL_S, max(1.0, until_due))

    async def check_ready(self) -> None:
        if not self.keks_verified:
            raise NotReady("tool keys not verified against ATTUNE_KEY_ENCRYPTION_KEYS yet")
        document = self.cache.document
        if document is None or document.current_kid is None:
            raise NotReady("no published current key in memory")


KEYS_KEY = web.AppKey("keys", KeyService)


async def jwks_handler(request: web.Request) -> web.Response:
    return request.app[KEYS_KEY].cache.response(request)


def create_app(settings: Settings, *, now: Clock = utc_now) -> web.Application:
    """The jwks app. ``now`` is the key store's clock (tests drive rotations with it).

    Raises ``KeyConfigError`` at once when ``ATTUNE_KEY_ENCRYPTION_KEYS`` is missing or
    malformed.
    """
    keks_from_settings(settings)
    app = service_app(settings, service=SERVICE, relays_events=True)

    async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        store = KeyStore(app[POOL_KEY], settings, now=now, source=SERVICE)
        service = KeyService(store, JwksCache(store, max_age_s=jwks_max_age_s(settings)))
        app[KEYS_KEY] = service
        add_readiness_check(app, ReadinessCheck("keys", service.check_ready))
        try:
            await service.start()
        except TRANSIENT_ERRORS as exc:
            # Not fatal: serve not-ready (JWKS 503) and let the loops catch up.
            log.warning("tool_keys_unavailable_at_start", reason=type(exc).__name__)
        yield

    listener = EventListener(
        name="jwks-keys",
        topics=[topics.KEY],
        handler=lambda event: app[KEYS_KEY].cache.on_key_event(event),
        settings=settings,
    )
    app.cleanup_ctx.append(keys_ctx)
    app.cleanup_ctx.append(background_task("jwks-reload", lambda a: a[KEYS_KEY].cache.run()))
    app.cleanup_ctx.append(
        background_task("key-rotation", lambda a: a[KEYS_KEY].maintain_forever())
    )
    app.cleanup_ctx.append(background_task("key-events", lambda a: listener.run()))
    app.router.add_get(JWKS_PATH, jwks_handler)
    app[QUIET_ROUTES_KEY].add(JWKS_PATH)
    return app
