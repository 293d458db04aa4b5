"""``ToolSigner``: how every service signs what it sends to platforms with the tool key.

Usage: ``app.cleanup_ctx.append(signer_ctx)`` after ``pool_ctx`` (``service_app`` adds it),
then in a handler::

    signer = request.app[SIGNER_KEY]
    token = await signer.sign({"iss": client_id, "aud": issuer, "iat": now, "exp": now + 300})

or directly ``ToolSigner(pool, settings)`` (then wire ``on_key_event`` yourself).

Guarantees:

- RS256 with the store's ``current`` key; the header carries its ``kid`` and ``typ: JWT``.
- The decrypted key is cached in memory and re-read at most ``SIGNER_RELOAD_S`` after it was
  loaded, or at the next ``sign`` after ``invalidate()`` (wire ``on_key_event`` to an
  ``EventListener`` on ``attune.key.v1``). A key is decrypted only when the kid changed.
- ``exp`` is required and may lie at most ``ATTUNE_KEY_TOKEN_LIFETIME_S`` in the future: the
  key store removes a retired key from the JWKS on that assumption.
- While Postgres is unreachable the cached key keeps signing for up to
  ``ATTUNE_KEY_PUBLISH_AHEAD_S`` (a retired key stays published longer than that); after
  that, or with no key at all, ``sign`` raises ``Unavailable`` (``signing_key_unavailable``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import asyncpg
from aiohttp import web

from shared.db import POOL_KEY
from shared.errors import Unavailable
from shared.events import topics
from shared.events.consumer import EventListener
from shared.events.envelope import Event
from shared.events.relay import TRANSIENT_ERRORS
from shared.i18n.catalogues import _
from shared.jose import SigningKey, rs256_signing_key, sign_rs256
from shared.keys import queries as q
from shared.keys.crypto import KeyEncryptionKeys, UnwrapError, WrappedKey, keks_from_settings
from shared.keys.store import SIGNER_RELOAD_S, Clock, utc_now
from shared.logs import get_logger
from shared.settings import Settings
from shared.tasks import stop_task
from shared.web import SERVICE_KEY, SETTINGS_KEY

log = get_logger(__name__)

# After a failed reload, sign with the cached key this long before asking Postgres again, so
# an outage does not put a connection attempt in front of every signature.
RETRY_AFTER_FAILURE_S = 2.0
_UNAVAILABLE_HINT = _(
    "Try again in a minute. If it persists, the tool's key service needs attention."
)


class ToolSigner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        now: Clock = utc_now,
        reload_after_s: float = SIGNER_RELOAD_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._keks: KeyEncryptionKeys = keks_from_settings(settings)
        self._max_lifetime_s = settings.key_token_lifetime_s
        self._stale_limit_s = float(settings.key_publish_ahead_s)
        self._now = now
        self._reload_after_s = reload_after_s
        self._monotonic = monotonic
        self._key: SigningKey | None = None
        self._loaded_at = 0.0
        self._retry_at = 0.0
        # invalidate() bumps the generation; a reload records the generation it started at, so
        # an event arriving while a reload's query is in flight still forces another reload.
        self._generation = 0
        self._loaded_generation = -1
        self._lock = asyncio.Lock()

    @property
    def kid(self) -> str | None:
        """The kid of the cached key (None before the first load)."""
        return self._key.kid if self._key is not None else None

    def invalidate(self) -> None:
        """Re-read the current key before the next signature."""
        self._generation += 1

    async def on_key_event(self, event: Event) -> None:
        """``EventListener`` handler: any key event may mean a new current key."""
        if event.type.startswith("key."):
            self.invalidate()

    async def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims`` with the current tool key (see the module guarantees)."""
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise ValueError("claims need a numeric exp")
        latest = self._now().timestamp() + self._max_lifetime_s
        if exp > latest:
            raise ValueError(
                f"exp lies beyond ATTUNE_KEY_TOKEN_LIFETIME_S ({self._max_lifetime_s} s) "
                "from now; the key could leave the JWKS before the token expires"
            )
        key = await self._current_key()
        return sign_rs256(claims, key)

    async def _current_key(self) -> SigningKey:
        key = self._key
        if key is not None and not self._due():
            return key
        async with self._lock:
            if self._key is not None and not self._due():
                return self._key  # another task reloaded while we waited
            return await self._reload()

    def _due(self) -> bool:
        now = self._monotonic()
        if self._key is not None and now < self._retry_at:
            return False  # the last reload failed moments ago; keep the cached key meanwhile
        stale = self._generation != self._loaded_generation
        return stale or now - self._loaded_at >= self._reload_after_s

    async def _reload(self) -> SigningKey:
        generation = self._generation
        try:
            async with self._pool.acquire() as conn:
                row = await q.current_private(conn)
        except TRANSIENT_ERRORS as exc:
            self._retry_at = self._monotonic() + RETRY_AFTER_FAILURE_S
            age = self._monotonic() - self._loaded_at
            if self._key is not None and age < self._stale_limit_s:
                log.warning("signing_key_reload_failed", reason=type(exc).__name__)
                return self._key
            raise Unavailable(
                _("The tool's signing key cannot be loaded right now."),
                code="signing_key_unavailable",
                hint=_UNAVAILABLE_HINT,
            ) from None
        if row is None:
            raise Unavailable(
                _("The tool has no signing key yet."),
                code="signing_key_unavailable",
                hint=_UNAVAILABLE_HINT,
            )
        if self._key is None or self._key.kid != row["kid"]:
            wrapped = WrappedKey(row["private_key"], row["kek_id"], row["nonce"])
            try:
                private_key = self._keks.unwrap(row["kid"], wrapped)
            except UnwrapError as exc:
                log.error("signing_key_undecryptable", kid=row["kid"], error=str(exc))
                raise Unavailable(
                    _("The tool's signing key cannot be decrypted."),
                    code="signing_key_unavailable",
                    hint=_UNAVAILABLE_HINT,
                ) from None
            self._key = rs256_signing_key(private_key, row["kid"])
            log.info("signing_key_loaded", kid=row["kid"])
        self._loaded_at = self._monotonic()
        self._loaded_generation = generation
        return self._key


SIGNER_KEY = web.AppKey("tool_signer", ToolSigner)


async def signer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[SIGNER_KEY]``, refreshed by key events (needs ``pool_ctx``).

    Raises ``KeyConfigError`` at start-up when ``ATTUNE_KEY_ENCRYPTION_KEYS`` is missing or
    malformed. Key events reach every replica (``EventListener``, no consumer group); without
    them the signer still re-reads the current key every ``SIGNER_RELOAD_S``.
    """
    settings = app[SETTINGS_KEY]
    signer = ToolSigner(app[POOL_KEY], settings)
    app[SIGNER_KEY] = signer
    listener = EventListener(
        name=f"{app[SERVICE_KEY]}-tool-key",
        topics=[topics.KEY],
        handler=signer.on_key_event,
        settings=settings,
    )
    task = asyncio.create_task(listener.run(), name="tool-key-events")
    yield
    await stop_task(task)
