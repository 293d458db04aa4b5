"""SQL of the registration service. Connection first; the caller owns the transaction.

jsonb values travel as JSON text (``$n::jsonb`` in, ``json.loads`` out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.lti.canvas import DEFAULT_CLOUDS, CanvasClouds
from shared.lti.frame import MAX_FRAME_ORIGINS, platform_ancestors

Json = dict[str, Any]


@dataclass(frozen=True)
class PlatformRecord:
    issuer: str
    client_id: str
    auth_url: str
    jwks_url: str
    token_url: str | None
    product: str
    deployment_policy: str
    environment: str
    name: str | None
    method: str
    requested: Json | None = None  # None: keep what is stored
    granted: Json | None = None
    platform_config: Json | None = None
    # Origins of the LMS's pages (CSP frame-ancestors), added to those already recorded.
    frame_origins: list[str] | None = None
    # The cell that serves it (Moodle, manual); None: any cell, or keep what is stored.
    region: str | None = None


_INSERT_PLATFORM = """
INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, token_url, product,
                       deployment_policy, environment, name, registration_method,
                       requested, granted, platform_config, frame_origins, region)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
        coalesce($11::jsonb, '{}'::jsonb), coalesce($12::jsonb, '{}'::jsonb),
        coalesce($13::jsonb, '{}'::jsonb), (coalesce($14::text[], '{}'::text[]))[1:$15], $16)
ON CONFLICT (issuer, client_id) DO NOTHING
RETURNING id
"""

# $1 is the platform id; the other parameters as for the insert ($2 issuer and $3 client_id
# name the row only in the WHERE clause, so an update can never move a registration's key).
_UPDATE_PLATFORM = """
UPDATE platforms AS p SET
    auth_url = $4,
    jwks_url = $5,
    token_url = $6,
    product = $7,
    deployment_policy = $8,
    environment = $9,
    name = coalesce($10, p.name),
    registration_method = $11,
    requested = coalesce($12::jsonb, p.requested),
    granted = coalesce($13::jsonb, p.granted),
    platform_config = coalesce($14::jsonb, p.platform_config),
    frame_origins = (array(
        SELECT o FROM unnest(p.frame_origins || coalesce($15::text[], '{}'::text[]))
                      WITH ORDINALITY AS t(o, n)
        GROUP BY o ORDER BY min(n)))[1:$16],
    region = coalesce($17, p.region),
    updated_at = now()
