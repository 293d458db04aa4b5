"""SQL of the checkins service, connection first. Every statement about check-ins is scoped by
the course (platform_id, context_id) taken from the launch token, never by an id alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.events import outbox


def read_only_sql(platform_id: str, deployment_id: str) -> str:
    """SQL for "is this deployment read-only" (a disabled deployment; unknown ones are not),
    given the SQL of its platform id and deployment id (parameters like ``$1``)."""
    return (
        "coalesce((SELECT s.read_only FROM checkin_deployment_status s"  # noqa: S608
        f" WHERE s.platform_id = {platform_id} AND s.deployment_id = {deployment_id}), false)"
    )


STATUS = """
CASE WHEN c.closed_early_at IS NOT NULL OR c.closes_at <= now() THEN 'closed'
     WHEN c.opens_at > now() THEN 'scheduled'
     ELSE 'open' END
"""
COLUMNS = f"""
c.id, c.question, c.response_kind, c.vocabulary, c.allow_note, c.anonymous, c.opens_at,
c.closes_at, c.created_by, c.created_at, c.closed_early_at, c.recurrence, c.recurrence_days,
c.recurrence_tz, {STATUS} AS status
"""


@dataclass(frozen=True)
class Course:
    platform_id: int
    context_id: str

    @property
    def key(self) -> str:
        return f"course:{self.platform_id}:{self.context_id}"


async def create_checkin(
    conn: asyncpg.Connection, course: Course, fields: dict[str, Any], created_by: str
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        WITH c AS (
            INSERT INTO checkins (platform_id, context_id, question, vocabulary, allow_note,
                                  anonymous, opens_at, closes_at, created_by, recurrence,
                                  recurrence_days, recurrence_tz)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING *
        )
        SELECT {COLUMNS}, 0::bigint AS responses FROM c
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        fields["question"],
        fields["vocabulary"],
        fields["allow_note"],
        fields["anonymous"],
        fields["opens_at"],
        fields["closes_at"],
        created_by,
        fields["recurrence"],
        fields["recurrence_days"],
        fields["recurrence_tz"],
    )
    return row


async def get_checkin(
    conn: asyncpg.Connection, course: Course, checkin_id: int, *, lock: bool = False
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        SELECT {COLUMNS},
               (SELECT count(*) FROM checkin_responses r WHERE r.checkin_id = c.id) AS responses
        FROM checkins c
        WHERE c.id = $3 AND c.platform_id = $1 AND c.context_id = $2
        {"FOR UPDATE" if lock else ""}
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        checkin_id,
    )
    return row


async def checkin_for_answer(
    conn: asyncpg.Connection, course: Course, checkin_id: int, deployment_id: str
) -> asyncpg.Record | None:
    """The check-in a student answers, with ``read_only`` for the launch's deployment.

    The answer's hot path: no response count (that scans the class's answers), and the
    deployment's read-only state read in the same statement and transaction as the write.
    """
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        SELECT {COLUMNS},
               {read_only_sql("$1", "$4")} AS read_only
        FROM checkins c
        WHERE c.id = $3 AND c.platform_id = $1 AND c.context_id = $2
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        checkin_id,
        deployment_id,
    )
    return row


async def list_checkins(
    conn: asyncpg.Connection, course: Course, *, only_open: bool = False, limit: int = 200
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {COLUMNS},
               (SELECT count(*) FROM checkin_responses r WHERE r.checkin_id = c.id) AS responses
        FROM checkins c
        WHERE c.platform_id = $1 AND c.context_id = $2
          AND (NOT $3 OR ({STATUS}) = 'open')
        ORDER BY c.opens_at DESC, c.id DESC
        LIMIT $4
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        only_open,
        limit,
    )
    return rows


async def update_checkin(
    conn: asyncpg.Connection, course: Course, checkin_id: int, fields: dict[str, Any]
) -> None:
    await conn.execute(
        """
        UPDATE checkins SET question = $4, vocabulary = $5, allow_note = $6, opens_at = $7,
                            closes_at = $8, recurrence = $9, recurrence_days = $10,
                            recurrence_tz = $11, updated_at = now()
        WHERE id = $3 AND platform_id = $1 AND context_id = $2
        """,
        course.platform_id,
        course.context_id,
        checkin_id,
        fields["question"],
        fields["vocabulary"],
        fields["allow_note"],
        fields["opens_at"],
        fields["closes_at"],
        fields["recurrence"],
        fields["recurrence_days"],
        fields["recurrence_tz"],
    )


async def close_checkin(conn: asyncpg.Connection, course: Course, checkin_id: int) -> None:
    await conn.execute(
        """
        UPDATE checkins SET closed_early_at = now(), updated_at = now()
        WHERE id = $3 AND platform_id = $1 AND context_id = $2 AND closed_early_at IS NULL
        """,
        course.platform_id,
        course.context_id,
        checkin_id,
    )


async def delete_checkin(conn: asyncpg.Connection, course: Course, checkin_id: int) -> int:
    """Deletes the check-in and (by cascade) its responses; returns how many responses went."""
    deleted: int | None = await conn.fetchval(
        """
        WITH gone AS (
            DELETE FROM checkins WHERE id = $3 AND platform_id = $1 AND context_id = $2
            RETURNING id
        )
        SELECT (SELECT count(*) FROM checkin_responses r JOIN gone ON r.checkin_id = gone.id)
        FROM gone
        """,
        course.platform_id,
        course.context_id,
        checkin_id,
    )
    return -1 if deleted is None else deleted


async def adopt_pseudonyms(
    conn: asyncpg.Connection | asyncpg.Pool, checkin_id: int, respondent: str, previous: list[str]
) -> None:
    """Move an answer stored under a retired secret's pseudonym (``previous``) to the current
    one (``respondent``) — unless the current one already has an answer. Idempotent, and
    harmless on its own if the answer written next fails."""
    await conn.execute(
        """
        UPDATE checkin_responses SET respondent = $2
        WHERE checkin_id = $1 AND respondent = any($3::text[])
          AND NOT EXISTS (SELECT 1 FROM checkin_responses
                          WHERE checkin_id = $1 AND respondent = $2)
        """,
        checkin_id,
        respondent,
        previous,
    )


_ANSWER = f"""
WITH c AS (
    SELECT c.id FROM checkins c
    WHERE c.id = $1 AND c.platform_id = $2 AND c.context_id = $3 AND ({STATUS}) = 'open'
      AND NOT {read_only_sql("$2", "$4")}
), r AS (
    INSERT INTO checkin_responses AS r (checkin_id, respondent, emotion, pleasantness, note,
                                        answered_at, updated_at)
    SELECT c.id, $5, $6, $7, $8,
           CASE WHEN $9 THEN date_trunc('hour', now()) ELSE now() END,
           CASE WHEN $9 THEN date_trunc('hour', now()) ELSE now() END
    FROM c
    ON CONFLICT (checkin_id, respondent) DO UPDATE
        SET emotion = excluded.emotion, pleasantness = excluded.pleasantness,
            note = excluded.note, updated_at = excluded.updated_at
    RETURNING (xmax <> 0) AS replaced, r.emotion, r.pleasantness, r.note, r.answered_at,
              r.updated_at
), e AS (
    INSERT INTO outbox (id, topic, key, event_type, value)
    SELECT $10, $11, $12, $13, CASE WHEN r.replaced THEN $15::bytea ELSE $14::bytea END FROM r
)
SELECT * FROM r
"""  # noqa: S608 (only module-constant fragments are interpolated)


@dataclass(frozen=True)
class AnswerEvent:
    """The outbox row of an answer, encoded both ways: first answer, or a changed one."""

    id: Any
    topic: str
    key: bytes
    type: str
    first: bytes
    changed: bytes


async def answer_once(
    conn: asyncpg.Connection | asyncpg.Pool,
    course: Course,
    checkin_id: int,
    deployment_id: str,
    respondent: str,
    *,
    emotion: str,
    pleasantness: int,
    note: str | None,
    anonymous: bool,
    event: AnswerEvent,
) -> asyncpg.Record | None:
    """Store an answer and its event in ONE statement (atomic, one round trip), only while the
    check-in is still open and its deployment writable. Returns the stored answer with
    ``replaced``, or None when the check-in closed, went away or became read-only meanwhile.
    Anonymous answers carry times rounded to the hour, so they cannot be matched with launch
    records to the second."""
    row: asyncpg.Record | None = await conn.fetchrow(
        _ANSWER,
        checkin_id,
        course.platform_id,
        course.context_id,
        deployment_id,
        respondent,
        emotion,
        pleasantness,
        note,
        anonymous,
        event.id,
        event.topic,
        event.key,
        event.type,
        event.first,
        event.changed,
    )
    if row is not None:
        outbox.wake_relays()  # one statement: committed already
    return row


async def own_responses(
    conn: asyncpg.Connection, pairs: list[tuple[int, str]]
) -> dict[int, asyncpg.Record]:
    """The answers matching (checkin_id, respondent) pairs, by check-in."""
    if not pairs:
        return {}
    rows = await conn.fetch(
        """
        SELECT r.checkin_id, r.emotion, r.pleasantness, r.note, r.answered_at, r.updated_at
        FROM checkin_responses r
        JOIN unnest($1::bigint[], $2::text[]) AS k(checkin_id, respondent)
          ON r.checkin_id = k.checkin_id AND r.respondent = k.respondent
        """,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    return {r["checkin_id"]: r for r in rows}


async def identified_emotions(
    conn: asyncpg.Connection, course: Course, checkin_id: int
) -> dict[str, int]:
    """Answers per emotion of an identified check-in as they stand now, for its teacher (who
    sees every answer with its name anyway); nothing for an anonymous check-in, whose figures
    come from ``released_results`` only."""
    rows = await conn.fetch(
        """
        SELECT r.emotion, count(*) AS n
        FROM checkin_responses r JOIN checkins c ON c.id = r.checkin_id AND NOT c.anonymous
        WHERE r.checkin_id = $3 AND c.platform_id = $1 AND c.context_id = $2
        GROUP BY r.emotion
        """,
        course.platform_id,
        course.context_id,
        checkin_id,
    )
    return {r["emotion"]: r["n"] for r in rows}


_RELEASE = """
WITH due AS (
    SELECT c.id, c.anonymous
    FROM checkins c LEFT JOIN checkin_results res ON res.checkin_id = c.id
    WHERE c.id = any($1::bigint[]) AND c.platform_id = $3 AND c.context_id = $4
      AND (SELECT count(*) FROM checkin_responses r WHERE r.checkin_id = c.id)
          >= coalesce(res.answers, 0) + $2
), fresh AS (
    INSERT INTO checkin_results AS res (checkin_id, answers, pleasantness, emotions, notes,
                                        released_at)
    SELECT d.id, a.n, a.pleasantness, e.emotions,
           CASE WHEN d.anonymous THEN a.notes ELSE '{}'::text[] END, now()
    FROM due d,
    LATERAL (
        SELECT count(*)::int AS n,
               ARRAY[count(*) FILTER (WHERE r.pleasantness = 1),
                     count(*) FILTER (WHERE r.pleasantness = 2),
                     count(*) FILTER (WHERE r.pleasantness = 3),
                     count(*) FILTER (WHERE r.pleasantness = 4),
                     count(*) FILTER (WHERE r.pleasantness = 5)]::int[] AS pleasantness,
               coalesce(array_agg(r.note ORDER BY r.note) FILTER (WHERE r.note <> ''),
                        '{}'::text[]) AS notes
        FROM checkin_responses r WHERE r.checkin_id = d.id
    ) a,
    LATERAL (
        SELECT coalesce(jsonb_object_agg(w.emotion, w.n), '{}'::jsonb) AS emotions
        FROM (SELECT r.emotion, count(*) AS n FROM checkin_responses r
              WHERE r.checkin_id = d.id GROUP BY r.emotion) w
    ) e
    ON CONFLICT (checkin_id) DO UPDATE SET
        -- A concurrent reader may have released meanwhile: then its row stays, and is returned.
        answers = CASE WHEN res.answers + $2 <= excluded.answers
                       THEN excluded.answers ELSE res.answers END,
        pleasantness = CASE WHEN res.answers + $2 <= excluded.answers
                            THEN excluded.pleasantness ELSE res.pleasantness END,
        emotions = CASE WHEN res.answers + $2 <= excluded.answers
                        THEN excluded.emotions ELSE res.emotions END,
        notes = CASE WHEN res.answers + $2 <= excluded.answers
                     THEN excluded.notes ELSE res.notes END,
        released_at = CASE WHEN res.answers + $2 <= excluded.answers
                           THEN excluded.released_at ELSE res.released_at END
    RETURNING res.checkin_id, res.answers, res.pleasantness, res.emotions, res.notes
)
SELECT * FROM fresh
UNION ALL
SELECT res.checkin_id, res.answers, res.pleasantness, res.emotions, res.notes
FROM checkin_results res JOIN checkins c ON c.id = res.checkin_id
WHERE res.checkin_id = any($1::bigint[]) AND c.platform_id = $3 AND c.context_id = $4
  AND res.checkin_id NOT IN (SELECT checkin_id FROM fresh)
