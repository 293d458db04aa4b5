"""Changes to the registration store, each one transaction with its audit row and its event.

Every change commits together with an ``attune.registration.v1`` event in the outbox, whose
data names the ``issuer`` and ``client_id`` (what login and launch key their caches on), so
their caches drop the entry within seconds, and with the registration's whole state on
``attune.registration-state.v1`` (``shared.cells.registrations``), which every other cell's
mirror applies to its own copy. Events never carry a token or an install code.

Who may change which registration: an install code creates one; it updates an existing
(issuer, client_id) only when an admin issued it for that platform (a re-registration code).
An admin (the admin API, or the admin token on the install page) may create or update any.
A refused change writes nothing — the install code stays unused — except its audit row,
committed in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.registration import errors, queries
from shared.cells.registrations import publish_state
from shared.errors import AttuneError
from shared.events import topics
from shared.events.envelope import Event
from shared.events.outbox import enqueue

SOURCE = "registration"


@dataclass(frozen=True)
class Saved:
    platform_id: int
    created: bool
    deployment_ids: list[str]
    new_deployment_ids: list[str]


@dataclass(frozen=True)
class InstallCode:
    """A usable install code as checked before the registration is sent to the platform."""

    id: int
    for_platform_id: int | None  # a re-registration code: it may update this platform only


class Refused(Exception):
    """A change the credential does not allow: ``error`` for the caller; ``platform_id`` (the
    registration it would have changed) and ``reason`` for the audit row written after the
    refused transaction rolled back."""

    def __init__(self, error: AttuneError, *, platform_id: int | None, reason: str) -> None:
        super().__init__(error.code)
        self.error = error
        self.platform_id = platform_id
        self.reason = reason


def _event(kind: str, platform_id: int, data: dict[str, Any]) -> Event:
    return Event(
        type=kind,
        source=SOURCE,
        subject=f"platform:{platform_id}",
        data={"platform_id": platform_id, **data},
    )


async def _announce(conn: asyncpg.Connection, event: Event) -> None:
    """Announce a change in its transaction: the event (caches and projections in this
    region) and the registration's whole state (the other cells' read models)."""
    await enqueue(conn, topics.REGISTRATION, event)
    await publish_state(conn, int(event.data["platform_id"]))


async def _install_code_refusal(conn: asyncpg.Connection, code_hash: bytes) -> Exception:
    row = await queries.install_code(conn, code_hash)
    if row is None:
        return errors.install_code_invalid()
    if row["used_at"] is not None:
        return errors.install_code_used()
    if row["expired"]:
        return errors.install_code_expired()
    return errors.install_code_used()  # lost a race with a concurrent use


async def check_install_code(pool: asyncpg.Pool, code_hash: bytes) -> InstallCode:
    """Refuse an unknown, used or expired code before anything is sent to the platform.
    (It is used up later, atomically, in the transaction that stores the registration.)"""
    async with pool.acquire() as conn:
        row = await queries.install_code(conn, code_hash)
        if row is None or row["used_at"] is not None or row["expired"]:
            raise await _install_code_refusal(conn, code_hash)
    return InstallCode(int(row["id"]), row["for_platform_id"])


async def check_reregistration(
    pool: asyncpg.Pool, code: InstallCode, issuer: str, *, actor: str, details: dict[str, Any]
) -> str | None:
    """Before anything is sent to the platform: a re-registration code is only good for the
    issuer of the platform it was issued for (and that platform must still exist). Returns
    that platform's region (a re-registration keeps it; the admin page moves a platform)."""
    if code.for_platform_id is None:
        return None
    target = await pool.fetchrow(
        "SELECT issuer, region FROM platforms WHERE id = $1", code.for_platform_id
    )
    if target is not None and target["issuer"] == issuer:
        region: str | None = target["region"]
        return region
    detail = (
        "the registration it was issued for no longer exists"
        if target is None
        else "that registration has another issuer than this LMS"
    )
    refused = Refused(
        errors.reregistration_mismatch(detail),
        platform_id=code.for_platform_id,
        reason="reregistration_mismatch",
    )
    await audit_refusal(
        pool, refused, actor=actor, issuer=issuer, client_id=None, code=code, details=details
    )
    raise refused.error


