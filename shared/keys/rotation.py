"""The rotation loop of a cell's tool keys: whoever owns a cell's ``tool_keys`` runs it.

In the home region (and a single-region install) that is the jwks service; in every other
cell it is checkins, the one service there that signs (deep-linking responses, NRPS client
assertions). Any number of replicas may run it (``KeyStore.maintain`` takes an advisory lock).

- ``start``: verify that the KEKs decrypt every stored key, then apply what is due (an empty
  store gets its first key). ``KeyConfigError`` propagates (start-up must fail); Postgres
  errors propagate too and the caller decides.
- ``run``: apply due transitions at least every ``MAINTAIN_INTERVAL_S``; a KEK problem found
  after start-up is logged each round (the service stays not-ready), Postgres errors are
  retried after ``MAINTAIN_RETRY_S``. ``on_change`` runs after every change (the jwks service
  reloads its document). ``republish_every_s``: also announce every live key's state that
  often (a cell outside the home region: the home JWKS heals from a lost event).
- A due next key that the public JWKS does not show yet (``KeyStore`` with a publication
  check) is asked about again after ``UNPUBLISHED_RETRY_S``, not every second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.events.relay import TRANSIENT_ERRORS
from shared.keys.crypto import KeyConfigError
from shared.keys.store import KeyStore
from shared.logs import get_logger

MAINTAIN_INTERVAL_S = 60.0
MAINTAIN_RETRY_S = 2.0
UNPUBLISHED_RETRY_S = 30.0

log = get_logger(__name__)


class KeyRotation:
    def __init__(
        self,
        store: KeyStore,
        *,
        on_change: Callable[[], None] | None = None,
        republish_every_s: float | None = None,
    ) -> None:
        self.store = store
        self.keks_verified = False
        self._on_change = on_change
        self._republish_every = republish_every_s
        self._republished_at: float | None = None

    async def start(self) -> None:
        await self.store.verify_keks()
        self.keks_verified = True
        await self.store.maintain()

    async def run(self) -> None:
        delay = 0.0
        while True:
            await asyncio.sleep(delay)
            delay = await self.maintain_once()

    async def maintain_once(self) -> float:
        """One pass; returns the seconds until the next one."""
        try:
            if not self.keks_verified:
                await self.store.verify_keks()
                self.keks_verified = True
            result = await self.store.maintain()
            await self._republish_when_due()
        except KeyConfigError as exc:
            # Found after start-up (Postgres was down then): stay not-ready and keep saying why.
            log.error("tool_keys_undecryptable", error=str(exc))
            return MAINTAIN_INTERVAL_S
        except TRANSIENT_ERRORS as exc:
            log.warning("key_maintenance_failed", reason=type(exc).__name__)
            return MAINTAIN_RETRY_S
        if self._on_change is not None and result.changed:
            self._on_change()
        if result.unpublished is not None:
            return UNPUBLISHED_RETRY_S
        if result.next_due is None:
            return MAINTAIN_RETRY_S
        until_due = (result.next_due - self.store.now()).total_seconds()
        return min(MAINTAIN_INTERVAL_S, max(1.0, until_due))

    async def _republish_when_due(self) -> None:
        if self._republish_every is None:
            return
        now = asyncio.get_running_loop().time()
        if self._republished_at is None or now - self._republished_at >= self._republish_every:
            await self.store.republish()
            self._republished_at = now
