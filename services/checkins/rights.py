"""Data rights: exports, erasure and retention, every action audited (``checkin_audit``).

- ``GET /api/checkins/export?format=csv|json`` (teacher): every check-in of the course with its
  answers. Identified check-ins carry subject, name and times, one row per answer; anonymous
  ones carry their released results only (the same groups the teacher's page shows): one row
  per emotion with its ``count``, then one row per note with no emotion, never a pseudonym, a
  time or an order of arrival.
- ``GET /api/checkins/history/export?format=csv|json`` (learner): the student's own answers in
  the course, anonymous ones included (found with the student's own pseudonyms).
- ``erase_subject`` / ``erase_course`` (operator, from ``services.checkins.cli``): one user's
  data on a platform, or one course's data. The audit row holds a SHA-256 of the subject, not
  the subject.
- ``purge_expired``: check-ins closed more than ``ATTUNE_CHECKIN_RETENTION_DAYS`` ago are
  deleted with their answers, by a background task of the checkins service.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from services.checkins import queries, results
from services.checkins.api import _learner, _own_answers, _teacher
from services.checkins.privacy import Pseudonyms
from services.checkins.queries import Course
from shared.db import DB_ERRORS, POOL_KEY
from shared.errors import AttuneError
from shared.i18n.catalogues import _
from shared.logs import get_logger
from shared.tasks import repeat, stop_task
from shared.web import SETTINGS_KEY

log = get_logger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
COURSE_COLUMNS = (
    "checkin_id",
    "question",
    "anonymous",
    "opens_at",
    "closes_at",
    "subject",
    "name",
    "emotion",
    "pleasantness",
    "note",
    "answered_at",
    "updated_at",
    "count",
)
OWN_COLUMNS = (
    "checkin_id",
    "question",
    "anonymous",
    "emotion",
    "pleasantness",
    "note",
    "answered_at",
    "updated_at",
)
PURGE_INTERVAL_S = 3600.0
# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


async def audit(
    conn: asyncpg.Connection,
    action: str,
    actor: str,
    *,
    platform_id: int | None = None,
    context_id: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO checkin_audit (action, actor, platform_id, context_id, subject, details)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb)
        """,
        action,
        actor,
        platform_id,
        context_id,
        subject,
        json.dumps(details or {}),
    )


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise AttuneError(_("format must be csv or json."), code="format_invalid")
    return fmt


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _render(
    fmt: str, rows: list[dict[str, Any]], columns: tuple[str, ...], filename: str
) -> web.Response:
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{filename}.{fmt}"'}
    if fmt == "json":
        return web.json_response({"rows": rows}, headers=headers)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # Defuse spreadsheet formulas: such a cell is prefixed with '.
        writer.writerow(
            {
                k: ("'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
                for k, v in row.items()
            }
        )
    return web.Response(
        text=out.getvalue(), content_type="text/csv", charset="utf-8", headers=headers
    )


async def course_rows(
    conn: asyncpg.Connection, course: Course, group: int
) -> tuple[list[dict[str, Any]], int]:
    """The course export's rows and how many answers they cover."""
    identified = await conn.fetch(
        """
        SELECT c.id AS checkin_id, c.question, c.anonymous, c.opens_at, c.closes_at,
               r.respondent AS subject, ro.name, r.emotion, r.pleasantness, r.note,
               r.answered_at, r.updated_at, 1 AS count
        FROM checkins c JOIN checkin_responses r ON r.checkin_id = c.id
        LEFT JOIN course_roster ro
          ON ro.platform_id = c.platform_id AND ro.context_id = c.context_id
         AND ro.subject = r.respondent
        WHERE c.platform_id = $1 AND c.context_id = $2 AND NOT c.anonymous
        ORDER BY c.opens_at, c.id, r.answered_at, r.respondent
        """,
        course.platform_id,
        course.context_id,
    )
    anonymous = await conn.fetch(
        """
        SELECT c.id AS checkin_id, c.question, c.anonymous, c.opens_at, c.closes_at
        FROM checkins c WHERE c.platform_id = $1 AND c.context_id = $2 AND c.anonymous
        ORDER BY c.opens_at, c.id
        """,
        course.platform_id,
        course.context_id,
    )
    ids = [c["checkin_id"] for c in anonymous]
    released = await queries.released_results(conn, course, ids, group)
    rows = [{k: _iso(v) for k, v in r.items()} for r in identified]
    answers = len(rows)
    blank = dict.fromkeys(("subject", "name", "answered_at", "updated_at"))
    for c in anonymous:
        res = released.get(c["checkin_id"])
        if res is None:
            continue
        checkin = {**{k: _iso(v) for k, v in c.items()}, **blank}
        answers += res["answers"]
        rows += [
            {**checkin, "emotion": e["emotion"], "pleasantness": e["pleasantness"],
             "note": None, "count": e["count"]}
            for e in results.emotions_json(results.released_emotions(res))
        ]  # fmt: skip
        rows += [
            {**checkin, "emotion": None, "pleasantness": None, "note": note, "count": None}
            for note in res["notes"]
        ]
    return rows, answers


async def export_course(request: web.Request) -> web.Response:
    who, course = _teacher(request)
    fmt = _format(request)
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        rows, answers = await course_rows(conn, course, results.group_size(request))
        await audit(
            conn,
            "export.course",
            str(who.subject),
            platform_id=course.platform_id,
            context_id=course.context_id,
            details={"format": fmt, "answers": answers},
        )
    log.info("checkins_exported", scope="course", answers=answers)
    return _render(fmt, rows, COURSE_COLUMNS, "checkins-course")


async def export_own(request: web.Request) -> web.Response:
    who, course = _learner(request)
    fmt = _format(request)
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        checkins = await queries.list_checkins(conn, course, limit=100000)
        mine = await _own_answers(request, conn, who, course, checkins)
        rows = [
            {
                "checkin_id": c["id"],
                "question": c["question"],
                "anonymous": c["anonymous"],
                **{k: _iso(v) for k, v in mine[c["id"]].items() if k != "checkin_id"},
            }
            for c in checkins
            if c["id"] in mine
        ]
        await audit(
            conn,
            "export.own",
            str(who.subject),
            platform_id=course.platform_id,
            context_id=course.context_id,
            subject=who.subject,
            details={"format": fmt, "answers": len(rows)},
        )
    return _render(fmt, rows, OWN_COLUMNS, "my-checkins")


def subject_digest(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()


async def erase_subject(
    pool: asyncpg.Pool, pseudonyms: Pseudonyms, platform_id: int, subject: str
) -> dict[str, int]:
    """Delete one user's data on one platform: identified answers, anonymous answers (found
    with every pseudonym the current secrets can compute), roster rows; check-ins the user
    created stay (the course's) with ``created_by`` replaced."""
    async with pool.acquire() as conn, conn.transaction():
        anonymous = await conn.fetch(
            "SELECT id, context_id FROM checkins WHERE platform_id = $1 AND anonymous",
            platform_id,
        )
        pairs = [
            (r["id"], p)
            for r in anonymous
            for p in pseudonyms.all(platform_id, r["context_id"], r["id"], subject)
        ]
        identified = await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM checkin_responses r USING checkins c
                WHERE c.id = r.checkin_id AND c.platform_id = $1 AND NOT c.anonymous
                  AND r.respondent = $2
                RETURNING 1
            ) SELECT count(*) FROM gone
            """,
            platform_id,
            subject,
        )
        gone = await conn.fetch(
            """
            DELETE FROM checkin_responses r
            USING unnest($1::bigint[], $2::text[]) AS k(checkin_id, respondent)
            WHERE r.checkin_id = k.checkin_id AND r.respondent = k.respondent
            RETURNING r.checkin_id, r.note
            """,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
        anon = len(gone)
        await _forget_released_notes(conn, [(r["checkin_id"], r["note"]) for r in gone])
        roster = await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM course_roster WHERE platform_id = $1 AND subject = $2 RETURNING 1
            ) SELECT count(*) FROM gone
            """,
            platform_id,
            subject,
        )
        created = await conn.fetchval(
            """
            WITH changed AS (
                UPDATE checkins SET created_by = 'erased', updated_at = now()
                WHERE platform_id = $1 AND created_by = $2 RETURNING 1
            ) SELECT count(*) FROM changed
            """,
            platform_id,
            subject,
        )
        counts = {
            "identified_answers": identified,
            "anonymous_answers": anon,
            "roster_rows": roster,
            "checkins_reattributed": created,
        }
        await audit(
            conn,
            "erase.subject",
            "operator",
            platform_id=platform_id,
            details={"subject_sha256": subject_digest(subject), **counts},
        )
    log.info("checkins_subject_erased", platform_id=platform_id, **counts)
    return counts


