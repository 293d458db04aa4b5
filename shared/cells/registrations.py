"""Registrations are global, read locally.

The home region's registration service owns ``platforms`` and ``deployments``. Every change it
makes also writes, in the same transaction and through the outbox, the **whole state** of that
registration to ``attune.registration-state.v1`` (one partition, keyed ``platform:<id>``,
log-compacted in production): the platform's columns named in ``PLATFORM_COLUMNS`` and its
deployments with ``DEPLOYMENT_COLUMNS``. A deleted registration is a state with
``deleted: true``. At start and every ``ATTUNE_REGISTRATION_REPUBLISH_S`` it also publishes a
*snapshot*: every registration's state and then a manifest listing the ids that exist, taken
under a SHARE lock on both tables, so no change is half in it and every later change comes
after the manifest in the partition.

Every other cell runs the mirror (``mirror_ctx``, in its launch service): a consumer of that
topic on the home cluster (read remote) that writes the same ``platforms`` and ``deployments``
tables in the cell's own database (write local), which login, launch and checkins read
exactly as before. The mirror is their only writer there. For each change it applies it also
writes the registration events a home change would have produced (``registration.updated``,
``deployment.disabled``, ...) to the cell's own ``attune.registration.v1`` through the cell's
outbox, in the same transaction: the caches and projections that listen to them (login and
launch registration caches, checkins' frame origins and read-only deployments) work unchanged,
and never see an event before the table it announces.

Versions: each state carries the time it was taken (``clock_timestamp()`` after the change, in
its transaction: later for every later change of that registration, which waits for the row
lock). ``registration_mirror`` keeps the version applied per platform, deletions included, so
a state replayed late (``attune events replay``) never overwrites a newer one nor brings back a
deleted registration. A manifest removes the local registrations it does not list unless a
newer state of theirs was applied.

A new column that cells must read is one more name in ``PLATFORM_COLUMNS`` (same name and type
in both databases: they run the same migrations). A state from an older or newer home carries
fewer or more columns; the mirror writes the ones both sides know.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from shared.db import DB_ERRORS, POOL_KEY
from shared.events import topics
from shared.events.consumer import EventConsumer
from shared.events.envelope import Event
from shared.events.outbox import enqueue, enqueue_many
from shared.logs import get_logger
from shared.tasks import repeat, stop_task
from shared.web import METRICS_KEY, SETTINGS_KEY, ReadinessCheck, add_readiness_check

log = get_logger(__name__)

# What a cell's login, launch and checkins read of a registration. One line per column.
PLATFORM_COLUMNS: tuple[str, ...] = (
    "issuer",
    "client_id",
    "auth_url",
    "jwks_url",
    "token_url",
    "product",
    "deployment_policy",
    "environment",
    "name",
    "frame_origins",
    "region",
)
DEPLOYMENT_COLUMNS: tuple[str, ...] = ("status", "label")

STATE = "registration.state"
SNAPSHOT = "registration.snapshot"
SNAPSHOT_KEY = "snapshot"
PUBLISHER = "registration"
MIRROR = "registration-mirror"

_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
assert all(_COLUMN.match(c) for c in (*PLATFORM_COLUMNS, *DEPLOYMENT_COLUMNS))


def _object(alias: str, columns: Iterable[str]) -> str:
    return "jsonb_build_object(" + ", ".join(f"'{c}', {alias}.{c}" for c in columns) + ")"


# The state of registrations as of now (within the caller's transaction).
_STATES = f"""
SELECT p.id, clock_timestamp() AS version, {_object("p", PLATFORM_COLUMNS)} AS platform,
       coalesce((SELECT jsonb_agg({_object("d", ("deployment_id", *DEPLOYMENT_COLUMNS))}
                                  ORDER BY d.deployment_id)
                 FROM deployments d WHERE d.platform_id = p.id), '[]'::jsonb) AS deployments