WHERE p.id = $1 AND p.issuer = $2 AND p.client_id = $3
"""


def _dump(value: Json | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _values(rec: PlatformRecord) -> tuple[Any, ...]:
    return (
        rec.issuer,
        rec.client_id,
        rec.auth_url,
        rec.jwks_url,
        rec.token_url,
        rec.product,
        rec.deployment_policy,
        rec.environment,
        rec.name,
        rec.method,
        _dump(rec.requested),
        _dump(rec.granted),
        _dump(rec.platform_config),
        rec.frame_origins,
        MAX_FRAME_ORIGINS,
        rec.region,
    )


async def lock_platform_by_key(
    conn: asyncpg.Connection, issuer: str, client_id: str
) -> asyncpg.Record | None:
    """The registration of (issuer, client_id), locked until the transaction ends."""
    return await conn.fetchrow(
        "SELECT id, auth_url, jwks_url, token_url, product, deployment_policy, environment, "
        "name, registration_method, frame_origins, region FROM platforms "
        "WHERE issuer = $1 AND client_id = $2 FOR UPDATE",
        issuer,
        client_id,
    )


async def insert_platform(conn: asyncpg.Connection, rec: PlatformRecord) -> int | None:
    """Create the registration; None when (issuer, client_id) exists (it is never touched)."""
    value = await conn.fetchval(_INSERT_PLATFORM, *_values(rec))
    return int(value) if value is not None else None


async def update_platform(conn: asyncpg.Connection, platform_id: int, rec: PlatformRecord) -> None:
    """Update the registration ``platform_id`` (which must hold rec's issuer and client_id):
    endpoints, product and policy replaced, name/requested/granted/config kept when not
    given, frame origins added to the recorded ones."""
    await conn.execute(_UPDATE_PLATFORM, platform_id, *_values(rec))


async def upsert_platform(conn: asyncpg.Connection, rec: PlatformRecord) -> tuple[int, bool]:
    """Insert, or update the registration of the same (issuer, client_id). (id, created).
    For admins only: a dynamic registration decides itself (``store.save_registration``)."""
    for _ in range(3):  # a concurrent delete between the insert and the lock: try again
        platform_id = await insert_platform(conn, rec)
        if platform_id is not None:
            return platform_id, True
        existing = await lock_platform_by_key(conn, rec.issuer, rec.client_id)
        if existing is not None:
            await update_platform(conn, int(existing["id"]), rec)
            return int(existing["id"]), False
    raise RuntimeError("platform row appeared and vanished three times")


async def set_frame_origins(conn: asyncpg.Connection, platform_id: int, origins: list[str]) -> None:
    """Replace the recorded origins (the caller holds the row: ``lock_platform``)."""
    await conn.execute(
        "UPDATE platforms SET frame_origins = $2, updated_at = now() WHERE id = $1",
        platform_id,
        origins,
    )


async def set_region(conn: asyncpg.Connection, platform_id: int, region: str | None) -> None:
    """The cell that serves the registration (the caller holds the row: ``lock_platform``)."""
    await conn.execute(
        "UPDATE platforms SET region = $2, updated_at = now() WHERE id = $1", platform_id, region
    )


async def ensure_deployment(
    conn: asyncpg.Connection, platform_id: int, deployment_id: str, *, status: str = "active"
) -> bool:
    """Record a deployment the platform told us about; an existing one keeps its status
    (an admin's ``disabled`` survives a re-registration). True when it was new."""
    created = await conn.fetchval(
        "INSERT INTO deployments (platform_id, deployment_id, status) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING true",
        platform_id,
        deployment_id,
        status,
    )
    return bool(created)


async def set_deployment_status(
    conn: asyncpg.Connection,
    platform_id: int,
    deployment_id: str,
    status: str,
    label: str | None,
) -> str | None:
    """Set a deployment's status (creating it when only a launch has seen it so far).
    Returns the previous status (None when it was not in ``deployments``)."""
    previous = await conn.fetchval(
        "SELECT status FROM deployments WHERE platform_id = $1 AND deployment_id = $2 FOR UPDATE",
        platform_id,
        deployment_id,
    )
    await conn.execute(
        """
        INSERT INTO deployments (platform_id, deployment_id, status, label)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (platform_id, deployment_id) DO UPDATE SET
            status = excluded.status,
            label = coalesce(excluded.label, deployments.label),
            updated_at = now()
        """,
        platform_id,
        deployment_id,
        status,
        label,
    )
    return str(previous) if previous is not None else None


async def deployment_ids(conn: asyncpg.Connection, platform_id: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT deployment_id FROM deployments WHERE platform_id = $1 ORDER BY created_at, "
        "deployment_id",
        platform_id,
    )
    return [r["deployment_id"] for r in rows]


_PLATFORMS = """
SELECT p.id, p.issuer, p.client_id, p.auth_url, p.jwks_url, p.token_url, p.product,
       p.deployment_policy, p.environment, p.name, p.registration_method, p.requested,
       p.granted, p.platform_config, p.frame_origins, p.region, p.created_at, p.updated_at,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'deployment_id', d.deployment_id, 'status', d.status, 'label', d.label,
                      'created_at', d.created_at, 'updated_at', d.updated_at)
                  ORDER BY d.created_at, d.deployment_id)
           FROM deployments d WHERE d.platform_id = p.id), '[]'::jsonb) AS deployments,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'deployment_id', s.deployment_id, 'policy', s.policy,
                      'first_seen_at', s.first_seen_at, 'region', s.region)
                  ORDER BY s.first_seen_at, s.deployment_id, s.region)
           -- Seen by this region's launches, or by another cell's (shared/cells/sightings.py).
           FROM (SELECT platform_id, deployment_id, policy, first_seen_at, NULL::text AS region
                 FROM deployment_sightings
                 UNION ALL
                 SELECT platform_id, deployment_id, policy, first_seen_at, region
                 FROM cell_sightings) s
           WHERE s.platform_id = p.id AND NOT EXISTS (
               SELECT 1 FROM deployments d
               WHERE d.platform_id = s.platform_id AND d.deployment_id = s.deployment_id)
       ), '[]'::jsonb) AS sightings,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'deployment_id', o.deployment_id, 'region', o.region,
                      'frame_origins', o.frame_origins, 'roster_shared', o.roster_shared,
                      'names_shared', o.names_shared, 'observed_at', o.observed_at)
                  ORDER BY o.observed_at, o.region NULLS FIRST)
           -- This region's launches, and the other cells' (shared/cells/sightings.py).
           FROM (SELECT platform_id, deployment_id, NULL::text AS region, frame_origins,
                        roster_shared, names_shared, observed_at
                 FROM deployment_observations
                 UNION ALL
                 SELECT platform_id, deployment_id, region, frame_origins, roster_shared,
                        names_shared, observed_at
                 FROM cell_observations) o
           WHERE o.platform_id = p.id), '[]'::jsonb) AS observations
FROM platforms p
"""


def _platform(row: asyncpg.Record, here: str, clouds: CanvasClouds = DEFAULT_CLOUDS) -> Json:
    deployments = [{**d, "source": "registration"} for d in json.loads(row["deployments"])]
    seen: dict[str, Json] = {}
    for s in json.loads(row["sightings"]):
        # Seen by a launch only: accepted under the 'accept' policy, or waiting for approval;
        # in this region (``here``) or in other cells (``seen_in``), earliest first.
        known = seen.get(s["deployment_id"])
        region = s["region"] or here
        if known is None:
            known = seen[s["deployment_id"]] = {
                "deployment_id": s["deployment_id"],
                "status": "active",
                "label": None,
                "created_at": s["first_seen_at"],
                "updated_at": s["first_seen_at"],
                "source": "launch",
                "seen_in": [],
            }
            deployments.append(known)
        if s["policy"] != "accept":
            known["status"] = "pending"
        if region not in known["seen_in"]:
            known["seen_in"].append(region)
    # What verified launches of each deployment showed (launch service, migration 0014):
    # page origins it proved and whether the LMS shared the roster and names. Canvas applies
    # the admin's scope and privacy edits after answering the registration, so this — not
    # ``granted`` — says what Attune really gets.
    # Every cell's launches count: the latest observation says what the LMS shares; the page
    # origins are those any cell learned (each cell frames with its own).
    latest: dict[str, Json] = {}
    origins: dict[str, list[str]] = {}
    regions: dict[str, list[str]] = {}
    for o in json.loads(row["observations"]):  # oldest first
        deployment_id = o["deployment_id"]
        latest[deployment_id] = o
        learned = origins.setdefault(deployment_id, [])
        learned.extend(x for x in o["frame_origins"] if x not in learned)
        where = regions.setdefault(deployment_id, [])
        if (o["region"] or here) not in where:
            where.append(o["region"] or here)
    for d in deployments:
        shown = latest.get(d["deployment_id"])
        d["launches_show"] = (
            {
                "roster_shared": shown["roster_shared"],
                "names_shared": shown["names_shared"],
                "observed_at": shown["observed_at"],
                "observed_in": regions[d["deployment_id"]],
            }
            if shown is not None
            else None
        )
        d["learned_frame_origins"] = origins.get(d["deployment_id"], [])
    return {
        "id": row["id"],
        "issuer": row["issuer"],
        "client_id": row["client_id"],
        "name": row["name"],
        "product": row["product"],
        "environment": row["environment"],
        "deployment_policy": row["deployment_policy"],
        "registration_method": row["registration_method"],
        "auth_url": row["auth_url"],
        "jwks_url": row["jwks_url"],
        "token_url": row["token_url"],
        "requested": json.loads(row["requested"]),
        "granted": json.loads(row["granted"]),
        "platform_config": json.loads(row["platform_config"]),
        "frame_origins": list(row["frame_origins"]),
        "region": row["region"],  # the cell that serves it; None: any (Canvas)
        # What pages of this platform's launches actually allow (recorded, else derived).
        "frame_ancestors": list(
            platform_ancestors(row["issuer"], list(row["frame_origins"]), clouds)
        ),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "deployments": deployments,
    }


async def list_platforms(
    conn: asyncpg.Connection, here: str = "", clouds: CanvasClouds = DEFAULT_CLOUDS
) -> list[Json]:
    """Every registration; ``here``: this (the home) region, where local sightings were."""
    return [_platform(r, here, clouds) for r in await conn.fetch(_PLATFORMS + " ORDER BY p.id")]


async def get_platform(
    conn: asyncpg.Connection,
    platform_id: int,
    here: str = "",
    clouds: CanvasClouds = DEFAULT_CLOUDS,
) -> Json | None:
    row = await conn.fetchrow(_PLATFORMS + " WHERE p.id = $1", platform_id)
    return _platform(row, here, clouds) if row is not None else None


async def lock_platform(conn: asyncpg.Connection, platform_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, issuer, client_id, frame_origins, region FROM platforms "
        "WHERE id = $1 FOR UPDATE",
        platform_id,
    )


async def delete_platform(conn: asyncpg.Connection, platform_id: int) -> None:
    # deployments go with it (ON DELETE CASCADE)
    await conn.execute("DELETE FROM platforms WHERE id = $1", platform_id)


# --- audit ---------------------------------------------------------------------------------------


async def audit(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    platform_id: int | None = None,
    issuer: str | None = None,
    client_id: str | None = None,
    details: Json | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO registration_audit (actor, action, platform_id, issuer, client_id, details) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        actor,
        action,
        platform_id,
        issuer,
        client_id,
        _dump(details or {}),
    )


async def list_audit(
    conn: asyncpg.Connection, *, platform_id: int | None, limit: int, before_id: int | None
) -> list[Json]:
    rows = await conn.fetch(
        """
        SELECT id, at, actor, action, platform_id, issuer, client_id, details
        FROM registration_audit
        WHERE ($1::bigint IS NULL OR platform_id = $1)
          AND ($3::bigint IS NULL OR id < $3)
        ORDER BY id DESC LIMIT $2
        """,
        platform_id,
        limit,
        before_id,
    )
    return [
        {
            "id": r["id"],
            "at": r["at"].isoformat(),
            "actor": r["actor"],
            "action": r["action"],
            "platform_id": r["platform_id"],
            "issuer": r["issuer"],
            "client_id": r["client_id"],
            "details": json.loads(r["details"]),
        }
        for r in rows
    ]


# --- install codes -------------------------------------------------------------------------------


async def create_install_code(
    conn: asyncpg.Connection,
    code_hash: bytes,
    *,
    label: str | None,
    created_by: str,
    ttl_s: int,
    for_platform_id: int | None = None,
) -> tuple[int, datetime]:
    row = await conn.fetchrow(
        "INSERT INTO install_codes (code_hash, label, created_by, expires_at, for_platform_id) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5) RETURNING id, expires_at",
        code_hash,
        label,
        created_by,
        float(ttl_s),
        for_platform_id,
    )
    return int(row["id"]), row["expires_at"]


async def install_code(
    conn: asyncpg.Connection, code_hash: bytes, *, lock: bool = False
) -> asyncpg.Record | None:
    """The code (id, used_at, expired, for_platform_id); ``lock``: until the transaction ends,
    so a concurrent use of the same code waits for this one."""
    return await conn.fetchrow(
        "SELECT id, code_hash, used_at, expires_at <= now() AS expired, for_platform_id "
        "FROM install_codes WHERE code_hash = $1" + (" FOR UPDATE" if lock else ""),
        code_hash,
    )


async def consume_install_code(
    conn: asyncpg.Connection, code_hash: bytes, platform_id: int
) -> int | None:
    """Use the code up in one statement: a concurrent or replayed use updates nothing."""
    value = await conn.fetchval(
        "UPDATE install_codes SET used_at = now(), platform_id = $2 "
        "WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING id",
        code_hash,
        platform_id,
    )
    return int(value) if value is not None else None


async def list_install_codes(conn: asyncpg.Connection) -> list[Json]:
    rows = await conn.fetch(
        "SELECT id, label, created_by, created_at, expires_at, used_at, platform_id, "
        "for_platform_id FROM install_codes ORDER BY id DESC LIMIT 200"
    )
    return [
        {
            "id": r["id"],
            "label": r["label"],
            "created_by": r["created_by"],
            "created_at": r["created_at"].isoformat(),
            "expires_at": r["expires_at"].isoformat(),
            "used_at": r["used_at"].isoformat() if r["used_at"] else None,
            "platform_id": r["platform_id"],
            # a re-registration code: it may update this platform only
            "for_platform_id": r["for_platform_id"],
        }
        for r in rows
    ]


# --- admin tokens --------------------------------------------------------------------------------


async def admin_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, token_hash, revoked_at, "
        "last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS stale "
        "FROM admin_tokens WHERE token_hash = $1",
        token_hash,
    )


async def touch_admin_token(conn: asyncpg.Connection, token_id: int) -> None:
    await conn.execute("UPDATE admin_tokens SET last_used_at = now() WHERE id = $1", token_id)


async def create_admin_token(conn: asyncpg.Connection, name: str, token_hash: bytes) -> int:
    """Raises ``asyncpg.UniqueViolationError`` when an active token already has this name."""
    return int(
        await conn.fetchval(
            "INSERT INTO admin_tokens (name, token_hash) VALUES ($1, $2) RETURNING id",
            name,
            token_hash,
        )
    )


async def revoke_admin_token(conn: asyncpg.Connection, name: str) -> list[int]:
    rows = await conn.fetch(
        "UPDATE admin_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL "
        "RETURNING id",
        name,
    )
    return [int(r["id"]) for r in rows]


async def list_admin_tokens(conn: asyncpg.Connection) -> list[Json]:
    rows = await conn.fetch(
        "SELECT id, name, created_at, revoked_at, last_used_at FROM admin_tokens ORDER BY id"
    )
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "created_at": r["created_at"].isoformat(),
            "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
            "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None,
        }
        for r in rows
    ]
