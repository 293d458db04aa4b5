"""Tool keys across cells: each cell signs with its own key, one JWKS URL publishes them all.

A cell outside the home region keeps its own ``tool_keys`` under its own KEK: its private keys
never leave its database, encrypted or not. Its checkins service runs the rotation
(``shared.keys.rotation``) with two differences from the home region's jwks service:

- a due next key becomes current only once the **public** JWKS (the registration's one
  ``jwks_url``, served by the home region) lists it (``JwksProbe``). While it does not, or the
  home region cannot be reached, the current key keeps signing: rotation stays zero-downtime
  and never signs with a key a platform cannot find;
- its kids carry the region (``eu-west-1.20261123T120000Z-3f9a1c2b``) and every key event
  carries the public half; all live keys are announced again every ``KEY_REPUBLISH_S``.

The home region's jwks service reads every other cell's ``attune.key.v1`` on that cell's
cluster (``cell_keys_ctx``; ``ATTUNE_CELL_KAFKA``; read remote, write local) into
``cell_keys`` and publishes those keys next to its own. A key only moves forward
(next → current → retired → removed), so a replayed old event never brings back a removed key,
and a cell can only publish kids under its own region's prefix, checked public keys only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from shared.cells.remote import CleanupContext, each_cell
from shared.db import POOL_KEY
from shared.events import topics
from shared.events.envelope import Event
from shared.http import HTTP_KEY, OutboundError, OutboundHttp
from shared.keys.crypto import load_public_der
from shared.keys.rotation import KeyRotation
from shared.keys.store import KeyStore
from shared.logs import get_logger
from shared.lti.wiring import URLS_KEY
from shared.tasks import stop_task
from shared.web import SERVICE_KEY, SETTINGS_KEY

log = get_logger(__name__)

KEY_REPUBLISH_S = 600.0
STATES = ("next", "current", "retired", "removed")


class JwksProbe:
    """``KeyStore``'s publication check: is this kid in the public JWKS right now? Any
    failure (home unreachable, not a JWKS) answers no: the current key keeps signing."""

    def __init__(self, http: OutboundHttp, url: str) -> None:
        self._http = http
        self._url = url

    async def __call__(self, kid: str) -> bool:
        try:
            document = await self._http.get_json(self._url)
        except OutboundError as exc:
            log.warning("public_jwks_unreachable", reason=exc.reason)
            return False
        keys = document.get("keys") if isinstance(document, dict) else None
        return any(isinstance(k, dict) and k.get("kid") == kid for k in keys or [])


_UPSERT = """
INSERT INTO cell_keys AS k (kid, region, state, public_key, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (kid) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
WHERE k.region = excluded.region
  AND array_position($7::text[], excluded.state) > array_position($7::text[], k.state)
"""


def _public_key(data: dict[str, Any]) -> bytes:
    raw = data.get("public_key")
    try:
        der = base64.b64decode(str(raw), validate=True)
        load_public_der(der)  # RSA of 2048+ bits, or ValueError
    except (binascii.Error, ValueError):
        raise ValueError("the event carries no usable public key") from None
    return der


def apply_cell_key(region: str) -> Callable[[asyncpg.Connection, Event], Any]:
    """The handler for one cell's key events, recorded under that cell's region (the cluster
    they came from); anything else is refused (a dead letter), never published."""

    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if not event.type.startswith("key."):
            return
        data = event.data
        kid, state = data.get("kid"), data.get("state")
        if not isinstance(kid, str) or not kid.startswith(f"{region}."):
            raise ValueError(f"a key of the {region} cell has a kid starting with {region}.")
        if state not in STATES:
            raise ValueError("unknown key state")
        if data.get("region") != region:
            raise ValueError("a key event from another region's cluster")
        created = datetime.fromisoformat(str(data["created_at"]))
        await conn.execute(
            _UPSERT,
            kid,
            region,
            state,
            _public_key(data),
            created,
            event.occurred_at,
            list(STATES),
        )

    return handle


def cell_keys_ctx(on_change: Callable[[], None]) -> CleanupContext:
    """Home region (jwks service): every other cell's key events; ``on_change`` after each
    one applied (the JWKS document reloads)."""
    return each_cell(
        "cell-keys",
        topics.KEY,
        apply_cell_key,
        group_id="attune.home.cell-keys",  # on each cell's cluster; a key only moves forward
        after_commit=lambda _event: on_change(),
    )


async def cell_rotation_ctx(app: web.Application) -> AsyncIterator[None]:
    """A cell outside the home region (checkins service, after ``http_ctx``): rotate this
    cell's own keys, a next key becoming current only once the public JWKS shows it."""
    store = KeyStore(
        app[POOL_KEY],
        app[SETTINGS_KEY],
        source=app[SERVICE_KEY],
        published=JwksProbe(app[HTTP_KEY], app[URLS_KEY].jwks_url),
    )
    rotation = KeyRotation(store, republish_every_s=KEY_REPUBLISH_S)
    task = asyncio.create_task(rotation.run(), name="cell-key-rotation")
    yield
    await stop_task(task)
