"""Recurring check-ins: daily, or weekly on chosen days, at the first occurrence's local time.

A recurring check-in stores ``recurrence`` ('daily' | 'weekly'), ``recurrence_days`` (ISO
weekdays 1 = Monday … 7) and ``recurrence_tz`` (an IANA zone: "Monday 9:00" means 9:00 where
the teacher is, across daylight-saving changes). Once an occurrence has opened, the scheduler
(every ``POLL_S``, any number of replicas: ``FOR UPDATE SKIP LOCKED``) creates its successor —
same question and settings, the next opening after now (missed ones are skipped, not created in
bulk), the same open duration — marks the opened one ``next_created`` and writes
``checkin.created`` with ``recurs_from``. Removing the recurrence (PATCH ``recurrence: null``)
stops the series after the current occurrence; deleting an occurrence does not delete others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from aiohttp import web

from shared.db import DB_ERRORS, POOL_KEY
from shared.events import outbox, topics
from shared.events.envelope import Event
from shared.logs import get_logger
from shared.tasks import repeat, stop_task

log = get_logger(__name__)

POLL_S = 30.0
BATCH = 50
KINDS = ("daily", "weekly")


def parse(value: Any, errors: dict[str, str]) -> tuple[str | None, list[int], str | None]:
    """``{"every": "daily"|"weekly", "days": [1..7], "timezone": "Europe/Paris"}`` or None."""
    if value is None:
        return None, [], None
    if not isinstance(value, dict):
        errors["recurrence"] = "invalid"
        return None, [], None
    every, days, tz = value.get("every"), value.get("days", []), value.get("timezone")
    if every not in KINDS:
        errors["recurrence"] = "invalid_choice"
        return None, [], None
    if not isinstance(tz, str) or not tz or len(tz) > 64:
        errors["recurrence"] = "timezone_required"
        return None, [], None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        errors["recurrence"] = "timezone_required"
        return None, [], None
    if every == "daily":
        return every, [], tz
    if (
        not isinstance(days, list)
        or not days
        or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in days)
    ):
        errors["recurrence"] = "invalid"
        return None, [], None
    return every, sorted(set(days)), tz


def as_json(row: asyncpg.Record) -> dict[str, Any] | None:
    if row["recurrence"] is None:
        return None
    out: dict[str, Any] = {"every": row["recurrence"], "timezone": row["recurrence_tz"]}
    if row["recurrence"] == "weekly":
        out["days"] = list(row["recurrence_days"])
    return out


def next_opening(opens_at: datetime, every: str, days: list[int], tz: str) -> datetime:
    """The first opening after ``opens_at`` at the same local wall-clock time."""
    zone = ZoneInfo(tz)
    local = opens_at.astimezone(zone)
    for step in range(1, 8):
        day = (local + timedelta(days=step)).date()
        if every == "daily" or day.isoweekday() in days:
            return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=zone)
    raise ValueError("no recurrence day")  # weekly with no day: refused by parse()


def next_after(opens_at: datetime, every: str, days: list[int], tz: str, now: datetime) -> datetime:
    nxt = next_opening(opens_at, every, days, tz)
    for _ in range(800):  # a service down for two years still ends
        if nxt > now:
            return nxt
        nxt = next_opening(nxt, every, days, tz)
    return nxt


async def create_due(pool: asyncpg.Pool, source: str) -> int:
    """Create the successor of every opened recurring occurrence; returns how many."""
    created = 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            SELECT * FROM checkins
            WHERE recurrence IS NOT NULL AND NOT next_created AND opens_at <= now()
            ORDER BY opens_at LIMIT $1 FOR UPDATE SKIP LOCKED
            """,
            BATCH,
        )
        now = await conn.fetchval("SELECT now()")
        for r in rows:
            opens = next_after(
                r["opens_at"], r["recurrence"], list(r["recurrence_days"]), r["recurrence_tz"], now
            )
            closes = opens + (r["closes_at"] - r["opens_at"])
            new_id = await conn.fetchval(
                """
                INSERT INTO checkins (platform_id, context_id, question, response_kind,
                                      vocabulary, allow_note, anonymous, opens_at, closes_at,
                                      created_by, recurrence, recurrence_days, recurrence_tz)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                RETURNING id
                """,
                r["platform_id"],
                r["context_id"],
                r["question"],
                r["response_kind"],
                r["vocabulary"],
                r["allow_note"],
                r["anonymous"],
                opens,
                closes,
                r["created_by"],
                r["recurrence"],
                r["recurrence_days"],
                r["recurrence_tz"],
            )
            await conn.execute("UPDATE checkins SET next_created = true WHERE id = $1", r["id"])
            await outbox.enqueue(
                conn,
                topics.CHECKIN,
                Event(
                    type="checkin.created",
                    source=source,
                    subject=f"checkin:{new_id}",
                    data={
                        "checkin_id": new_id,
                        "platform_id": r["platform_id"],
                        "context_id": r["context_id"],
                        "question": r["question"],
                        "vocabulary": r["vocabulary"],
                        "anonymous": r["anonymous"],
                        "allow_note": r["allow_note"],
                        "opens_at": opens.isoformat(),
                        "closes_at": closes.isoformat(),
                        "recurs_from": r["id"],
                    },
                ),
                key=f"course:{r['platform_id']}:{r['context_id']}",
            )
            created += 1
    if created:
        log.info("checkin_occurrences_created", count=created)
    return created


async def recurrence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the recurrence scheduler."""
    pool = app[POOL_KEY]

    async def create() -> bool:
        return await create_due(pool, "checkins") == BATCH  # a full batch: more are due

    task = asyncio.create_task(
        repeat(create, every_s=POLL_S, errors=DB_ERRORS, event="checkin_recurrence_failed"),
        name="checkins-recurrence",
    )
    yield
    await stop_task(task)
