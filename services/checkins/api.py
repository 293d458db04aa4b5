"""The JSON API under ``/api/checkins``.

Authenticated by the launch token on every request; the course is the token's
(platform_id, context_id), so an id from the client only ever selects within that course.
Bearer header and no cookies: a cross-site request cannot carry the credential (CSRF-safe by
construction). Anonymous check-ins expose released results only (counts and notes in text
order, in groups of at least ``ATTUNE_CHECKIN_MIN_CLASS_SIZE`` answers), never who answered
what; so does every student's class picture (docs/checkins.md, *Anonymity*).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from services.checkins import emotions, queries, recurrence, results
from services.checkins.auth import identity
from services.checkins.deployments import checks_read_only_itself, deployment_read_only
from services.checkins.keys import PSEUDONYMS_KEY, TOKENS_KEY
from services.checkins.queries import Course
from shared.db import POOL_KEY
from shared.errors import AttuneError, Conflict, Forbidden, NotFound
from shared.events import outbox, topics
from shared.events.envelope import Event
from shared.forms import read_json
from shared.i18n.catalogues import _, translate
from shared.i18n.web import request_language
from shared.identifiers import row_id
from shared.logs import get_logger
from shared.lti.launch_token import LaunchIdentity
from shared.storable import storable_text

log = get_logger(__name__)

SERVICE = "checkins"
QUESTION_MAX = 300
NOTE_MAX = 500
MAX_OPEN_DAYS = 366
# "May need a conversation": at least LOW_AT_LEAST of the last LOW_WINDOW identified answers
# in the lowest band.
LOW_BAND_MAX = 1
LOW_WINDOW = 3
LOW_AT_LEAST = 2
TREND_DAYS = 90
# The per-student view: each student's answers to this many latest identified check-ins.
STUDENTS_CHECKINS = 12
NO_STORE = {"Cache-Control": "no-store"}


class ValidationFailed(AttuneError):
    """Field-level validation errors: ``fields`` maps a field name to a stable code."""

    status = 422
    code = "validation_failed"
    title = _("Some fields need attention")

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(_("Some fields are missing or invalid."))
        self.fields = fields


@web.middleware
async def validation_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Renders ``ValidationFailed`` with its fields (the shared error edge has no field list)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ValidationFailed as exc:
        log.info("request_rejected", code=exc.code, status=exc.status, fields=sorted(exc.fields))
        return web.json_response(
            {
                "error": {
                    "code": exc.code,
                    "message": translate(exc.message, request_language(request)),
                    "fields": exc.fields,
                }
            },
            status=exc.status,
            headers=NO_STORE,
        )


# --- who and where ---------------------------------------------------------------------------


def _who(request: web.Request) -> tuple[LaunchIdentity, Course]:
    who = identity(request, request.app[TOKENS_KEY])
    if not who.context_id or not who.subject:
        raise Forbidden(
            _("Attune was opened outside a course."),
            code="course_context_missing",
            hint=_("Open Attune from a course in the LMS."),
        )
    return who, Course(who.platform_id, who.context_id)


def _teacher(request: web.Request) -> tuple[LaunchIdentity, Course]:
    who, course = _who(request)
    if not who.is_teacher:
        raise Forbidden(_("Only the course's teachers can do this."), code="teacher_only")
    return who, course


def _learner(request: web.Request) -> tuple[LaunchIdentity, Course]:
    who, course = _who(request)
    if "learner" not in who.roles:
        raise Forbidden(_("Only the course's students can answer check-ins."), code="learner_only")
    return who, course


def _checkin_id(request: web.Request) -> int:
    checkin_id = row_id(request.match_info["checkin_id"])
    if checkin_id is None:
        raise _not_found()
    return checkin_id


def _not_found() -> NotFound:
    return NotFound(_("There is no such check-in in this course."), code="checkin_not_found")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except ValueError:
        raise AttuneError(_("The request body is not valid JSON."), code="json_invalid") from None
    if not isinstance(body, dict):
        raise AttuneError(_("The request body must be a JSON object."), code="json_invalid")
    return body


# --- validation ------------------------------------------------------------------------------


def _time(value: Any, name: str, errors: dict[str, str]) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        errors[name] = "invalid"
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        errors[name] = "invalid"
        return None
    if parsed.tzinfo is None:
        errors[name] = "timezone_required"
        return None
    return parsed


def _checkin_fields(body: dict[str, Any], current: asyncpg.Record | None) -> dict[str, Any]:
    """Validated fields for a create (``current`` None) or an edit (missing = unchanged)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}

    def given(name: str) -> bool:
        return name in body and body[name] is not None

    question = body.get("question") if given("question") or current is None else None
    if current is not None and not given("question"):
        out["question"] = current["question"]
    elif not isinstance(question, str) or not question.strip():
        errors["question"] = "required"
    elif len(question.strip()) > QUESTION_MAX:
        errors["question"] = "too_long"
    elif not storable_text(question):
        errors["question"] = "invalid"
    else:
        out["question"] = question.strip()

    vocabulary = body.get("vocabulary", current["vocabulary"] if current else "full")
    if not isinstance(vocabulary, str) or vocabulary not in emotions.VOCABULARIES:
        errors["vocabulary"] = "invalid_choice"
    elif current is not None and vocabulary != current["vocabulary"] and current["responses"]:
        errors["vocabulary"] = "has_responses"
    out["vocabulary"] = vocabulary

    kind = body.get("response_kind", "emotion")
    if kind != "emotion":
        errors["response_kind"] = "invalid_choice"

    for flag, default in (("allow_note", False), ("anonymous", False)):
        value = body.get(flag, current[flag] if current else default)
        if not isinstance(value, bool):
            errors[flag] = "invalid"
        out[flag] = value
    if current is not None and out["anonymous"] != current["anonymous"]:
        errors["anonymous"] = "immutable"

    now = datetime.now(UTC)
    opens = current["opens_at"] if current else now
    if given("opens_at"):
        opens = _time(body["opens_at"], "opens_at", errors) or opens
    closes = current["closes_at"] if current else opens + timedelta(days=7)
    if given("closes_at"):
        parsed = _time(body["closes_at"], "closes_at", errors)
        if parsed is not None:
            closes = parsed
            if closes <= now:
                errors["closes_at"] = "in_past"
    if "closes_at" not in errors and closes <= opens:
        errors["closes_at"] = "before_opens_at"
    if "closes_at" not in errors and closes - opens > timedelta(days=MAX_OPEN_DAYS):
        errors["closes_at"] = "too_far"
    out["opens_at"], out["closes_at"] = opens, closes
    if "recurrence" in body:
        every, days, tz = recurrence.parse(body["recurrence"], errors)
    elif current is not None:
        every, days, tz = (
            current["recurrence"],
            list(current["recurrence_days"]),
            current["recurrence_tz"],
        )
    else:
        every, days, tz = None, [], None
    out["recurrence"], out["recurrence_days"], out["recurrence_tz"] = every, days, tz
    if errors:
        raise ValidationFailed(errors)
    return out