"""


async def released_results(
    conn: asyncpg.Connection, course: Course, checkin_ids: list[int], group: int
) -> dict[int, asyncpg.Record]:
    """The released results of these check-ins (by id; none yet: absent), releasing new ones
    first where a check-in has at least ``group`` more answers than its last release covered.

    Everything anyone but a teacher of an identified check-in sees about answers comes from
    here: one release covers at least ``group`` answers and the next at least ``group`` more,
    so two releases never differ by one answer (and a changed answer waits for the next
    group). One statement: the count and the figures come from the same snapshot, and of two
    readers releasing at once the second finds the first's row, keeps it and returns it."""
    if not checkin_ids:
        return {}
    rows = await conn.fetch(_RELEASE, checkin_ids, group, course.platform_id, course.context_id)
    return {r["checkin_id"]: r for r in rows}


async def identified_responses(
    conn: asyncpg.Connection, course: Course, checkin_id: int
) -> list[asyncpg.Record]:
    """Who answered what, for an identified check-in only (the caller checks)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT r.respondent AS subject, ro.name, r.emotion, r.pleasantness, r.note,
               r.answered_at, r.updated_at
        FROM checkin_responses r
        JOIN checkins c ON c.id = r.checkin_id AND NOT c.anonymous
        LEFT JOIN course_roster ro
          ON ro.platform_id = $1 AND ro.context_id = $2 AND ro.subject = r.respondent
        WHERE r.checkin_id = $3 AND c.platform_id = $1 AND c.context_id = $2
        ORDER BY r.pleasantness, ro.name NULLS LAST
        """,
        course.platform_id,
        course.context_id,
        checkin_id,
    )
    return rows


