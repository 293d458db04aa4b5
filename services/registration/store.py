"""Changes to the registration store, each one transaction with its audit row and its event.

Every change commits together with an ``attune.registration.v1`` event in the outbox, whose
data names the ``issuer`` and ``client_id`` (what login and launch key their caches on), so
their caches drop the entry within seconds. Events never carry a token or an install code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from services.registration import errors, queries
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


def _event(kind: str, platform_id: int, data: dict[str, Any]) -> Event:
    return Event(
        type=kind,
        source=SOURCE,
        subject=f"platform:{platform_id}",
        data={"platform_id": platform_id, **data},
    )


async def _install_code_refusal(conn: asyncpg.Connection, code_hash: bytes) -> Exception:
    row = await queries.install_code(conn, code_hash)
    if row is None:
        return errors.install_code_invalid()
    if row["used_at"] is not None:
        return errors.install_code_used()
    if row["expired"]:
        return errors.install_code_expired()
    return errors.install_code_used()  # lost a race with a concurrent use


async def check_install_code(pool: asyncpg.Pool, code_hash: bytes) -> None:
    """Refuse an unknown, used or expired code before anything is sent to the platform.
    (It is used up later, atomically, in the transaction that stores the registration.)"""
    async with pool.acquire() as conn:
        row = await queries.install_code(conn, code_hash)
        if row is None or row["used_at"] is not None or row["expired"]:
            raise await _install_code_refusal(conn, code_hash)


async def save_registration(
    pool: asyncpg.Pool,
    rec: queries.PlatformRecord,
    deployment_ids: list[str],
    *,
    actor: str,
    install_code_hash: bytes | None = None,
    details: dict[str, Any] | None = None,
) -> Saved:
    """Create or update the registration of (issuer, client_id), record the deployments the
    platform named, use up the install code, audit and announce it — all or nothing."""
    async with pool.acquire() as conn, conn.transaction():
        platform_id, created = await queries.upsert_platform(conn, rec)
        new = [d for d in deployment_ids if await queries.ensure_deployment(conn, platform_id, d)]
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
                **(details or {}),
            },
        )
        await enqueue(
            conn,
            topics.REGISTRATION,
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
    return Saved(platform_id, created, all_ids, new)


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
        await enqueue(conn, topics.REGISTRATION, _event(kind, platform_id, data))
    return {"platform_id": platform_id, **data}


async def change_frame_origins(
    pool: asyncpg.Pool, platform_id: int, origins: list[str], *, actor: str
) -> dict[str, Any]:
    """Replace the origins allowed to frame this platform's pages; audited and announced
    (``registration.frame_origins_changed``), so every service's cache drops the entry."""
    async with pool.acquire() as conn, conn.transaction():
        platform = await queries.lock_platform(conn, platform_id)
        if platform is None:
            raise errors.platform_not_found()
        previous = list(platform["frame_origins"] or [])
        await queries.set_frame_origins(conn, platform_id, origins)
        data = {
            "issuer": platform["issuer"],
            "client_id": platform["client_id"],
            "frame_origins": origins,
            "previous_frame_origins": previous,
        }
        await queries.audit(
            conn,
            actor=actor,
            action="registration.frame_origins_changed",
            platform_id=platform_id,
            issuer=platform["issuer"],
            client_id=platform["client_id"],
            details={"frame_origins": origins, "previous_frame_origins": previous},
        )
        await enqueue(
            conn,
            topics.REGISTRATION,
            _event("registration.frame_origins_changed", platform_id, data),
        )
    return {"platform_id": platform_id, **data}


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
        await enqueue(conn, topics.REGISTRATION, _event("registration.deleted", platform_id, data))
    return {"platform_id": platform_id, **data}


async def create_install_code(
    pool: asyncpg.Pool,
    code_hash: bytes,
    *,
    label: str | None,
    ttl_s: int,
    actor: str,
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        code_id, expires_at = await queries.create_install_code(
            conn, code_hash, label=label, created_by=actor, ttl_s=ttl_s
        )
        await queries.audit(
            conn,
            actor=actor,
            action="install_code.created",
            details={
                "install_code_id": code_id,
                "label": label,
                "expires_at": expires_at.isoformat(),
            },
        )
    return {"id": code_id, "label": label, "expires_at": expires_at.isoformat()}