FROM platforms p
"""  # noqa: S608 - constant identifiers only


def _state_event(platform_id: int, version: datetime, data: dict[str, Any]) -> Event:
    return Event(
        type=STATE,
        source=PUBLISHER,
        subject=f"platform:{platform_id}",
        data={"platform_id": platform_id, "version": version.isoformat(), **data},
        occurred_at=version,
    )


def _from_row(row: asyncpg.Record) -> Event:
    return _state_event(
        int(row["id"]),
        row["version"],
        {
            "deleted": False,
            "platform": json.loads(row["platform"]),
            "deployments": json.loads(row["deployments"]),
        },
    )


async def publish_state(conn: asyncpg.Connection, platform_id: int) -> None:
    """Write this registration's state (or its deletion) to the outbox, in the caller's
    transaction, after the change it reflects."""
    row = await conn.fetchrow(_STATES + " WHERE p.id = $1", platform_id)
    if row is not None:
        event = _from_row(row)
    else:
        version = await conn.fetchval("SELECT clock_timestamp()")
        event = _state_event(platform_id, version, {"deleted": True})
    await enqueue(conn, topics.REGISTRATION_STATE, event)


async def republish(pool: asyncpg.Pool) -> int:
    """A snapshot: every registration's state, then the manifest of the ids that exist.
    Returns how many states were written."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        # Writers wait (at most a moment) so the snapshot is one consistent instant: a change
        # committed before it is in it; one after it comes after the manifest.
        await conn.execute("LOCK TABLE platforms, deployments IN SHARE MODE")
        rows = await conn.fetch(_STATES + " ORDER BY p.id")
        version = await conn.fetchval("SELECT clock_timestamp()")
        manifest = Event(
            type=SNAPSHOT,
            source=PUBLISHER,
            subject=SNAPSHOT_KEY,
            data={"version": version.isoformat(), "platform_ids": [int(r["id"]) for r in rows]},
            occurred_at=version,
        )
        await enqueue_many(
            conn,
            [(topics.REGISTRATION_STATE, _from_row(r), None) for r in rows]
            + [(topics.REGISTRATION_STATE, manifest, None)],
        )
    log.info("registration_state_republished", registrations=len(rows))
    return len(rows)


_LAST_SNAPSHOT = (
    "SELECT max(created_at) > now() - make_interval(secs => $1) FROM outbox WHERE event_type = $2"
)


async def republish_ctx(app: web.Application) -> AsyncIterator[None]:
    """Home region (registration service) with other cells (``ATTUNE_CELL_KAFKA``): a
    snapshot at start, then every ``ATTUNE_REGISTRATION_REPUBLISH_S`` unless another replica
    wrote one within half of it. Without other cells nobody reads it: none is written (the
    first cell configured restarts the service, whose start writes one)."""
    if not app[SETTINGS_KEY].cells():
        yield
        return
    pool = app[POOL_KEY]
    every = app[SETTINGS_KEY].registration_republish_s
    started = False

    async def once() -> bool:
        nonlocal started
        if started and await pool.fetchval(_LAST_SNAPSHOT, every / 2, SNAPSHOT):
            return False
        await republish(pool)
        started = True
        return False

    task = asyncio.create_task(
        repeat(once, every_s=every, errors=DB_ERRORS, event="registration_republish_failed"),
        name="registration-republish",
    )
    yield
    await stop_task(task)


# --- the mirror (cells outside the home region) -------------------------------------------


def _version(data: Mapping[str, Any], key: str = "version") -> datetime:
    value = datetime.fromisoformat(str(data[key]))
    if value.tzinfo is None:
        raise ValueError(f"{key} has no time zone")
    return value


_LOCAL = f"""
SELECT {_object("p", ("id", *PLATFORM_COLUMNS))} AS platform,
       coalesce((SELECT jsonb_object_agg(d.deployment_id, d.status)
                 FROM deployments d WHERE d.platform_id = p.id), '{{}}'::jsonb) AS deployments
FROM platforms p WHERE p.id = $1
"""  # noqa: S608 - constant identifiers only
_MIRRORED = """
INSERT INTO registration_mirror (platform_id, version, deleted) VALUES ($1, $2, $3)
ON CONFLICT (platform_id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted
"""
_DEPLOYMENTS = f"""
INSERT INTO deployments (platform_id, deployment_id, {", ".join(DEPLOYMENT_COLUMNS)})
SELECT $1, r.deployment_id, {", ".join(f"r.{c}" for c in DEPLOYMENT_COLUMNS)}
FROM jsonb_populate_recordset(NULL::deployments, $2::jsonb) AS r
ON CONFLICT (platform_id, deployment_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in DEPLOYMENT_COLUMNS)}, updated_at = now()
"""  # noqa: S608 - constant identifiers only
_upserts: dict[tuple[str, ...], str] = {}