# The course's learners: those the LMS lists (NRPS) when it listed anyone, otherwise everyone who
# launched as a learner. $1, $2: the course.
_LEARNERS = """
SELECT ro.subject, ro.name FROM course_roster ro
WHERE ro.platform_id = $1 AND ro.context_id = $2 AND 'learner' = any(ro.role_kinds)
  AND (ro.nrps OR NOT EXISTS (SELECT 1 FROM course_roster x
                              WHERE x.platform_id = $1 AND x.context_id = $2 AND x.nrps))
"""


async def learner_count(conn: asyncpg.Connection, course: Course) -> int:
    """How many learners the course has (``_LEARNERS``)."""
    n: int = await conn.fetchval(
        f"SELECT count(*) FROM ({_LEARNERS}) l",  # noqa: S608 (a module constant)
        course.platform_id,
        course.context_id,
    )
    return n


async def not_answered(
    conn: asyncpg.Connection, course: Course, checkin_id: int
) -> list[asyncpg.Record]:
    """The learners who have not answered this IDENTIFIED check-in, by name; nothing for an
    anonymous one (its respondents are pseudonyms: who is missing would say who answered)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT l.subject, l.name FROM ({_LEARNERS}) l
        WHERE EXISTS (SELECT 1 FROM checkins c WHERE c.id = $3 AND c.platform_id = $1
                      AND c.context_id = $2 AND NOT c.anonymous)
          AND NOT EXISTS (SELECT 1 FROM checkin_responses r
                          WHERE r.checkin_id = $3 AND r.respondent = l.subject)
        ORDER BY l.name NULLS LAST, l.subject
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        checkin_id,
    )
    return rows


async def identified_checkins(
    conn: asyncpg.Connection, course: Course, limit: int
) -> list[asyncpg.Record]:
    """The course's latest ``limit`` IDENTIFIED check-ins that have opened, oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT * FROM (
            SELECT {COLUMNS} FROM checkins c
            WHERE c.platform_id = $1 AND c.context_id = $2 AND NOT c.anonymous
              AND c.opens_at <= now()
            ORDER BY c.opens_at DESC, c.id DESC LIMIT $3
        ) latest ORDER BY opens_at, id
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        limit,
    )
    return rows


