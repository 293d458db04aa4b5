"""Check-ins end to end through the real gateway, services, Postgres and broker: teacher and
student flows, insights, authorization and course scoping, anonymity, the roster projection."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.checkins import queries
from shared.events import topics
from shared.events.envelope import Event
from shared.logs import configure_logging
from shared.lti.launch_token import LaunchTokens
from shared.settings import Settings
from shared.signing import parse_secrets
from tests.fakes.platform import Client, FakePlatform
from tests.lti_support import LtiStack, browser, full_launch

pytestmark = pytest.mark.integration

INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


@pytest.fixture
async def course(stack: LtiStack, canvas: FakePlatform) -> Client:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    return client


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    configure_logging(service="test", level="DEBUG", fmt="json", stream=buf)
    yield buf
    configure_logging(service="test", level="WARNING", fmt="json")


async def launch_token(
    stack_url: str, platform: FakePlatform, client: Client, sub: str, *, teacher: bool = False
) -> str:
    """A real launch (login, platform auth, launch) of ``sub``; returns the launch token."""
    hint = json.dumps({"roles": [INSTRUCTOR if teacher else LEARNER]})
    async with browser() as b:
        resp = await full_launch(
            b, stack_url, platform, client, login_hint=sub, lti_message_hint=hint
        )
        assert resp.status == 303, await resp.text()
        return resp.headers["Location"].split("#lt=", 1)[1]


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        async with browser() as b:
            kwargs: dict[str, Any] = {"headers": headers}
            if body is not None:
                kwargs["json"] = body
            resp = await b.request(method, f"{self.base}/api/checkins{path}", **kwargs)
            text = await resp.text()
        return resp.status, (json.loads(text) if text else None)


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 180) -> None:
    # The condition ends the wait; the bound is generous because a busy 2-core machine (CI)
    # delays the events that fill a roster well past what a quiet one needs.
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def learners_in_roster(pool: asyncpg.Pool, n: int) -> None:
    async def enough() -> bool:
        got = await pool.fetchval(
            "SELECT count(*) FROM course_roster WHERE 'learner' = any(role_kinds)"
            " AND context_id = 'course-1' AND platform_id = (SELECT max(id) FROM platforms)"
        )
        return bool(got >= n)

    await wait_for(enough)


def minted(settings: Settings, **overrides: Any) -> str:
    """A launch token as the launch service would sign it (for scoping and expiry cases)."""
    claims: dict[str, Any] = {
        "launch_id": str(uuid.uuid4()),
        "platform_id": 1,
        "deployment_id": "d",
        "subject": "someone",
        "context_id": "course-1",
        "resource_link_id": "rl",
        "roles": ("learner",),
        "message_type": "LtiResourceLinkRequest",
        "region": "us-east-1",
    }
    ttl = overrides.pop("ttl_s", 600)
    claims.update(overrides)
    tokens = LaunchTokens(parse_secrets(settings.secret_keys), ttl_s=ttl)
    return tokens.issue(**claims)


def in_future(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def test_teacher_and_students_identified_flow(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    alice = Api(stack.url, await launch_token(stack.url, canvas, course, "s-alice"))
    bob = Api(stack.url, await launch_token(stack.url, canvas, course, "s-bob"))
    await learners_in_roster(stack.pool, 2)

    status, created = await teacher.call(
        "POST", "/checkins", {"question": "How was the exam?", "allow_note": True}
    )
    assert status == 201, created
    cid = created["id"]
    assert created["status"] == "open" and created["anonymous"] is False

    status, listed = await alice.call("GET", "/checkins")
    assert status == 200 and listed["view"] == "student"
    assert [c["id"] for c in listed["checkins"]] == [cid]
    assert listed["checkins"][0]["my_answer"] is None

    assert (await alice.call("PUT", f"/checkins/{cid}/response", {"emotion": "happy"}))[0] == 201
    status, changed = await alice.call(
        "PUT", f"/checkins/{cid}/response", {"emotion": "devastated", "note": " rough day "}
    )
    assert status == 200 and changed["pleasantness"] == 1 and changed["note"] == "rough day"
    assert (await bob.call("PUT", f"/checkins/{cid}/response", {"emotion": "calm"}))[0] == 201

    status, results = await teacher.call("GET", f"/checkins/{cid}")
    assert status == 200
    assert results["participation"] == {"answered": 2, "learners": 2, "rate": 1.0}
    assert results["distribution"]["pleasantness"] == [1, 0, 1, 0, 0]
    assert {e["emotion"]: e["count"] for e in results["distribution"]["emotions"]} == {
        "devastated": 1,
        "calm": 1,
    }
    who = {r["subject"]: r for r in results["responses"]}
    assert who["s-alice"]["name"] == "Person s-alice" and who["s-alice"]["note"] == "rough day"

    # A second low answer puts Alice on the "may need a conversation" list.
    _, second = await teacher.call("POST", "/checkins", {"question": "And today?"})
    await alice.call("PUT", f"/checkins/{second['id']}/response", {"emotion": "sad"})
    await alice.call("PUT", f"/checkins/{second['id']}/response", {"emotion": "hopeless"})
    status, insights = await teacher.call("GET", "/insights")
    assert status == 200
    assert [s["subject"] for s in insights["may_need_conversation"]] == ["s-alice"]
    assert insights["trend"] and insights["trend"][-1]["answers"] == 3
    assert insights["learners"] == 2

    # Student history shows only the student's own answers; no class picture below N.
    status, hist = await bob.call("GET", "/history")
    assert status == 200
    assert [(h["id"], h["my_answer"]["emotion"], h["class"]) for h in hist["history"]] == [
        (cid, "calm", None)
    ]

    # Close early: answers can no longer change.
    status, closed = await teacher.call("POST", f"/checkins/{cid}/close")
    assert status == 200 and closed["status"] == "closed"
    status, body = await bob.call("PUT", f"/checkins/{cid}/response", {"emotion": "happy"})
    assert status == 409 and body["error"]["code"] == "checkin_not_open"

    # Edit, then delete with its responses.
    status, edited = await teacher.call("PATCH", f"/checkins/{second['id']}", {"question": "Now?"})
    assert status == 200 and edited["question"] == "Now?"
    assert (await teacher.call("DELETE", f"/checkins/{second['id']}"))[0] == 204
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM checkin_responses WHERE checkin_id = $1", second["id"]
        )
        == 0
    )
    events = await stack.pool.fetch(
        "SELECT event_type FROM outbox WHERE topic = $1 ORDER BY seq", topics.CHECKIN
    )
    kinds = [e["event_type"] for e in events]
    assert kinds.count("checkin.created") == 2 and kinds.count("checkin.answered") == 5
    assert {"checkin.closed", "checkin.updated", "checkin.deleted"} <= set(kinds)


async def test_class_picture_needs_enough_answers(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    """A student sees the class picture after answering, once ATTUNE_CHECKIN_MIN_CLASS_SIZE
    (5) students answered; it then changes only with 5 more (tests/integration/
    test_checkins_anonymity.py has the attacks)."""
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    _, c = await teacher.call("POST", "/checkins", {"question": "Q", "vocabulary": "simple"})
    settings = stack.settings["us-east-1"]
    platform_id = await stack.pool.fetchval("SELECT max(id) FROM platforms")
    students = [
        Api(stack.url, minted(settings, platform_id=platform_id, subject=f"kid-{i}"))
        for i in range(6)
    ]
    status, body = await students[0].call(
        "PUT", f"/checkins/{c['id']}/response", {"emotion": "sad"}
    )
    assert status == 201
    status, body = await students[1].call(
        "PUT", f"/checkins/{c['id']}/response", {"emotion": "devastated"}
    )
    assert status == 422 and body["error"]["fields"] == {"emotion": "invalid_choice"}
    for s in students[1:4]:
        await s.call("PUT", f"/checkins/{c['id']}/response", {"emotion": "happy"})
    _, listed = await students[0].call("GET", "/checkins")
    assert listed["checkins"][0]["class"] is None  # 4 answers
    await students[4].call("PUT", f"/checkins/{c['id']}/response", {"emotion": "happy"})
    _, listed = await students[0].call("GET", "/checkins")
    shown = {"pleasantness": [0, 1, 0, 0, 4], "total": 5}
    assert listed["checkins"][0]["class"] == shown
    await students[5].call("PUT", f"/checkins/{c['id']}/response", {"emotion": "okay"})
    _, listed = await students[0].call("GET", "/checkins")
    assert listed["checkins"][0]["class"] == shown  # one more answer would stand alone
    _, seen = await students[5].call("GET", f"/checkins/{c['id']}")
    assert seen["class"] == shown


async def test_validation_errors_have_field_codes(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    status, body = await teacher.call(
        "POST",
        "/checkins",
        {
            "question": " ",
            "vocabulary": "huge",
            "anonymous": "yes",
            "opens_at": "tomorrow",
            "closes_at": "2020-01-01T00:00:00+00:00",
        },
    )
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    assert body["error"]["fields"] == {
        "question": "required",
        "vocabulary": "invalid_choice",
        "anonymous": "invalid",
        "opens_at": "invalid",
        "closes_at": "in_past",
    }
    status, body = await teacher.call(
        "POST", "/checkins", {"question": "x" * 301, "closes_at": "2030-01-01T00:00:00"}
    )
    assert body["error"]["fields"] == {"question": "too_long", "closes_at": "timezone_required"}
    status, body = await teacher.call(
        "POST",
        "/checkins",
        {"question": "Q", "opens_at": in_future(days=3), "closes_at": in_future(days=1)},
    )
    assert body["error"]["fields"] == {"closes_at": "before_opens_at"}
    _, c = await teacher.call("POST", "/checkins", {"question": "Q"})
    status, body = await teacher.call("PATCH", f"/checkins/{c['id']}", {"anonymous": True})
    assert status == 422 and body["error"]["fields"] == {"anonymous": "immutable"}
    async with browser() as b:
        resp = await b.post(
            f"{stack.url}/api/checkins/checkins",
            data="question=Q",
            headers={"Authorization": f"Bearer {teacher.token}"},
        )
        assert resp.status == 415 and (await resp.json())["error"]["code"] == "json_required"
    status, body = await teacher.call("GET", "/checkins/not-a-number")
    assert status == 404 and body["error"]["code"] == "checkin_not_found"


async def test_learners_cannot_manage_or_see_others(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    alice = Api(stack.url, await launch_token(stack.url, canvas, course, "s-alice"))
    bob = Api(stack.url, await launch_token(stack.url, canvas, course, "s-bob"))
    _, c = await teacher.call("POST", "/checkins", {"question": "Q", "allow_note": True})
    await alice.call("PUT", f"/checkins/{c['id']}/response", {"emotion": "sad", "note": "secret"})

    for method, path, body in [
        ("POST", "/checkins", {"question": "Q"}),
        ("PATCH", f"/checkins/{c['id']}", {"question": "mine now"}),
        ("POST", f"/checkins/{c['id']}/close", None),
        ("DELETE", f"/checkins/{c['id']}", None),
        ("GET", "/insights", None),
    ]:
        status, err = await bob.call(method, path, body)
        assert (status, err["error"]["code"]) == (403, "teacher_only"), (method, path)
    status, err = await teacher.call("PUT", f"/checkins/{c['id']}/response", {"emotion": "sad"})
    assert (status, err["error"]["code"]) == (403, "learner_only")

    status, seen = await bob.call("GET", f"/checkins/{c['id']}")
    assert status == 200 and seen["my_answer"] is None and seen["class"] is None
    assert "responses" not in seen and "distribution" not in seen
    for path in ("/checkins", f"/checkins/{c['id']}", "/history"):
        _, body = await bob.call("GET", path)
        assert "secret" not in json.dumps(body) and "s-alice" not in json.dumps(body)


async def test_teacher_rights_come_from_context_roles_only(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    """A staff member enrolled as a learner (institution or system roles beside
    membership#Learner) is a learner: no classmate's identified answer, no insights, no
    export. Roles match exactly (docs/checkins.md, *Who is a teacher*)."""
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    _, c = await teacher.call("POST", "/checkins", {"question": "Named", "allow_note": True})
    alice = Api(stack.url, await launch_token(stack.url, canvas, course, "s-alice"))
    await alice.call("PUT", f"/checkins/{c['id']}/response", {"emotion": "sad", "note": "mine"})

    lis = "http://purl.imsglobal.org/vocab/lis/v2"
    cases = {
        "staff": ([f"{lis}/membership#Learner", f"{lis}/institution/person#Administrator",
                   f"{lis}/system/person#Administrator", f"{lis}/institution/person#Faculty"],
                  ["learner"]),
        "sysadmin": ([f"{lis}/system/person#SysAdmin", f"{lis}/institution/person#Administrator"],
                     []),
        "lookalike": (["https://evil.example/lis/v2/membership#Instructor",
                       f"{lis}/institution/membership#Administrator",
                       f"{lis}/membership#Learner"], ["learner"]),
        "designer": ([f"{lis}/membership#ContentDeveloper"], []),
        "ta": ([f"{lis}/membership/Instructor#TeachingAssistant"], ["ta"]),
        "course-admin": ([f"{lis}/membership#Administrator"], ["admin"]),
    }  # fmt: skip
    for sub, (roles, kinds) in cases.items():
        async with browser() as b:
            resp = await full_launch(
                b, stack.url, canvas, course, login_hint=sub,
                lti_message_hint=json.dumps({"roles": roles}),
            )  # fmt: skip
            assert resp.status == 303, await resp.text()
            api = Api(stack.url, resp.headers["Location"].split("#lt=", 1)[1])
        _, me = await api.call("GET", "/me")
        assert (me["roles"], me["is_teacher"]) == (kinds, sub in ("ta", "course-admin")), sub
        status, seen = await api.call("GET", f"/checkins/{c['id']}")
        if me["is_teacher"]:
            assert status == 200 and [r["subject"] for r in seen["responses"]] == ["s-alice"]
            continue
        assert "responses" not in json.dumps(seen) and "mine" not in json.dumps(seen), sub
        for path in ("/insights", "/export"):
            status, err = await api.call("GET", path)
            assert (status, err["error"]["code"]) == (403, "teacher_only"), (sub, path)


async def test_course_scoping_and_tokens(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    teacher_a = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    _, c = await teacher_a.call("POST", "/checkins", {"question": "Course A only"})
    platform_a = await stack.pool.fetchval("SELECT max(id) FROM platforms")

    # Course B: another registration of the same LMS (same context id "course-1"!), and
    # another context on the same platform.
    other = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, other)
    teacher_b = Api(stack.url, await launch_token(stack.url, canvas, other, "t-1", teacher=True))
    settings = stack.settings["us-east-1"]
    teacher_c = Api(
        stack.url,
        minted(settings, platform_id=platform_a, context_id="course-2", roles=("instructor",)),
    )
    learner_c = Api(stack.url, minted(settings, platform_id=platform_a, context_id="course-2"))
    for api in (teacher_b, teacher_c):
        _, listed = await api.call("GET", "/checkins")
        assert listed["checkins"] == []
        for method, path, body in [
            ("GET", f"/checkins/{c['id']}", None),
            ("PATCH", f"/checkins/{c['id']}", {"question": "hijacked"}),
            ("POST", f"/checkins/{c['id']}/close", None),
            ("DELETE", f"/checkins/{c['id']}", None),
        ]:
            status, err = await api.call(method, path, body)
            assert (status, err["error"]["code"]) == (404, "checkin_not_found"), (method, path)
    status, err = await learner_c.call("PUT", f"/checkins/{c['id']}/response", {"emotion": "sad"})
    assert (status, err["error"]["code"]) == (404, "checkin_not_found")
    _, still = await teacher_a.call("GET", f"/checkins/{c['id']}")
    assert still["question"] == "Course A only" and still["status"] == "open"

    no_course = Api(stack.url, minted(settings, context_id=None))
    status, err = await no_course.call("GET", "/checkins")
    assert (status, err["error"]["code"]) == (403, "course_context_missing")

    expired = Api(stack.url, minted(settings, platform_id=platform_a, ttl_s=-10))
    forged = Api(stack.url, teacher_a.token[:-4] + "AAAA")
    for api, code in ((expired, "launch_token_expired"), (forged, "launch_token_invalid")):
        for path in ("/me", "/checkins", "/insights"):
            status, err = await api.call("GET", path)
            assert (status, err["error"]["code"]) == (401, code)
            assert "from your course in the LMS" in err["error"]["hint"]
    async with browser() as b:
        resp = await b.get(f"{stack.url}/api/checkins/checkins")
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "launch_token_missing"


async def test_anonymous_answers_leave_no_identity(
    stack: LtiStack, canvas: FakePlatform, course: Client, json_logs: io.StringIO
) -> None:
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    subject = f"anon-student-{uuid.uuid4().hex[:8]}"
    student = Api(stack.url, await launch_token(stack.url, canvas, course, subject))
    _, c = await teacher.call(
        "POST", "/checkins", {"question": "Q", "anonymous": True, "allow_note": True}
    )
    cid = c["id"]
    status, _ = await student.call("PUT", f"/checkins/{cid}/response", {"emotion": "sad"})
    assert status == 201
    status, mine = await student.call(
        "PUT", f"/checkins/{cid}/response", {"emotion": "hopeful", "note": "better now"}
    )
    assert status == 200 and mine["emotion"] == "hopeful"
    # The student still sees their own answer; the teacher sees that one student answered,
    # and nothing of the answer (one answer is below the group size).
    _, listed = await student.call("GET", "/checkins")
    assert listed["checkins"][0]["my_answer"]["emotion"] == "hopeful"
    _, hist = await student.call("GET", "/history")
    assert [h["id"] for h in hist["history"]] == [cid]
    _, results = await teacher.call("GET", f"/checkins/{cid}")
    assert "responses" not in results and results["participation"]["answered"] == 1
    assert results["notes"] == [] and results["distribution"] is None
    _, insights = await teacher.call("GET", "/insights")
    everything = json.dumps([listed, hist, results, insights])
    assert subject not in everything
    assert insights["may_need_conversation"] == []

    rows = await stack.pool.fetch("SELECT * FROM checkin_responses WHERE checkin_id = $1", cid)
    assert len(rows) == 1
    assert rows[0]["respondent"].startswith("p1:") and subject not in rows[0]["respondent"]
    assert rows[0]["answered_at"].minute == 0 and rows[0]["answered_at"].second == 0
    values = await stack.pool.fetch(
        "SELECT value FROM outbox WHERE topic = $1 AND event_type = 'checkin.answered'",
        topics.CHECKIN,
    )
    assert len(values) == 2
    for v in values:
        data = json.loads(bytes(v["value"]))["data"]
        assert subject.encode() not in bytes(v["value"])
        assert "respondent" not in data and data["anonymous"] is True
        # Nor the answer: sent the second it came, it would pair with an identified answer.
        assert "emotion" not in data and "pleasantness" not in data
    logs = json_logs.getvalue()
    assert "checkin_answered" in logs
    assert subject not in logs and "better now" not in logs


async def _produce(settings: Settings, *events: Event) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(topics.LAUNCH, e.encode(), key=e.subject.encode())
    finally:
        await producer.stop()


def _launch_event(platform_id: int, sub: str, name: str, kinds: list[str], at: datetime) -> Event:
    return Event(
        type="launch.completed",
        source="launch",
        subject=f"platform:{platform_id}:deployment:d",
        occurred_at=at,
        data={
            "launch_id": str(uuid.uuid4()),
            "platform": {"id": platform_id, "issuer": "https://x", "client_id": "c"},
            "deployment_id": "d",
            "user": {"sub": sub, "name": name},
            "role_kinds": kinds,
            "context": {"id": "course-r", "title": "Roster"},
            "resource_link_id": "rl",
        },
    )


async def test_roster_projection_from_launch_events(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    # From real launches through the outbox, relay and broker...
    await launch_token(stack.url, canvas, course, "s-real")
    await learners_in_roster(stack.pool, 1)
    # ...and idempotent on redelivery, tolerant of a late older event.
    settings = stack.settings["us-east-1"]
    platform_id = 10_000_000 + int(uuid.uuid4().int % 1_000_000)
    now = datetime.now(UTC)
    newer = _launch_event(platform_id, "s-1", "New Name", ["learner"], now)
    older = _launch_event(platform_id, "s-1", "Old Name", ["mentor"], now - timedelta(hours=1))
    other = _launch_event(platform_id, "s-2", "Two", ["instructor"], now)
    await _produce(settings, newer, newer, older, newer, other)

    async def applied() -> bool:
        n = await stack.pool.fetchval(
            "SELECT count(*) FROM consumed_events WHERE consumer = 'checkins-roster'"
            " AND event_id = any($1::uuid[])",
            [newer.id, older.id, other.id],
        )
        return bool(n == 3)

    await wait_for(applied)
    rows = await stack.pool.fetch(
        "SELECT subject, name, role_kinds FROM course_roster WHERE platform_id = $1"
        " ORDER BY subject",
        platform_id,
    )
    assert [tuple(r) for r in rows] == [
        ("s-1", "New Name", ["learner"]),
        ("s-2", "Two", ["instructor"]),
    ]


async def open_checkin_row(
    pool: asyncpg.Pool, name: str, *, anonymous: bool
) -> tuple[queries.Course, int]:
    """A platform ``https://{name}.example`` and a check-in open for the next hour in its course
    ``course-{name}``, written straight through the checkins queries (no service involved)."""
    issuer = f"https://{name}.example"
    platform_id = await pool.fetchval(
        "INSERT INTO platforms (issuer, client_id, auth_url, jwks_url) "
        "VALUES ($1, $2, $3, $4) RETURNING id",
        issuer,
        uuid.uuid4().hex,
        f"{issuer}/a",
        f"{issuer}/j",
    )
    course = queries.Course(platform_id, f"course-{name}")
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        row = await queries.create_checkin(
            conn,
            course,
            {
                "question": f"{name.capitalize()}?",
                "vocabulary": "full",
                "allow_note": False,
                "anonymous": anonymous,
                "opens_at": now - timedelta(minutes=1),
                "closes_at": now + timedelta(hours=1),
                "recurrence": None,
                "recurrence_days": [],
                "recurrence_tz": None,
            },
            "teacher-1",
        )
    return course, int(row["id"])


async def test_answer_statement_writes_nothing_once_the_checkin_is_not_answerable(
    pool: asyncpg.Pool,
) -> None:
    """The answer is read-then-written without a transaction; the write re-checks in the same
    statement. A check-in closed, or a deployment made read-only, in between gets no answer and
    no event (the handler then answers 409/403)."""
    course, checkin_id = await open_checkin_row(pool, "race", anonymous=False)

    async def answer(respondent: str) -> Any:
        event_id = uuid.uuid4()
        stored = await queries.answer_once(
            pool, course, checkin_id, "dep-1", respondent,
            emotion="calm", pleasantness=4, note=None, anonymous=False,
            event=queries.AnswerEvent(
                id=event_id, topic=topics.CHECKIN, key=b"k", type="checkin.answered",
                first=b'{"changed":false}', changed=b'{"changed":true}',
            ),
        )  # fmt: skip
        events = await pool.fetchval("SELECT count(*) FROM outbox WHERE id = $1", event_id)
        return stored, events

    stored, events = await answer("s1")
    assert stored is not None and not stored["replaced"] and events == 1
    stored, events = await answer("s1")
    assert stored is not None and stored["replaced"] and events == 1

    await pool.execute(
        "INSERT INTO checkin_deployment_status (platform_id, deployment_id, read_only) "
        "VALUES ($1, 'dep-1', true)",
        course.platform_id,
    )
    assert await answer("s2") == (None, 0)
    await pool.execute(
        "DELETE FROM checkin_deployment_status WHERE platform_id = $1", course.platform_id
    )
    await pool.execute("UPDATE checkins SET closed_early_at = now() WHERE id = $1", checkin_id)
    assert await answer("s3") == (None, 0)
    assert await pool.fetchval(
        "SELECT array_agg(respondent) FROM checkin_responses WHERE checkin_id = $1", checkin_id
    ) == ["s1"]


async def test_answer_under_a_retired_secret_moves_to_the_current_pseudonym(
    pool: asyncpg.Pool,
) -> None:
    """docs/checkins.md: after ATTUNE_SECRET_KEYS is rotated, a student's anonymous answer
    stored under the old secret's pseudonym is found and changed (200, not a second answer)."""
    from services.checkins.privacy import Pseudonyms

    old, new = os.urandom(32), os.urandom(32)
    course, checkin_id = await open_checkin_row(pool, "rotate", anonymous=True)
    platform_id = course.platform_id

    async def answer(keys: list[bytes], emotion: str) -> Any:
        current, *previous = Pseudonyms(keys).all(platform_id, course.context_id, checkin_id, "s")
        if previous:
            await queries.adopt_pseudonyms(pool, checkin_id, current, previous)
        return await queries.answer_once(
            pool, course, checkin_id, "dep-1", current,
            emotion=emotion, pleasantness=4, note=None, anonymous=True,
            event=queries.AnswerEvent(
                id=uuid.uuid4(), topic=topics.CHECKIN, key=b"k", type="checkin.answered",
                first=b"{}", changed=b"{}",
            ),
        )  # fmt: skip

    first = await answer([old], "calm")
    assert first is not None and not first["replaced"]
    changed = await answer([new, old], "happy")  # the new secret first, the old one retired
    assert changed is not None and changed["replaced"] and changed["emotion"] == "happy"
    stored = await pool.fetch(
        "SELECT respondent FROM checkin_responses WHERE checkin_id = $1", checkin_id
    )
    current = Pseudonyms([new]).all(platform_id, course.context_id, checkin_id, "s")[0]
    assert [r["respondent"] for r in stored] == [current]