async def audit_refusal(
    pool: asyncpg.Pool,
    refused: Refused,
    *,
    actor: str,
    issuer: str,
    client_id: str | None,
    code: InstallCode | None,
    details: dict[str, Any],
) -> None:
    """The audit row of a refused registration, in its own transaction: the refused one
    rolled back, this one stays (under the platform it would have changed, so that
    platform's trail shows the attempt)."""
    async with pool.acquire() as conn:
        await queries.audit(
            conn,
            actor=actor,
            action="registration.refused",
            platform_id=refused.platform_id,
            issuer=issuer,
            client_id=client_id,
            details={
                **details,
                "code": refused.error.code,
                "reason": refused.reason,
                **_code_details(code),
            },
        )


def _code_details(code: InstallCode | None) -> dict[str, Any]:
    if code is None:
        return {}
    if code.for_platform_id is None:
        return {"install_code_id": code.id}
    return {"install_code_id": code.id, "for_platform_id": code.for_platform_id}


def _changes(before: asyncpg.Record, rec: queries.PlatformRecord) -> dict[str, Any]:
    """What an update changes (field: [before, after]), for the audit trail."""
    after = {
        "auth_url": rec.auth_url,
        "jwks_url": rec.jwks_url,
        "token_url": rec.token_url,
        "product": rec.product,
        "deployment_policy": rec.deployment_policy,
        "environment": rec.environment,
        "name": rec.name if rec.name is not None else before["name"],
        "registration_method": rec.method,
        "frame_origins": sorted(set(before["frame_origins"]) | set(rec.frame_origins or [])),
        "region": rec.region if rec.region is not None else before["region"],
    }
    old = {k: sorted(before[k]) if k == "frame_origins" else before[k] for k in after}
    return {k: [old[k], after[k]] for k in after if old[k] != after[k]}


async def _place(
    conn: asyncpg.Connection, rec: queries.PlatformRecord, code: asyncpg.Record | None
) -> tuple[int, bool, dict[str, Any]]:
    """Create the registration, or update the existing one when the credential allows it:
    (platform id, created, changes). Raises ``Refused``."""
    target = code["for_platform_id"] if code is not None else None
    mismatch = Refused(
        errors.reregistration_mismatch("the LMS answered with another client ID"),
        platform_id=target,
        reason="reregistration_mismatch",
    )
    existing = await queries.lock_platform_by_key(conn, rec.issuer, rec.client_id)
    if existing is None:
        if target is not None:
            raise mismatch
        platform_id = await queries.insert_platform(conn, rec)
        if platform_id is not None:
            return platform_id, True, {}
        # Created concurrently (the insert waited for it): an existing registration now.
        existing = await queries.lock_platform_by_key(conn, rec.issuer, rec.client_id)
        if existing is None:  # ... and deleted again meanwhile
            raise Refused(errors.registration_collision(), platform_id=None, reason="race")
    if code is not None and target != existing["id"]:
        if target is not None:
            raise mismatch
        raise Refused(
            errors.registration_collision(), platform_id=int(existing["id"]), reason="collision"
        )
    changes = _changes(existing, rec)
    await queries.update_platform(conn, int(existing["id"]), rec)
    return int(existing["id"]), False, changes