async def students_answers(
    conn: asyncpg.Connection, course: Course, checkin_ids: list[int]
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """For the per-student view: the course's learners (and anyone else who answered these
    check-ins) with their names, and every answer to these check-ins — of IDENTIFIED check-ins
    only, re-checked here: an anonymous check-in's id given by mistake yields nothing."""
    answers: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT r.checkin_id, r.respondent AS subject, r.emotion, r.pleasantness
        FROM checkin_responses r
        JOIN checkins c ON c.id = r.checkin_id AND NOT c.anonymous
        WHERE r.checkin_id = any($3::bigint[]) AND c.platform_id = $1 AND c.context_id = $2
        """,
        course.platform_id,
        course.context_id,
        checkin_ids,
    )
    people: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT l.subject, l.name FROM ({_LEARNERS}) l
        UNION
        SELECT ro.subject, ro.name FROM course_roster ro
        WHERE ro.platform_id = $1 AND ro.context_id = $2 AND ro.subject = any($3::text[])
        UNION
        SELECT s.subject, NULL FROM unnest($3::text[]) AS s(subject)
        WHERE NOT EXISTS (SELECT 1 FROM course_roster ro WHERE ro.platform_id = $1
                          AND ro.context_id = $2 AND ro.subject = s.subject)
        ORDER BY 2 NULLS LAST, 1
        """,  # noqa: S608 (only module-constant fragments are interpolated)
        course.platform_id,
        course.context_id,
        sorted({a["subject"] for a in answers}),
    )
    return people, answers


