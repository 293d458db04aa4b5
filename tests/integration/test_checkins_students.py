"""The teacher's views of students (issue #17), through the real gateway, services and Postgres:
who has not answered an identified check-in yet, by name from the roster (the LMS's list when
it gave one), and each student's answers across the course's identified check-ins. Neither
ever covers an anonymous check-in: who is missing would say who answered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.checkins import queries
from services.checkins.queries import Course
from tests.fakes.platform import Client
from tests.integration.test_checkins import Api, course, minted
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration

__all__ = ["course"]  # a fixture shared with the check-in tests


async def roster(
    stack: LtiStack, client: Client, people: dict[str, str | None], *, nrps: bool = False
) -> tuple[int, str]:
    """Learners in the course roster (named), as the roster consumer or the NRPS sync write
    them; returns the platform id and a run prefix for their subjects."""
    platform_id: int = await stack.pool.fetchval(
        "SELECT id FROM platforms WHERE client_id = $1", client.client_id
    )
    async with stack.pool.acquire() as conn:
        for subject, name in people.items():
            await queries.upsert_roster(
                conn,
                Course(platform_id, "course-1"),
                subject,
                name=name,
                role_kinds=["learner"],
                seen_at=datetime.now(UTC),
            )
            if nrps:
                await conn.execute(
                    "UPDATE course_roster SET nrps = true WHERE platform_id = $1 AND subject = $2",
                    platform_id,
                    subject,
                )
    return platform_id, "course-1"


def student(stack: LtiStack, platform_id: int, subject: str) -> Api:
    return Api(
        stack.url, minted(stack.settings["us-east-1"], platform_id=platform_id, subject=subject)
    )


def teacher(stack: LtiStack, platform_id: int) -> Api:
    token = minted(
        stack.settings["us-east-1"], platform_id=platform_id, subject="t-1", roles=("instructor",)
    )
    return Api(stack.url, token)


async def test_not_answered_names_the_roster_learners_still_missing(
    stack: LtiStack, course: Client
) -> None:
    run = uuid.uuid4().hex[:6]
    ada, ben, cleo = (f"{n}-{run}" for n in ("ada", "ben", "cleo"))
    platform_id, _ = await roster(stack, course, {ada: "Ada A", ben: "Ben B", cleo: None})
    t = teacher(stack, platform_id)
    _, c = await t.call("POST", "/checkins", {"question": "Identified"})
    _, before = await t.call("GET", f"/checkins/{c['id']}")
    assert before["not_answered"] == [
        {"subject": ada, "name": "Ada A"},
        {"subject": ben, "name": "Ben B"},
        {"subject": cleo, "name": None},
    ]
    status, _ = await student(stack, platform_id, ben).call(
        "PUT", f"/checkins/{c['id']}/response", {"emotion": "sad"}
    )
    assert status == 201
    _, after = await t.call("GET", f"/checkins/{c['id']}")
    assert [s["subject"] for s in after["not_answered"]] == [ada, cleo]
    assert [r["subject"] for r in after["responses"]] == [ben]

    # Once the LMS has listed the course (NRPS), its list is the roster: a learner who only
    # launched is no longer counted as missing.
    dana = f"dana-{run}"
    await roster(stack, course, {dana: "Dana D"}, nrps=True)
    _, listed = await t.call("GET", f"/checkins/{c['id']}")
    assert listed["not_answered"] == [{"subject": dana, "name": "Dana D"}]


async def test_anonymous_checkins_never_say_who_has_not_answered(
    stack: LtiStack, course: Client
) -> None:
    run = uuid.uuid4().hex[:6]
    subjects = [f"kid-{run}-{i}" for i in range(3)]
    platform_id, context_id = await roster(stack, course, dict.fromkeys(subjects, "Kid"))
    t = teacher(stack, platform_id)
    _, c = await t.call("POST", "/checkins", {"question": "Anonymous", "anonymous": True})
    await student(stack, platform_id, subjects[0]).call(
        "PUT", f"/checkins/{c['id']}/response", {"emotion": "happy"}
    )
    status, body = await t.call("GET", f"/checkins/{c['id']}")
    assert status == 200
    assert "not_answered" not in body and "responses" not in body
    # The query itself refuses an anonymous check-in, whatever asks it.
    async with stack.pool.acquire() as conn:
        assert await queries.not_answered(conn, Course(platform_id, context_id), c["id"]) == []


async def test_per_student_view_covers_identified_checkins_only(
    stack: LtiStack, course: Client
) -> None:
    run = uuid.uuid4().hex[:6]
    ada, ben = f"ada-{run}", f"ben-{run}"
    platform_id, _ = await roster(stack, course, {ada: "Ada A", ben: "Ben B"})
    t = teacher(stack, platform_id)
    _, first = await t.call("POST", "/checkins", {"question": "Monday"})
    _, hidden = await t.call("POST", "/checkins", {"question": "Secret", "anonymous": True})
    _, second = await t.call("POST", "/checkins", {"question": "Tuesday"})
    for subject, answers in ((ada, ("sad", "happy", "calm")), (ben, (None, "tired", "proud"))):
        s = student(stack, platform_id, subject)
        for checkin, emotion in zip((first, hidden, second), answers, strict=True):
            if emotion is not None:
                status, _ = await s.call(
                    "PUT", f"/checkins/{checkin['id']}/response", {"emotion": emotion}
                )
                assert status == 201

    status, body = await t.call("GET", "/students")
    assert status == 200
    assert [c["id"] for c in body["checkins"]] == [first["id"], second["id"]]
    assert hidden["id"] not in {c["id"] for c in body["checkins"]}
    by_name = {s["name"]: s["answers"] for s in body["students"]}
    assert by_name == {
        "Ada A": [{"emotion": "sad", "pleasantness": 2}, {"emotion": "calm", "pleasantness": 3}],
        "Ben B": [None, {"emotion": "proud", "pleasantness": 5}],
    }
    # Nothing of the anonymous check-in's answers ("happy", "tired") shows anywhere.
    assert "happy" not in str(body) and "tired" not in str(body)

    # The query re-checks anonymity: the anonymous check-in's id yields no answer.
    async with stack.pool.acquire() as conn:
        _, answers = await queries.students_answers(
            conn, Course(platform_id, "course-1"), [hidden["id"]]
        )
    assert answers == []

    # Teachers only.
    status, refused = await student(stack, platform_id, ada).call("GET", "/students")
    assert status == 403 and refused["error"]["code"] == "teacher_only"