async def _forget_released_notes(
    conn: asyncpg.Connection, notes: list[tuple[int, str | None]]
) -> None:
    """Take erased anonymous answers' notes (one occurrence each) out of released results; the
    released counts are aggregates of at least a group and stay."""
    notes = [(cid, note) for cid, note in notes if note]
    if not notes:
        return
    await conn.execute(
        """
        UPDATE checkin_results res SET notes = coalesce((
            SELECT array_agg(u.n ORDER BY u.n) FROM unnest(res.notes) WITH ORDINALITY u(n, i)
            WHERE u.i <> (SELECT min(v.i) FROM unnest(res.notes) WITH ORDINALITY v(n, i)
                          WHERE v.n = g.note)
        ), '{}'::text[])
        FROM unnest($1::bigint[], $2::text[]) AS g(checkin_id, note)
        WHERE res.checkin_id = g.checkin_id AND g.note = any(res.notes)
        """,
        [n[0] for n in notes],
        [n[1] for n in notes],
    )


async def erase_course(pool: asyncpg.Pool, platform_id: int, context_id: str) -> dict[str, int]:
    """Delete a course's check-ins, answers, roster and roster sync state."""
    async with pool.acquire() as conn, conn.transaction():
        answers = await conn.fetchval(
            """
            SELECT count(*) FROM checkin_responses r JOIN checkins c ON c.id = r.checkin_id
            WHERE c.platform_id = $1 AND c.context_id = $2
            """,
            platform_id,
            context_id,
        )
        checkins = await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM checkins WHERE platform_id = $1 AND context_id = $2 RETURNING 1
            ) SELECT count(*) FROM gone
            """,
            platform_id,
            context_id,
        )
        roster = await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM course_roster WHERE platform_id = $1 AND context_id = $2
                RETURNING 1
            ) SELECT count(*) FROM gone
            """,
            platform_id,
            context_id,
        )
        await conn.execute(
            "DELETE FROM checkin_nrps_sync WHERE platform_id = $1 AND context_id = $2",
            platform_id,
            context_id,
        )
        counts = {"checkins": checkins, "answers": answers, "roster_rows": roster}
        await audit(
            conn,
            "erase.course",
            "operator",
            platform_id=platform_id,
            context_id=context_id,
            details=counts,
        )
    log.info("checkins_course_erased", platform_id=platform_id, **counts)
    return counts