async def save_registration(
    pool: asyncpg.Pool,
    rec: queries.PlatformRecord,
    deployment_ids: list[str],
    *,
    actor: str,
    install_code_hash: bytes | None = None,
    details: dict[str, Any] | None = None,
) -> Saved:
    """Create the registration of (issuer, client_id) — or update it when the credential
    allows: an admin (no install code), or a re-registration code issued for it — record the
    deployments the platform named, use up the install code, audit and announce it, all or
    nothing. A collision the credential does not allow raises its ``RegistrationError``
    after auditing the attempt; nothing else is written."""
    code: asyncpg.Record | None = None
    try:
        async with pool.acquire() as conn, conn.transaction():
            if install_code_hash is not None:
                code = await queries.install_code(conn, install_code_hash, lock=True)
                if code is None or code["used_at"] is not None or code["expired"]:
                    raise await _install_code_refusal(conn, install_code_hash)
            platform_id, created, changes = await _place(conn, rec, code)
            new = [
                d for d in deployment_ids if await queries.ensure_deployment(conn, platform_id, d)
            ]
            if install_code_hash is not None:
                if await queries.consume_install_code(conn, install_code_hash, platform_id) is None:
                    raise await _install_code_refusal(conn, install_code_hash)
            all_ids = await queries.deployment_ids(conn, platform_id)
            kind = "registration.created" if created else "registration.updated"
            await queries.audit(
                conn,
                actor=actor,
                action=kind,
                platform_id=platform_id,
                issuer=rec.issuer,
                client_id=rec.client_id,
                details={
                    "method": rec.method,
                    "product": rec.product,
                    "deployment_policy": rec.deployment_policy,
                    "deployment_ids_added": new,
                    **({"changed": changes} if changes else {}),
                    **(_code_details(_install_code(code))),
                    **(details or {}),
                },
            )
            await _announce(
                conn,
                _event(
                    kind,
                    platform_id,
                    {
                        "issuer": rec.issuer,
                        "client_id": rec.client_id,
                        "product": rec.product,
                        "deployment_policy": rec.deployment_policy,
                        "registration_method": rec.method,
                        "deployment_ids": all_ids,
                    },
                ),
            )
    except Refused as refused:
        await audit_refusal(
            pool,
            refused,
            actor=actor,
            issuer=rec.issuer,
            client_id=rec.client_id,
            code=_install_code(code),
            details={"method": rec.method, "product": rec.product, **(details or {})},
        )
        raise refused.error from None
    return Saved(platform_id, created, all_ids, new)


def _install_code(row: asyncpg.Record | None) -> InstallCode | None:
    return InstallCode(int(row["id"]), row["for_platform_id"]) if row is not None else None


async def change_deployment(
    pool: asyncpg.Pool,
    platform_id: int,
    deployment_id: str,
    *,
    status: str,
    label: str | None,
    actor: str,
) -> dict[str, Any]:
    kind = {"active": "deployment.approved", "disabled": "deployment.disabled"}[status]
    async with pool.acquire() as conn, conn.transaction():
        platform = await queries.lock_platform(conn, platform_id)
        if platform is None:
            raise errors.platform_not_found()
        previous = await queries.set_deployment_status(
            conn, platform_id, deployment_id, status, label
        )
        data = {
            "issuer": platform["issuer"],
            "client_id": platform["client_id"],
            "deployment_id": deployment_id,
            "status": status,
            "previous_status": previous,
        }
        await queries.audit(
            conn,
            actor=actor,
            action=kind,
            platform_id=platform_id,
            issuer=platform["issuer"],
            client_id=platform["client_id"],
            details={"deployment_id": deployment_id, "previous_status": previous, "label": label},
        )
        await _announce(conn, _event(kind, platform_id, data))
    return {"platform_id": platform_id, **data}


