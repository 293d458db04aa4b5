"""The public JWKS, prebuilt in memory.

``JwksDocument`` is immutable: body bytes, strong ETag and response headers are computed once
per key change, so serving a request is a lookup and never touches Postgres. ``JwksCache``
holds the latest document, reloads it when woken (key events, our own rotations) and at least
every ``JWKS_RELOAD_S``, keeps the last good document while Postgres is down, and never
replaces a document with an empty key set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from shared.errors import Unavailable
from shared.events.envelope import Event
from shared.events.relay import TRANSIENT_ERRORS
from shared.i18n.catalogues import _
from shared.jose import public_jwk
from shared.keys.store import JWKS_RELOAD_S, KeyStore, PublishedKey
from shared.logs import get_logger

log = get_logger(__name__)

# While no document could be loaded, or the last reload failed, retry this often.
RETRY_S = 2.0
_STATE_ORDER = {"current": 0, "next": 1, "retired": 2}


@dataclass(frozen=True, slots=True)
class JwksDocument:
    body: bytes
    etag: str
    kids: tuple[str, ...]
    current_kid: str | None
    headers: Mapping[str, str]
    not_modified_headers: Mapping[str, str]

    @classmethod
    def build(cls, keys: Sequence[PublishedKey], *, max_age_s: int) -> JwksDocument:
        """The JWKS of ``keys``: current first, then next, then retired (newest first).

        The order and the JSON encoding are deterministic, so every replica serving the same
        keys serves the same bytes and the same ETag.
        """
        ordered = sorted(
            keys, key=lambda k: (_STATE_ORDER[k.state], -k.created_at.timestamp(), k.kid)
        )
        jwks = {"keys": [public_jwk(k.public_key, k.kid) for k in ordered]}
        body = json.dumps(jwks, separators=(",", ":"), sort_keys=True).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cache = {"Cache-Control": f"public, max-age={max_age_s}", "ETag": etag}
        return cls(
            body=body,
            etag=etag,
            kids=tuple(k.kid for k in ordered),
            current_kid=next((k.kid for k in ordered if k.state == "current"), None),
            headers={**cache, "Content-Type": "application/json"},
            not_modified_headers=cache,
        )

    def matches(self, if_none_match: str | None) -> bool:
        """RFC 9110 If-None-Match: weak comparison, a list of tags, or ``*``."""
        if not if_none_match:
            return False
        for tag in if_none_match.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/") == self.etag:
                return True
        return False


class JwksCache:
    def __init__(self, store: KeyStore, *, max_age_s: int) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._wake = asyncio.Event()
        self.document: JwksDocument | None = None
        self.events_received = 0

    def request_reload(self) -> None:
        self._wake.set()

    async def on_key_event(self, event: Event) -> None:
        """``EventListener`` handler. Events carry no key material: reload from Postgres."""
        self.events_received += 1
        self.request_reload()

    async def reload(self) -> bool:
        """Rebuild the document from Postgres; True when it changed.

        An empty key set never replaces a document (nor becomes one): a JWKS without keys
        would make every platform reject every token. Postgres errors propagate.
        """
        keys = await self._store.published_keys()
        if not keys:
            log.warning("jwks_empty_not_published")
            return False
        document = JwksDocument.build(keys, max_age_s=self._max_age_s)
        if self.document is not None and document.etag == self.document.etag:
            return False
        self.document = document
        log.info("jwks_loaded", kids=list(document.kids), current=document.current_kid)
        return True

    async def run(self) -> None:
        """Reload when woken and at least every ``JWKS_RELOAD_S`` (every ``RETRY_S`` while
        failing) until cancelled."""
        healthy = self.document is not None
        while True:
            timeout = JWKS_RELOAD_S if healthy else RETRY_S
            try:  # not wait_for: on 3.11 it swallows a cancellation racing the wake-up
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.reload()
                healthy = self.document is not None
            except TRANSIENT_ERRORS as exc:
                healthy = False
                log.warning("jwks_reload_failed", reason=type(exc).__name__)

    def response(self, request: web.Request) -> web.Response:
        document = self.document
        if document is None:
            raise Unavailable(
                _("The tool's public keys are not available yet."),
                code="jwks_unavailable",
                hint=_("Retry shortly; the key service is starting or cannot reach its database."),
            )
        if document.matches(request.headers.get("If-None-Match")):
            return web.Response(status=304, headers=document.not_modified_headers)
        return web.Response(body=document.body, headers=document.headers)
