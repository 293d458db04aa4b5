"""The tool key store and its rotation. Written only by the jwks service and ``attune keys``.

A key moves ``next → current → retired → removed``. The timings (``KeyTimings``) guarantee,
for any platform that caches our JWKS for at most ``ATTUNE_KEY_PUBLISH_AHEAD_S``:

- a ``next`` key is in every JWKS a platform can still be using before it signs anything: it
  becomes ``current`` only ``publish_ahead + propagation`` after it was first published, where
  propagation covers a jwks replica's reload period and our own ``Cache-Control`` max-age;
- a ``retired`` key stays published ``token_lifetime + publish_ahead`` after it stopped being
  current, which outlasts every token it signed (``ToolSigner`` refuses tokens living longer
  than ``token_lifetime``, and signers switch keys within ``SIGNER_RELOAD_S``).

Every state change happens in one transaction under a transaction-scoped advisory lock, with
its ``attune.key.v1`` event written to the outbox in the same transaction. Any number of
replicas may call ``maintain`` at once: the second to get the lock re-reads the state and
finds nothing left to do. The two partial unique indexes of ``tool_keys`` (one ``current``,
one ``next``) back this up in the schema.

Time comes from an injectable clock, so tests drive a whole rotation without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.events import topics
from shared.events.envelope import Event
from shared.events.outbox import enqueue
from shared.keys import queries as q
from shared.keys.crypto import (
    KeyConfigError,
    KeyEncryptionKeys,
    UnwrapError,
    WrappedKey,
    generate_private_key,
    keks_from_settings,
    load_public_der,
    public_der,
)
from shared.logs import get_logger
from shared.settings import Settings

log = get_logger(__name__)

Clock = Callable[[], datetime]
KeyState = Literal["next", "current", "retired", "removed"]

# A jwks replica reloads its in-memory JWKS at least this often (key events make it sooner).
JWKS_RELOAD_S = 60
# A ToolSigner re-reads the current key at least this often (key events make it sooner).
SIGNER_RELOAD_S = 30
# Upper bound of the JWKS Cache-Control max-age; it is also at most a quarter of publish-ahead.
JWKS_MAX_AGE_CAP_S = 300


def utc_now() -> datetime:
    return datetime.now(UTC)


def jwks_max_age_s(settings: Settings) -> int:
    """``Cache-Control: max-age`` of the JWKS: well inside the pre-publication window."""
    return min(JWKS_MAX_AGE_CAP_S, settings.key_publish_ahead_s // 4)


@dataclass(frozen=True, slots=True)
class KeyTimings:
    rotation: timedelta
    publish_ahead: timedelta
    token_lifetime: timedelta
    propagation: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyTimings:
        return cls(
            rotation=timedelta(days=settings.key_rotation_days),
            publish_ahead=timedelta(seconds=settings.key_publish_ahead_s),
            token_lifetime=timedelta(seconds=settings.key_token_lifetime_s),
            # How long after a commit a platform's fresh fetch may still miss the change: a
            # replica's reload period plus an HTTP cache honouring our max-age.
            propagation=timedelta(seconds=JWKS_RELOAD_S + jwks_max_age_s(settings)),
        )

    @property
    def activate_after(self) -> timedelta:
        """From a key's publication to the moment it may become current."""
        return self.publish_ahead + self.propagation

    @property
    def keep_retired(self) -> timedelta:
        """From a key's retirement to its removal from the JWKS."""
        return self.token_lifetime + self.publish_ahead


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key's identity, state and history; never any key material."""

    kid: str
    state: KeyState
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    removed_at: datetime | None = None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> KeyInfo:
        return cls(
            kid=row["kid"],
            state=row["state"],
            created_at=row["created_at"],
            activated_at=row["activated_at"],
            retired_at=row["retired_at"],
            removed_at=row["removed_at"],
        )

    def event_data(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "kid": self.kid,
            "state": self.state,
            "created_at": iso(self.created_at),
            "activated_at": iso(self.activated_at),
            "retired_at": iso(self.retired_at),
            "removed_at": iso(self.removed_at),
        }


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A key the JWKS publishes: its public half only."""

    kid: str
    state: KeyState
    created_at: datetime
    public_key: rsa.RSAPublicKey


# --- planning: a pure function of the key states, the time and the timings ----------------


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["create_current", "create_next", "activate", "retire", "remove"]
    kid: str | None = None


def activation_due(keys: Sequence[KeyInfo], now: datetime, timings: KeyTimings) -> str | None:
    """The kid of the ``next`` key when it is due to replace a current key at ``now``."""
    current = next((k for k in keys if k.state == "current"), None)
    upcoming = next((k for k in keys if k.state == "next"), None)
    if current is None or upcoming is None:
        return None
    return upcoming.kid if now >= upcoming.created_at + timings.activate_after else None


def plan(
    keys: Sequence[KeyInfo],
    now: datetime,
    timings: KeyTimings,
    published: frozenset[str] | None = None,
) -> list[Action]:
    """The transitions due at ``now``, in the order they must be applied. ``published``: the
    kids seen in the public JWKS (a cell outside the home region, whose keys the home region
    publishes): a next key becomes current only once it is there. None: no such check (the
    store's own jwks service publishes what it stores)."""
    current = next((k for k in keys if k.state == "current"), None)
    upcoming = next((k for k in keys if k.state == "next"), None)
    actions: list[Action] = []
    if current is None:
        # Nothing can sign without a current key, so waiting would only make things worse;
        # and with no current key no token exists that a platform could fail to verify.
        if upcoming is not None:
            actions.append(Action("activate", upcoming.kid))
        else:
            actions.append(Action("create_current"))
    elif upcoming is None:
        assert current.activated_at is not None
        if now >= current.activated_at + timings.rotation - timings.activate_after:
            actions.append(Action("create_next"))
    elif now >= upcoming.created_at + timings.activate_after and (
        published is None or upcoming.kid in published
    ):
        actions.append(Action("retire", current.kid))
        actions.append(Action("activate", upcoming.kid))
    for key in keys:
        if key.state == "retired":
            assert key.retired_at is not None
            if now >= key.retired_at + timings.keep_retired:
                actions.append(Action("remove", key.kid))
    return actions


def next_due(keys: Sequence[KeyInfo], timings: KeyTimings) -> datetime | None:
    """When ``plan`` will next have something to do; None when it has at once (no current key)."""
    current = next((k for k in keys if k.state == "current"), None)
    upcoming = next((k for k in keys if k.state == "next"), None)
    if current is None or current.activated_at is None:
        return None
    due = [
        upcoming.created_at + timings.activate_after
        if upcoming is not None
        else current.activated_at + timings.rotation - timings.activate_after
    ]
    due += [
        k.retired_at + timings.keep_retired
        for k in keys
        if k.state == "retired" and k.retired_at is not None
    ]
    return min(due)


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    changes: tuple[KeyInfo, ...]
    next_due: datetime | None
    # A next key that is due but not yet in the public JWKS (it stays next, the current key
    # keeps signing); None when nothing waits.
    unpublished: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True, slots=True)
