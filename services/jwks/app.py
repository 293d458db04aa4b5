"""The jwks service: tool keys, their rotation and the public JWKS.

- ``GET /.well-known/jwks.json`` serves the prebuilt in-memory JWKS (``services.jwks.jwks``):
  strong ETag, ``If-None-Match`` → 304, ``Cache-Control: public, max-age`` well inside the
  pre-publication window, 503 ``jwks_unavailable`` while no key set could be loaded.
- Start-up checks that ``ATTUNE_KEY_ENCRYPTION_KEYS`` is well-formed (in ``create_app``) and
  decrypts every stored key, then creates the first key of an empty store; a KEK problem
  fails start-up with ``KeyConfigError``. Postgres being down does not: the service starts
  not-ready and catches up by itself.
- A rotation loop applies due transitions (``shared.keys.rotation``) at least every
  minute; any number of replicas may run it.
- In the home region, the other cells' public keys (``ATTUNE_CELL_KAFKA``;
  ``shared.cells.keys``) are published in the same JWKS, so a registration's one JWKS URL
  verifies whatever any cell signs.
- The readiness check ``keys`` passes once the KEKs were verified and the in-memory JWKS has
  a current key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from services.jwks.jwks import JwksCache
from shared.app import service_app
from shared.cells.keys import cell_keys_ctx
from shared.db import POOL_KEY
from shared.events import topics
from shared.events.consumer import EventListener
from shared.events.relay import TRANSIENT_ERRORS
from shared.keys.crypto import keks_from_settings
from shared.keys.rotation import KeyRotation
from shared.keys.store import Clock, KeyStore, jwks_max_age_s, utc_now
from shared.logs import get_logger
from shared.settings import Settings, SettingsError
from shared.web import (
    QUIET_ROUTES_KEY,
    SETTINGS_KEY,
    ReadinessCheck,
    add_readiness_check,
    background_task,
)

SERVICE = "jwks"
JWKS_PATH = "/.well-known/jwks.json"

log = get_logger(__name__)


class NotReady(Exception):
    """The keys readiness probe failed (/readyz shows the type; the message says why)."""


@dataclass
class KeyService:
    """The service's key machinery, built at start-up by ``keys_ctx``."""

    rotation: KeyRotation
    cache: JwksCache

    async def start(self) -> None:
        """Verify the KEKs, create the first key if needed, load the JWKS (see
        ``KeyRotation.start`` for what propagates)."""
        await self.rotation.start()
        await self.cache.reload()

    async def maintain_forever(self) -> None:
        await self.rotation.run()

    async def check_ready(self) -> None:
        if not self.rotation.keks_verified:
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
    if settings.is_remote_cell:
        raise SettingsError(
            "invalid configuration: the jwks service runs in the home region only "
            "(ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS is set: this is another region's cell, whose "
            "checkins rotates its keys once the home region's JWKS publishes them)"
        )
    keks_from_settings(settings)
    app = service_app(settings, service=SERVICE, relays_events=True)

    async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        store = KeyStore(app[POOL_KEY], settings, now=now, source=SERVICE)
        cache = JwksCache(store, max_age_s=jwks_max_age_s(settings))
        service = KeyService(KeyRotation(store, on_change=cache.request_reload), cache)
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
    # The other cells' public keys (home region): the one JWKS URL publishes them too.
    app.cleanup_ctx.append(cell_keys_ctx(lambda: app[KEYS_KEY].cache.request_reload()))
    app.router.add_get(JWKS_PATH, jwks_handler)
    app[QUIET_ROUTES_KEY].add(JWKS_PATH)
    return app