async def _change_field(
    pool: asyncpg.Pool,
    platform_id: int,
    field: str,
    value: Any,
    *,
    actor: str,
    write: Callable[[asyncpg.Connection, int, Any], Awaitable[None]],
    before: Callable[[asyncpg.Record], Any],
) -> dict[str, Any]:
    """Set one field of a registration; audited and announced as
    ``registration.<field>_changed`` with the value before and after."""
    action = f"registration.{field}_changed"
    async with pool.acquire() as conn, conn.transaction():
        platform = await queries.lock_platform(conn, platform_id)
        if platform is None:
            raise errors.platform_not_found()
        details = {field: value, f"previous_{field}": before(platform)}
        await write(conn, platform_id, value)
        data = {"issuer": platform["issuer"], "client_id": platform["client_id"], **details}
        await queries.audit(
            conn,
            actor=actor,
            action=action,
            platform_id=platform_id,
            issuer=platform["issuer"],
            client_id=platform["client_id"],
            details=details,
        )
        await _announce(conn, _event(action, platform_id, data))
    return {"platform_id": platform_id, **data}


async def change_frame_origins(
    pool: asyncpg.Pool, platform_id: int, origins: list[str], *, actor: str
) -> dict[str, Any]:
    """Replace the origins allowed to frame this platform's pages; audited and announced
    (``registration.frame_origins_changed``), so every service's cache drops the entry."""
    return await _change_field(
        pool,
        platform_id,
        "frame_origins",
        origins,
        actor=actor,
        write=queries.set_frame_origins,
        before=lambda platform: list(platform["frame_origins"] or []),
    )


async def change_region(
    pool: asyncpg.Pool, platform_id: int, region: str | None, *, actor: str
) -> dict[str, Any]:
    """Move a registration to the cell of ``region`` (None: any cell); audited and announced
    (``registration.region_changed``), so every cell's login and launch serve it, or refuse
    it, within seconds. Data already stored in the old region stays there
    (docs/architecture.md, "Regions")."""
    return await _change_field(
        pool,
        platform_id,
        "region",
        region,
        actor=actor,
        write=queries.set_region,
        before=lambda platform: platform["region"],
    )


async def delete_platform(pool: asyncpg.Pool, platform_id: int, *, actor: str) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        platform = await queries.lock_platform(conn, platform_id)
        if platform is None:
            raise errors.platform_not_found()
        ids = await queries.deployment_ids(conn, platform_id)
        await queries.delete_platform(conn, platform_id)
        data = {
            "issuer": platform["issuer"],
            "client_id": platform["client_id"],
            "deployment_ids": ids,
        }
        await queries.audit(
            conn,
            actor=actor,
            action="registration.deleted",
            platform_id=platform_id,
            issuer=platform["issuer"],
            client_id=platform["client_id"],
            details={"deployment_ids": ids},
        )
        await _announce(conn, _event("registration.deleted", platform_id, data))
    return {"platform_id": platform_id, **data}


async def create_install_code(
    pool: asyncpg.Pool,
    code_hash: bytes,
    *,
    label: str | None,
    ttl_s: int,
    actor: str,
    for_platform_id: int | None = None,
) -> dict[str, Any]:
    """A single-use install code; with ``for_platform_id`` a re-registration code, which may
    update that registration (and create none). Raises ``platform_not_found``."""
    async with pool.acquire() as conn, conn.transaction():
        platform = None
        if for_platform_id is not None:
            in_range = 0 < for_platform_id < 2**63
            platform = await queries.lock_platform(conn, for_platform_id) if in_range else None
            if platform is None:
                raise errors.platform_not_found()
        code_id, expires_at = await queries.create_install_code(
            conn,
            code_hash,
            label=label,
            created_by=actor,
            ttl_s=ttl_s,
            for_platform_id=for_platform_id,
        )
        await queries.audit(
            conn,
            actor=actor,
            action="install_code.created",
            platform_id=for_platform_id,
            issuer=platform["issuer"] if platform is not None else None,
            client_id=platform["client_id"] if platform is not None else None,
            details={
                "install_code_id": code_id,
                "label": label,
                "expires_at": expires_at.isoformat(),
                **({"for_platform_id": for_platform_id} if for_platform_id is not None else {}),
            },
        )
    return {
        "id": code_id,
        "label": label,
        "expires_at": expires_at.isoformat(),
        "for_platform_id": for_platform_id,
    }