async def purge_expired(pool: asyncpg.Pool, days: int) -> dict[str, int]:
    """Delete check-ins closed more than ``days`` ago, with their answers (audited)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            WITH old AS (
                SELECT id FROM checkins
                WHERE coalesce(closed_early_at, closes_at) < now() - make_interval(days => $1)
            ), answers AS (
                SELECT count(*) AS n FROM checkin_responses r JOIN old ON old.id = r.checkin_id
            ), gone AS (
                DELETE FROM checkins c USING old WHERE c.id = old.id RETURNING 1
            )
            SELECT (SELECT count(*) FROM gone) AS checkins, (SELECT n FROM answers) AS answers
            """,
            days,
        )
        counts = {"checkins": row["checkins"], "answers": row["answers"]}
        if counts["checkins"]:
            await audit(conn, "retention.purge", "retention", details={"days": days, **counts})
    if counts["checkins"]:
        log.info("checkins_retention_purged", days=days, **counts)
    return counts


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the retention purge, hourly, when ATTUNE_CHECKIN_RETENTION_DAYS is set."""
    days = app[SETTINGS_KEY].checkin_retention_days
    if days is None:
        yield
        return
    pool = app[POOL_KEY]

    async def purge() -> bool:
        await purge_expired(pool, days)
        return False

    task = asyncio.create_task(
        repeat(
            purge, every_s=PURGE_INTERVAL_S, errors=DB_ERRORS, event="checkins_retention_failed"
        ),
        name="checkins-retention",
    )
    yield
    await stop_task(task)