# --- shapes ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _checkin_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "question": row["question"],
        "response_kind": row["response_kind"],
        "vocabulary": row["vocabulary"],
        "allow_note": row["allow_note"],
        "anonymous": row["anonymous"],
        "opens_at": _iso(row["opens_at"]),
        "closes_at": _iso(row["closes_at"]),
        "closed_early_at": _iso(row["closed_early_at"]),
        "status": row["status"],
        "recurrence": recurrence.as_json(row),
    }


def _participation(responses: int, learners: int) -> dict[str, Any]:
    rate = min(1.0, responses / learners) if learners else None
    return {"answered": responses, "learners": learners, "rate": rate}


def _answer_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "emotion": row["emotion"],
        "pleasantness": row["pleasantness"],
        "note": row["note"],
        "answered_at": _iso(row["answered_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _event(kind: str, course: Course, checkin_id: int, data: dict[str, Any]) -> Event:
    return Event(
        type=kind,
        source=SERVICE,
        subject=f"checkin:{checkin_id}",
        data={
            "checkin_id": checkin_id,
            "platform_id": course.platform_id,
            "context_id": course.context_id,
            **data,
        },
    )


def _respondent_keys(
    request: web.Request, who: LaunchIdentity, course: Course, row: asyncpg.Record
) -> list[str]:
    assert who.subject is not None
    if not row["anonymous"]:
        return [who.subject]
    return request.app[PSEUDONYMS_KEY].all(
        course.platform_id, course.context_id, row["id"], who.subject
    )


async def _own_answers(
    request: web.Request,
    conn: asyncpg.Connection,
    who: LaunchIdentity,
    course: Course,
    rows: list[asyncpg.Record],
) -> dict[int, asyncpg.Record]:
    pairs = [(r["id"], k) for r in rows for k in _respondent_keys(request, who, course, r)]
    return await queries.own_responses(conn, pairs)


# --- handlers --------------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    who = identity(request, request.app[TOKENS_KEY])
    return web.json_response(
        {
            "launch_id": who.launch_id,
            "platform_id": who.platform_id,
            "deployment_id": who.deployment_id,
            "context_id": who.context_id,
            "resource_link_id": who.resource_link_id,
            "roles": list(who.roles),
            "is_teacher": who.is_teacher,
            "is_learner": "learner" in who.roles,
            "message_type": who.message_type,
            "expires_at": who.expires_at,
            "min_class_size": results.group_size(request),
            # A deep-linking launch: the page opens in "choose a check-in" mode.
            "deep_linking": who.deep_link is not None and who.is_teacher,
            # What the LMS shares (from the launch's verified claims): without the roster,
            # participation counts only students who opened Attune; without names, people
            # show as the LMS's identifiers. The teacher's page says so.
            "lms_shares": (
                {"roster": who.shares.roster, "names": who.shares.names}
                if who.shares is not None
                else None
            ),
            # A deep-linked resource link: the check-in it points at.
            "checkin_id": row_id(who.custom_checkin_id),
        },
        headers=NO_STORE,
    )


async def list_checkins(request: web.Request) -> web.Response:
    who, course = _who(request)
    async with request.app[POOL_KEY].acquire() as conn:
        if who.is_teacher:
            rows = await queries.list_checkins(conn, course)
            learners = await queries.learner_count(conn, course)
            items = [
                {**_checkin_json(r), "participation": _participation(r["responses"], learners)}
                for r in rows
            ]
            return web.json_response({"view": "teacher", "checkins": items}, headers=NO_STORE)
        if "learner" not in who.roles:
            raise Forbidden(
                _("Only the course's students can answer check-ins."), code="learner_only"
            )
        rows = await queries.list_checkins(conn, course, only_open=True)
        mine = await _own_answers(request, conn, who, course, rows)
        released = await results.read(request, conn, course, list(mine))
    items = []
    for r in rows:
        answer = mine.get(r["id"])
        items.append(
            {
                **_checkin_json(r),
                "my_answer": _answer_json(answer) if answer else None,
                "class": results.class_view(released.get(r["id"]), answer is not None),
            }
        )
    return web.json_response({"view": "student", "checkins": items}, headers=NO_STORE)


async def create_checkin(request: web.Request) -> web.Response:
    who, course = _teacher(request)
    fields = _checkin_fields(await _body(request), None)
    assert who.subject is not None
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        row = await queries.create_checkin(conn, course, fields, who.subject)
        await outbox.enqueue(
            conn,
            topics.CHECKIN,
            _event(
                "checkin.created",
                course,
                row["id"],
                {
                    "question": row["question"],
                    "vocabulary": row["vocabulary"],
                    "anonymous": row["anonymous"],
                    "allow_note": row["allow_note"],
                    "opens_at": _iso(row["opens_at"]),
                    "closes_at": _iso(row["closes_at"]),
                },
            ),
            key=course.key,
        )
    log.info("checkin_created", checkin_id=row["id"], anonymous=row["anonymous"])
    return web.json_response(_checkin_json(row), status=201, headers=NO_STORE)


async def get_checkin(request: web.Request) -> web.Response:
    """Teachers: the results. Students: the check-in, their answer and the class picture."""
    who, course = _who(request)
    checkin_id = _checkin_id(request)
    async with request.app[POOL_KEY].acquire() as conn:
        row = await queries.get_checkin(conn, course, checkin_id)
        if row is None or (not who.is_teacher and row["status"] == "scheduled"):
            raise _not_found()
        if not who.is_teacher:
            if "learner" not in who.roles:
                raise Forbidden(
                    _("Only the course's students can answer check-ins."), code="learner_only"
                )
            answer = (await _own_answers(request, conn, who, course, [row])).get(checkin_id)
            released = await results.read(request, conn, course, [checkin_id] if answer else [])
            body = {
                **_checkin_json(row),
                "my_answer": _answer_json(answer) if answer else None,
                "class": results.class_view(released.get(checkin_id), answer is not None),
            }
            return web.json_response(body, headers=NO_STORE)
        learners = await queries.learner_count(conn, course)
        result: dict[str, Any] = {
            **_checkin_json(row),
            "participation": _participation(row["responses"], learners),
        }
        if row["anonymous"]:
            # Released results only: never the answers as they stand (docs/checkins.md).
            res = (await results.read(request, conn, course, [checkin_id])).get(checkin_id)
            result["distribution"] = (
                results.distribution(results.released_emotions(res)) if res is not None else None
            )
            result["notes"] = list(res["notes"]) if res is not None else []
            result["results"] = results.state(res, row["responses"], results.group_size(request))
        else:
            counts = await queries.identified_emotions(conn, course, checkin_id)
            result["distribution"] = results.distribution(counts)
            result["responses"] = [
                {
                    "subject": r["subject"],
                    "name": r["name"],
                    **_answer_json(r),
                }
                for r in await queries.identified_responses(conn, course, checkin_id)
            ]
            # Identified check-ins only: for an anonymous one, who is missing says who answered.
            result["not_answered"] = [
                {"subject": r["subject"], "name": r["name"]}
                for r in await queries.not_answered(conn, course, checkin_id)
            ]
    return web.json_response(result, headers=NO_STORE)


async def update_checkin(request: web.Request) -> web.Response:
    course = _teacher(request)[1]
    checkin_id = _checkin_id(request)
    body = await _body(request)
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        current = await queries.get_checkin(conn, course, checkin_id, lock=True)
        if current is None:
            raise _not_found()
        fields = _checkin_fields(body, current)
        await queries.update_checkin(conn, course, checkin_id, fields)
        row = await queries.get_checkin(conn, course, checkin_id)
        assert row is not None
        await outbox.enqueue(
            conn,
            topics.CHECKIN,
            _event(
                "checkin.updated",
                course,
                checkin_id,
                {"opens_at": _iso(row["opens_at"]), "closes_at": _iso(row["closes_at"])},
            ),
            key=course.key,
        )
    return web.json_response(_checkin_json(row), headers=NO_STORE)


async def close_checkin(request: web.Request) -> web.Response:
    course = _teacher(request)[1]
    checkin_id = _checkin_id(request)
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        current = await queries.get_checkin(conn, course, checkin_id, lock=True)
        if current is None:
            raise _not_found()
        if current["status"] == "closed":
            raise Conflict(_("This check-in is already closed."), code="checkin_closed")
        await queries.close_checkin(conn, course, checkin_id)
        row = await queries.get_checkin(conn, course, checkin_id)
        assert row is not None
        await outbox.enqueue(
            conn,
            topics.CHECKIN,
            _event(
                "checkin.closed", course, checkin_id, {"closed_at": _iso(row["closed_early_at"])}
            ),
            key=course.key,
        )
    return web.json_response(_checkin_json(row), headers=NO_STORE)


async def delete_checkin(request: web.Request) -> web.Response:
    course = _teacher(request)[1]
    checkin_id = _checkin_id(request)
    async with request.app[POOL_KEY].acquire() as conn, conn.transaction():
        removed = await queries.delete_checkin(conn, course, checkin_id)
        if removed < 0:
            raise _not_found()
        await outbox.enqueue(
            conn,
            topics.CHECKIN,
            _event("checkin.deleted", course, checkin_id, {"responses_deleted": removed}),
            key=course.key,
        )
    log.info("checkin_deleted", checkin_id=checkin_id, responses_deleted=removed)
    return web.Response(status=204, headers=NO_STORE)


@checks_read_only_itself  # answer_once re-checks read-only in its own statement
async def answer(request: web.Request) -> web.Response:
    who, course = _learner(request)
    checkin_id = _checkin_id(request)
    body = await _body(request)
    pool = request.app[POOL_KEY]
    row = await queries.checkin_for_answer(pool, course, checkin_id, who.deployment_id)
    _check_answerable(row)
    assert row is not None
    errors: dict[str, str] = {}
    emotion = body.get("emotion")
    if not isinstance(emotion, str) or not emotion:
        errors["emotion"] = "required"
    elif not emotions.is_word(row["vocabulary"], emotion):
        errors["emotion"] = "invalid_choice"
    note = body.get("note")
    if isinstance(note, str):
        note = note.strip() or None
    if note is not None:
        if not isinstance(note, str):
            errors["note"] = "invalid"
        elif not row["allow_note"]:
            errors["note"] = "not_allowed"
        elif len(note) > NOTE_MAX:
            errors["note"] = "too_long"
        elif not storable_text(note):
            errors["note"] = "invalid"
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(emotion, str)
    pleasantness = emotions.PLEASANTNESS[emotion]
    current, *previous = _respondent_keys(request, who, course, row)
    data: dict[str, Any] = {"changed": False, "anonymous": row["anonymous"]}
    if not row["anonymous"]:
        # An anonymous answer's event says only that one came: with its time to the second,
        # its emotion would be what polling an identified check-in beside it pairs with a name.
        data.update(emotion=emotion, pleasantness=pleasantness, respondent=who.subject)
    event = _event("checkin.answered", course, checkin_id, data)
    fields = {
        "emotion": emotion,
        "pleasantness": pleasantness,
        "note": note,
        "anonymous": row["anonymous"],
    }
    if previous:
        # After a secret rotation: an answer under a retired secret becomes this one's first.
        await queries.adopt_pseudonyms(pool, checkin_id, current, previous)
    # Answer and event in one statement, re-checking that the check-in is still open and
    # writable at that moment (it was read above without a transaction).
    changed = dataclasses.replace(event, data={**event.data, "changed": True})
    mine = await queries.answer_once(
        pool,
        course,
        checkin_id,
        who.deployment_id,
        current,
        **fields,
        event=queries.AnswerEvent(
            id=event.id,
            topic=topics.CHECKIN,
            key=course.key.encode(),
            type=event.type,
            first=event.encode(),
            changed=changed.encode(),
        ),
    )
    if mine is None:  # closed, deleted or made read-only since the read: say which
        _check_answerable(
            await queries.checkin_for_answer(pool, course, checkin_id, who.deployment_id)
        )
        raise _not_open()
    replaced = bool(mine["replaced"])
    log.info("checkin_answered", checkin_id=checkin_id, changed=replaced)
    return web.json_response(_answer_json(mine), status=200 if replaced else 201, headers=NO_STORE)


def _check_answerable(row: asyncpg.Record | None) -> None:
    if row is None or row["status"] == "scheduled":
        raise _not_found()
    if row["read_only"]:
        raise deployment_read_only()
    if row["status"] != "open":
        raise _not_open()


def _not_open() -> Conflict:
    return Conflict(
        _("This check-in is closed; answers can no longer change."), code="checkin_not_open"
    )


async def history(request: web.Request) -> web.Response:
    """A student's own answers in this course, newest first."""
    who, course = _learner(request)
    async with request.app[POOL_KEY].acquire() as conn:
        rows = [r for r in await queries.list_checkins(conn, course) if r["status"] != "scheduled"]
        mine = await _own_answers(request, conn, who, course, rows)
        answered = [r for r in rows if r["id"] in mine]
        released = await results.read(request, conn, course, [r["id"] for r in answered])
    items = [
        {
            **_checkin_json(r),
            "my_answer": _answer_json(mine[r["id"]]),
            "class": results.class_view(released.get(r["id"]), True),
        }
        for r in answered
    ]
    return web.json_response({"history": items}, headers=NO_STORE)


async def students(request: web.Request) -> web.Response:
    """Per student, their answers to the course's latest identified check-ins (oldest first):
    change over time at a glance. Anonymous check-ins never appear (docs/checkins.md)."""
    course = _teacher(request)[1]
    async with request.app[POOL_KEY].acquire() as conn:
        rows = await queries.identified_checkins(conn, course, STUDENTS_CHECKINS)
        people, answers = await queries.students_answers(conn, course, [r["id"] for r in rows])
    by_subject: dict[str, dict[int, asyncpg.Record]] = {}
    for a in answers:
        by_subject.setdefault(a["subject"], {})[a["checkin_id"]] = a
    return web.json_response(
        {
            "checkins": [_checkin_json(r) for r in rows],
            "students": [
                {
                    "subject": p["subject"],
                    "name": p["name"],
                    "answers": [
                        {"emotion": a["emotion"], "pleasantness": a["pleasantness"]}
                        if (a := by_subject.get(p["subject"], {}).get(r["id"])) is not None
                        else None
                        for r in rows
                    ],
                }
                for p in people
            ],
        },
        headers=NO_STORE,
    )


async def insights(request: web.Request) -> web.Response:
    course = _teacher(request)[1]
    since = datetime.now(UTC) - timedelta(days=TREND_DAYS)
    async with request.app[POOL_KEY].acquire() as conn:
        points = await queries.identified_trend(conn, course, TREND_DAYS)
        low = await queries.repeatedly_low(
            conn, course, low_max=LOW_BAND_MAX, window=LOW_WINDOW, at_least=LOW_AT_LEAST
        )
        rows = await queries.list_checkins(conn, course)
        learners = await queries.learner_count(conn, course)
        anonymous = [r for r in rows if r["anonymous"] and r["opens_at"] > since]
        released = await results.read(request, conn, course, [r["id"] for r in anonymous])
    answered = sum(r["responses"] for r in rows if r["status"] != "scheduled")
    asked = sum(1 for r in rows if r["status"] != "scheduled")
    return web.json_response(
        {
            "learners": learners,
            "average_participation": (
                min(1.0, answered / (asked * learners)) if asked and learners else None
            ),
            "trend": results.trend(points, anonymous, released),
            "may_need_conversation": [
                {"subject": r["subject"], "name": r["name"], "low": r["low"], "of": r["answers"]}
                for r in low
            ],
        },
        headers=NO_STORE,
    )