def _upsert_sql(columns: tuple[str, ...]) -> str:
    """Insert or update a platform with these columns (those both sides know), its id kept."""
    sql = _upserts.get(columns)
    if sql is None:
        names = ", ".join(columns)
        values = ", ".join(f"r.{c}" for c in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns)
        sql = _upserts[columns] = (
            f"INSERT INTO platforms (id, {names}) OVERRIDING SYSTEM VALUE SELECT $1, {values} "  # noqa: S608 - constant identifiers only
            "FROM jsonb_populate_record(NULL::platforms, $2::jsonb) AS r "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now()"
        )
    return sql


def _local_event(kind: str, platform: Mapping[str, Any], at: datetime, **data: Any) -> Event:
    platform_id = int(platform["id"])
    return Event(
        type=kind,
        source=MIRROR,
        subject=f"platform:{platform_id}",
        data={
            "platform_id": platform_id,
            "issuer": platform.get("issuer"),
            "client_id": platform.get("client_id"),
            **data,
        },
        occurred_at=at,
    )


async def _local(conn: asyncpg.Connection, platform_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(_LOCAL, platform_id)
    if row is None:
        return None
    return {**json.loads(row["platform"]), "deployments": json.loads(row["deployments"])}


async def _delete(
    conn: asyncpg.Connection, platform_id: int, version: datetime, events: list[Event]
) -> None:
    old = await _local(conn, platform_id)
    if old is not None:
        await conn.execute("DELETE FROM platforms WHERE id = $1", platform_id)
        events.append(
            _local_event(
                "registration.deleted",
                old,
                version,
                deployment_ids=sorted(old["deployments"]),
            )
        )
    await conn.execute(_MIRRORED, platform_id, version, True)


async def _stale(conn: asyncpg.Connection, platform_id: int, version: datetime) -> bool:
    known = await conn.fetchval(
        "SELECT version FROM registration_mirror WHERE platform_id = $1 FOR UPDATE", platform_id
    )
    return known is not None and known >= version


async def apply_state(conn: asyncpg.Connection, data: Mapping[str, Any]) -> list[Event]:
    """Apply one registration's state to the local read model; returns the local events
    written (none for a state older than the one applied)."""
    platform_id = int(data["platform_id"])
    version = _version(data)
    events: list[Event] = []
    if await _stale(conn, platform_id, version):
        return events
    if data.get("deleted"):
        await _delete(conn, platform_id, version, events)
    else:
        platform = data["platform"]
        deployments = [d for d in data.get("deployments", []) if isinstance(d, dict)]
        columns = tuple(c for c in PLATFORM_COLUMNS if c in platform)
        # Home deleted a registration and created this one with the same key: whatever the
        # order the two arrived in, the key now belongs to this id.
        for other in await conn.fetch(
            "SELECT id FROM platforms WHERE issuer = $1 AND client_id = $2 AND id <> $3",
            platform["issuer"],
            platform["client_id"],
            platform_id,
        ):
            await _delete(conn, int(other["id"]), version, events)
        old = await _local(conn, platform_id)
        await conn.execute(_upsert_sql(columns), platform_id, json.dumps(platform))
        ids = [str(d["deployment_id"]) for d in deployments]
        await conn.execute(
            "DELETE FROM deployments WHERE platform_id = $1 AND deployment_id <> all($2::text[])",
            platform_id,
            ids,
        )
        await conn.execute(_DEPLOYMENTS, platform_id, json.dumps(deployments))
        await conn.execute(_MIRRORED, platform_id, version, False)
        new = {"id": platform_id, **platform}
        before = old["deployments"] if old is not None else {}
        changed = (
            old is None
            or any(old.get(c) != platform[c] for c in columns)
            or (before != {str(d["deployment_id"]): d.get("status") for d in deployments})
        )
        if changed:
            kind = "registration.created" if old is None else "registration.updated"
            events.append(
                _local_event(
                    kind,
                    new,
                    version,
                    product=platform.get("product"),
                    deployment_policy=platform.get("deployment_policy"),
                    deployment_ids=ids,
                )
            )
        for d in deployments:
            status, previous = d.get("status"), before.get(str(d["deployment_id"]))
            change: str | None = None
            if status == "disabled" and previous != "disabled":
                change = "deployment.disabled"
            elif status == "active" and previous in ("disabled", "pending"):
                change = "deployment.approved"
            if change is not None:
                events.append(
                    _local_event(
                        change,
                        new,
                        version,
                        deployment_id=str(d["deployment_id"]),
                        status=status,
                        previous_status=previous,
                    )
                )
    await _announce(conn, events)
    return events


async def apply_snapshot(conn: asyncpg.Connection, data: Mapping[str, Any]) -> list[Event]:
    """Remove the local registrations a snapshot does not list (unless a newer state of
    theirs was applied), and record the snapshot."""
    version = _version(data)
    listed = [int(i) for i in data["platform_ids"]]
    events: list[Event] = []
    gone = await conn.fetch(
        "SELECT p.id FROM platforms p LEFT JOIN registration_mirror m ON m.platform_id = p.id "
        "WHERE p.id <> all($1::bigint[]) AND (m.version IS NULL OR m.version < $2)",
        listed,
        version,
    )
    for row in gone:
        await _delete(conn, int(row["id"]), version, events)
    await conn.execute(
        "INSERT INTO registration_mirror_progress (snapshot_version) VALUES ($1) "
        "ON CONFLICT (id) DO UPDATE SET applied_at = now(), snapshot_version = "
        "greatest(registration_mirror_progress.snapshot_version, excluded.snapshot_version)",
        version,
    )
    await _announce(conn, events)
    return events


async def _announce(conn: asyncpg.Connection, events: list[Event]) -> None:
    if events:
        await enqueue_many(conn, [(topics.REGISTRATION, e, None) for e in events])


async def apply_event(conn: asyncpg.Connection, event: Event) -> None:
    """The mirror's handler (``EventConsumer``, one transaction per event)."""
    if event.type == STATE:
        await apply_state(conn, event.data)
    elif event.type == SNAPSHOT:
        await apply_snapshot(conn, event.data)
    else:
        log.warning("registration_state_unknown_event", event_type=event.type)


async def mirror_bootstrapped(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Whether this cell's read model has applied a snapshot at least once (then it serves
    the registrations it knows even while the home region is unreachable)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM registration_mirror_progress)"))