class RotationResult:
    next_key: KeyInfo
    created: bool
    activated: bool


@dataclass(frozen=True, slots=True)
class RewrapResult:
    rewrapped: int
    unchanged: int
    kek_id: str


def new_kid(now: datetime, prefix: str | None = None) -> str:
    """A dated, unguessable kid (``20261123T120000Z-3f9a1c2b``), as Canvas dates its own; a
    cell outside the home region prefixes its region (``eu-west-1.20261123T...``)."""
    kid = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    return f"{prefix}.{kid}" if prefix else kid


# Whether the public JWKS publishes a kid (``shared.cells.keys.JwksProbe``).
PublicationCheck = Callable[[str], Awaitable[bool]]


async def list_keys(conn: asyncpg.Connection, *, include_removed: bool = True) -> list[KeyInfo]:
    """Every key's identity, state and history, oldest first. Needs no KEK."""
    rows = await (q.all_keys(conn) if include_removed else q.live_keys(conn))
    return [KeyInfo.from_record(r) for r in rows]


class KeyStore:
    """Key state changes and reads for the jwks service and ``attune keys``.

    Construction parses ``ATTUNE_KEY_ENCRYPTION_KEYS`` and raises ``KeyConfigError`` when it
    is missing or malformed. Private keys never leave this object except wrapped.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        now: Clock = utc_now,
        source: str = "jwks",
        published: PublicationCheck | None = None,
    ) -> None:
        """``published``: in a cell outside the home region (whose keys the home region's
        JWKS publishes), the check that a next key is in the public JWKS before it becomes
        current. Such a cell's kids carry its region as a prefix, whoever creates them (the
        rotation, ``attune keys rotate``): the home region publishes no other kid of it."""
        self._pool = pool
        self._keks: KeyEncryptionKeys = keks_from_settings(settings)
        self.timings = KeyTimings.from_settings(settings)
        self._now = now
        self._source = source
        self._published = published
        self._region = settings.region
        self._kid_prefix = settings.region if settings.is_remote_cell else None

    def now(self) -> datetime:
        return self._now()

    async def list_keys(self, *, include_removed: bool = True) -> list[KeyInfo]:
        async with self._pool.acquire() as conn:
            return await list_keys(conn, include_removed=include_removed)

    async def published_keys(self) -> list[PublishedKey]:
        """The public half of every key the JWKS must contain (next, current, retired)."""
        async with self._pool.acquire() as conn:
            rows = await q.published_public_keys(conn)
        keys: dict[str, PublishedKey] = {}
        for row in rows:
            if row["kid"] in keys:
                continue  # a kid twice (own key first): never publish two keys for one kid
            try:
                public_key = load_public_der(row["public_key"])
            except ValueError:
                # Publishing a key nobody can verify with would help no one; say so loudly.
                log.error("tool_key_unusable", kid=row["kid"])
                continue
            keys[row["kid"]] = PublishedKey(row["kid"], row["state"], row["created_at"], public_key)
        return list(keys.values())

    async def verify_keks(self) -> int:
        """Check that the configured KEKs decrypt every stored private key.

        Returns how many keys were checked; raises ``KeyConfigError`` (naming the variable and
        the KEK id, never a value) when one cannot be decrypted.
        """
        async with self._pool.acquire() as conn:
            rows = await q.wrapped_private_keys(conn)
        for row in rows:
            self._unwrap(row)
        return len(rows)

    def _unwrap(self, row: asyncpg.Record) -> rsa.RSAPrivateKey:
        wrapped = WrappedKey(row["private_key"], row["kek_id"], row["nonce"])
        try:
            return self._keks.unwrap(row["kid"], wrapped)
        except UnwrapError as exc:
            raise KeyConfigError(f"invalid configuration: {exc}") from None

    async def maintain(self) -> MaintenanceResult:
        """Apply every transition due now (first key, next key, activation, removal).

        Idempotent and safe to run from any number of replicas at once. With a publication
        check, a due next key becomes current only once the public JWKS shows it (asked before
        the transaction: no HTTP call holds the lock); while it does not, or cannot be asked
        (the home region unreachable), the current key keeps signing.
        """
        published: frozenset[str] | None = None
        if self._published is not None:
            due = activation_due(
                await self.list_keys(include_removed=False), self._now(), self.timings
            )
            published = frozenset([due] if due is not None and await self._published(due) else [])
        async with self._pool.acquire() as conn, conn.transaction():
            await q.lock(conn)
            keys = [KeyInfo.from_record(r) for r in await q.live_keys(conn)]
            now = self._now()
            changes: list[KeyInfo] = []
            by_kid = {k.kid: k for k in keys}
            for action in plan(keys, now, self.timings, published):
                changed = await self._apply(conn, action, now, by_kid)
                changes.extend(changed)
                for info in changed:
                    by_kid[info.kid] = info
            after = [k for k in by_kid.values() if k.state != "removed"]
        for info in changes:
            log.info("tool_key_changed", kid=info.kid, key_state=info.state)
        waiting = activation_due(after, now, self.timings)
        if waiting is not None and published is not None:
            log.warning("tool_key_not_yet_published", kid=waiting)
            return MaintenanceResult(tuple(changes), next_due(after, self.timings), waiting)
        return MaintenanceResult(tuple(changes), next_due(after, self.timings))

    async def republish(self) -> int:
        """Announce every live key's state again (``key.state``), so the home region's JWKS
        heals from a lost or missed event; returns how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            keys = [KeyInfo.from_record(r) for r in await q.live_keys(conn)]
            now = self._now()
            for info in keys:
                await self._event(conn, "key.state", info, now)
        return len(keys)

    async def rotate(self, *, activate_now: bool = False) -> RotationResult:
        """Publish a ``next`` key unless one is pending; with ``activate_now`` make it current.

        ``activate_now`` skips the publish-ahead wait: platforms holding a cached JWKS fail to
        verify new tokens until they refetch it.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await q.lock(conn)
            keys = [KeyInfo.from_record(r) for r in await q.live_keys(conn)]
            now = self._now()
            by_kid = {k.kid: k for k in keys}
            current = next((k for k in keys if k.state == "current"), None)
            upcoming = next((k for k in keys if k.state == "next"), None)
            created = False
            if current is None and upcoming is None:
                [info] = await self._apply(conn, Action("create_current"), now, by_kid)
                return RotationResult(next_key=info, created=True, activated=True)
            if upcoming is None:
                [upcoming] = await self._apply(conn, Action("create_next"), now, by_kid)
                by_kid[upcoming.kid] = upcoming
                created = True
            if not activate_now:
                return RotationResult(next_key=upcoming, created=created, activated=False)
            if current is not None:
                await self._apply(conn, Action("retire", current.kid), now, by_kid)
            [activated] = await self._apply(conn, Action("activate", upcoming.kid), now, by_kid)
        log.warning("tool_key_activated_early", kid=activated.kid)
        return RotationResult(next_key=activated, created=created, activated=True)

    async def rewrap(self) -> RewrapResult:
        """Re-encrypt every stored private key under the first configured KEK.

        All or nothing: if any key cannot be decrypted nothing changes and ``KeyConfigError``
        says which. Afterwards the other KEKs can be dropped from the configuration.
        """
        primary = self._keks.primary_id
        rewrapped = unchanged = 0
        async with self._pool.acquire() as conn, conn.transaction():
            await q.lock(conn)
            for row in await q.wrapped_private_keys(conn):
                private_key = self._unwrap(row)
                if row["kek_id"] == primary:
                    unchanged += 1
                    continue
                await q.rewrap(conn, row["kid"], self._keks.wrap(row["kid"], private_key))
                rewrapped += 1
        log.info("tool_keys_rewrapped", rewrapped=rewrapped, unchanged=unchanged, kek_id=primary)
        return RewrapResult(rewrapped=rewrapped, unchanged=unchanged, kek_id=primary)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        action: Action,
        now: datetime,
        by_kid: dict[str, KeyInfo],
    ) -> list[KeyInfo]:
        """Run one transition and enqueue its events; returns the keys' new states."""
        if action.kind in ("create_current", "create_next"):
            private_key = await asyncio.to_thread(generate_private_key)
            kid = new_kid(now, self._kid_prefix)
            current = action.kind == "create_current"
            await q.insert_key(
                conn,
                kid=kid,
                state="current" if current else "next",
                public_key=public_der(private_key),
                wrapped=self._keks.wrap(kid, private_key),
                created_at=now,
                activated_at=now if current else None,
            )
            if not current:
                info = KeyInfo(kid=kid, state="next", created_at=now)
                await self._event(conn, "key.published", info, now)
                return [info]
            # The very first key: published and activated in the same instant.
            info = KeyInfo(kid=kid, state="current", created_at=now, activated_at=now)
            await self._event(conn, "key.published", info, now)
            await self._event(conn, "key.activated", info, now)
            return [info]
        assert action.kid is not None
        info = by_kid[action.kid]
        if action.kind == "activate":
            await q.activate(conn, info.kid, now)
            info = replace(info, state="current", activated_at=now)
            await self._event(conn, "key.activated", info, now)
        elif action.kind == "retire":
            await q.retire(conn, info.kid, now)
            info = replace(info, state="retired", retired_at=now)
            await self._event(conn, "key.retired", info, now)
        else:
            await q.remove(conn, info.kid, now)
            info = replace(info, state="removed", removed_at=now)
            await self._event(conn, "key.removed", info, now)
        return [info]

    async def _event(
        self, conn: asyncpg.Connection, event_type: str, info: KeyInfo, now: datetime
    ) -> None:
        # The public half travels with every event (it is public: the JWKS serves it), so
        # the home region can publish a cell's key without reaching into its database.
        public = await q.public_key(conn, info.kid)
        event = Event(
            type=event_type,
            source=self._source,
            subject=info.kid,
            data={
                **info.event_data(),
                "region": self._region,
                "public_key": base64.b64encode(public).decode() if public else None,
            },
            occurred_at=now,
        )
        await enqueue(conn, topics.KEY, event)