async def identified_trend(
    conn: asyncpg.Connection, course: Course, days: int = 90
) -> list[asyncpg.Record]:
    """Per UTC day of answering: the sum of pleasantness and the number of identified answers
    (anonymous ones count through their released results only)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT date_trunc('day', r.answered_at AT TIME ZONE 'UTC')::date AS day,
               sum(r.pleasantness)::bigint AS total, count(*) AS n
        FROM checkin_responses r JOIN checkins c ON c.id = r.checkin_id
        WHERE c.platform_id = $1 AND c.context_id = $2 AND NOT c.anonymous
          AND r.answered_at > now() - make_interval(days => $3)
        GROUP BY 1 ORDER BY 1
        """,
        course.platform_id,
        course.context_id,
        days,
    )
    return rows


async def repeatedly_low(
    conn: asyncpg.Connection, course: Course, *, low_max: int, window: int, at_least: int
) -> list[asyncpg.Record]:
    """Students with ``at_least`` of their last ``window`` identified answers <= ``low_max``."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        WITH ranked AS (
            SELECT r.respondent, r.pleasantness,
                   row_number() OVER (PARTITION BY r.respondent
                                      ORDER BY r.answered_at DESC, r.checkin_id DESC) AS n
            FROM checkin_responses r JOIN checkins c ON c.id = r.checkin_id
            WHERE c.platform_id = $1 AND c.context_id = $2 AND NOT c.anonymous
        )
        SELECT k.respondent AS subject, ro.name,
               count(*) FILTER (WHERE k.pleasantness <= $3) AS low, count(*) AS answers
        FROM ranked k
        LEFT JOIN course_roster ro
          ON ro.platform_id = $1 AND ro.context_id = $2 AND ro.subject = k.respondent
        WHERE k.n <= $4
        GROUP BY k.respondent, ro.name
        HAVING count(*) FILTER (WHERE k.pleasantness <= $3) >= $5
        ORDER BY ro.name NULLS LAST, k.respondent
        """,
        course.platform_id,
        course.context_id,
        low_max,
        window,
        at_least,
    )
    return rows


async def upsert_roster(
    conn: asyncpg.Connection,
    course: Course,
    subject: str,
    *,
    name: str | None,
    role_kinds: list[str],
    seen_at: datetime,
) -> None:
    """Order-tolerant: an older (redelivered or late) launch never overwrites a newer one."""
    await conn.execute(
        """
        INSERT INTO course_roster AS ro (platform_id, context_id, subject, name, role_kinds,
                                         last_seen)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (platform_id, context_id, subject) DO UPDATE
            SET name = coalesce(excluded.name, ro.name), role_kinds = excluded.role_kinds,
                last_seen = excluded.last_seen
            WHERE ro.last_seen <= excluded.last_seen
        """,
        course.platform_id,
        course.context_id,
        subject,
        name,
        role_kinds,
        seen_at,
    )