async def mirror_ctx(app: web.Application) -> AsyncIterator[None]:
    """A cell outside the home region: the mirror consumer, and a readiness check
    ``registrations`` that passes once the read model was bootstrapped (a new cell does not
    take launches before it knows the registrations; a bootstrapped one stays ready while the
    home region is down)."""
    settings = app[SETTINGS_KEY]
    pool = app[POOL_KEY]
    consumer = EventConsumer(
        name=MIRROR,
        topics=[topics.REGISTRATION_STATE],
        handler=apply_event,
        pool=pool,
        settings=settings.home_kafka(),
        metrics=app[METRICS_KEY],
        # Offsets live on the home cluster, one group per cell.
        group_id=f"attune.{MIRROR}.{settings.region}",
        dedupe=False,
    )
    ready = False

    async def check() -> None:
        nonlocal ready
        if not ready:
            ready = await mirror_bootstrapped(pool)
        if not ready:
            raise RegistrationsNotMirrored(
                "no registration snapshot from the home region applied yet"
            )

    add_readiness_check(app, ReadinessCheck("registrations", check))
    task = asyncio.create_task(consumer.run(), name=MIRROR)
    yield
    await stop_task(task)


class RegistrationsNotMirrored(Exception):
    """The readiness probe of a cell whose read model was never bootstrapped."""
