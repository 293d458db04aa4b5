"""Data rights end to end: course and own exports (CSV, JSON) without anonymous identities,
erasure of a user and of a course, the retention purge, and the audit of each."""

from __future__ import annotations

import argparse
import csv
import io
import json
import uuid
from typing import Any

import asyncpg
import pytest

from services.checkins import rights
from services.checkins.cli import run_erase
from services.checkins.privacy import Pseudonyms
from shared.signing import parse_secrets
from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import Api, course, launch_token, learners_in_roster, minted
from tests.lti_support import LtiStack, browser

pytestmark = pytest.mark.integration

__all__ = ["course"]  # a fixture shared with the check-in tests


async def fetch(api: Api, path: str) -> tuple[int, str, Any]:
    async with browser() as b:
        resp = await b.get(
            f"{api.base}/api/checkins{path}", headers={"Authorization": f"Bearer {api.token}"}
        )
        return resp.status, await resp.text(), resp.headers


async def classroom(
    stack: LtiStack, canvas: FakePlatform, client: Client, n: int
) -> tuple[Api, int, list[Student]]:
    """A teacher and ``n`` students of the course (launch tokens as the launch service signs
    them)."""
    platform_id = await stack.pool.fetchval(
        "SELECT id FROM platforms WHERE client_id = $1", client.client_id
    )
    settings = stack.settings["us-east-1"]
    teacher = Api(stack.url, minted(settings, platform_id=platform_id, roles=("instructor",)))
    students = []
    for i in range(n):
        subject = f"kid-{uuid.uuid4().hex[:6]}-{i}"
        students.append(
            Student(stack.url, minted(settings, platform_id=platform_id, subject=subject), subject)
        )
    return teacher, platform_id, students


class Student(Api):
    def __init__(self, base: str, token: str, subject: str) -> None:
        super().__init__(base, token)
        self.subject = subject


async def setup_course(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> tuple[Api, Api, Api, int, int]:
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    alice = Api(stack.url, await launch_token(stack.url, canvas, course, "s-alice"))
    bob = Api(stack.url, await launch_token(stack.url, canvas, course, "s-bob"))
    _, named = await teacher.call("POST", "/checkins", {"question": "Named?", "allow_note": True})
    _, anon = await teacher.call(
        "POST", "/checkins", {"question": "Anon?", "anonymous": True, "allow_note": True}
    )
    for who, word, note in ((alice, "calm", "=HYPERLINK(1)"), (bob, "tired", None)):
        status, _ = await who.call(
            "PUT", f"/checkins/{named['id']}/response", {"emotion": word, "note": note}
        )
        assert status == 201
        status, _ = await who.call(
            "PUT", f"/checkins/{anon['id']}/response", {"emotion": word, "note": f"n-{word}"}
        )
        assert status == 201
    return teacher, alice, bob, named["id"], anon["id"]


async def test_exports_and_their_audit(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool
) -> None:
    teacher, alice, _, named, anon = await setup_course(stack, canvas, course)
    status, body, headers = await fetch(teacher, "/export?format=json")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert "attachment" in headers["Content-Disposition"]
    rows = json.loads(body)["rows"]
    # Two anonymous answers are fewer than a group (ATTUNE_CHECKIN_MIN_CLASS_SIZE): not there.
    assert len(rows) == 2 and {r["checkin_id"] for r in rows} == {named}
    assert {r["subject"] for r in rows} == {"s-alice", "s-bob"}
    assert all(r["answered_at"] and r["count"] == 1 for r in rows)
    assert "p1:" not in body and "n-calm" not in body  # no pseudonym, no anonymous note

    status, body, headers = await fetch(teacher, "/export?format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(body)))
    assert len(table) == 2 and "p1:" not in body
    assert {r["note"] for r in table if r["subject"] == "s-alice"} == {"'=HYPERLINK(1)"}

    status, body, _ = await fetch(alice, "/history/export?format=json")
    assert status == 200
    mine = json.loads(body)["rows"]
    assert {(r["checkin_id"], r["emotion"]) for r in mine} == {(named, "calm"), (anon, "calm")}
    status, body, _ = await fetch(alice, "/history/export?format=csv")
    assert status == 200 and len(list(csv.DictReader(io.StringIO(body)))) == 2

    # Who may export what.
    status, body, _ = await fetch(alice, "/export")
    assert status == 403 and "teacher_only" in body
    status, body, _ = await fetch(teacher, "/history/export")
    assert status == 403 and "learner_only" in body
    status, body, _ = await fetch(teacher, "/export?format=xml")
    assert status == 400 and "format_invalid" in body

    audit = await pool.fetch(
        "SELECT action, actor, subject, details FROM checkin_audit"
        " WHERE platform_id = (SELECT max(id) FROM platforms) ORDER BY id"
    )
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("export.course", "t-1"),
        ("export.course", "t-1"),
        ("export.own", "s-alice"),
        ("export.own", "s-alice"),
    ]
    assert json.loads(audit[0]["details"]) == {"format": "json", "answers": 2}


async def test_export_of_an_anonymous_checkin_is_its_released_groups(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool
) -> None:
    """One row per emotion with its count and one row per note with no emotion, from the
    released results: exporting again after one more answer shows the same rows."""
    teacher, platform_id, students = await classroom(stack, canvas, course, 6)
    _, anon = await teacher.call(
        "POST", "/checkins", {"question": "Anon?", "anonymous": True, "allow_note": True}
    )
    answers = [("calm", "zebra"), ("calm", None), ("sad", "apple"), ("happy", None),
               ("calm", "mango")]  # fmt: skip
    for student, (word, note) in zip(students, answers, strict=False):
        body = {"emotion": word, **({"note": note} if note else {})}
        assert (await student.call("PUT", f"/checkins/{anon['id']}/response", body))[0] == 201

    status, body, _ = await fetch(teacher, "/export?format=json")
    assert status == 200
    rows = [r for r in json.loads(body)["rows"] if r["checkin_id"] == anon["id"]]
    assert [(r["emotion"], r["pleasantness"], r["note"], r["count"]) for r in rows] == [
        ("calm", 3, None, 3),
        ("happy", 5, None, 1),
        ("sad", 2, None, 1),
        (None, None, "apple", None),
        (None, None, "mango", None),
        (None, None, "zebra", None),
    ]
    assert all(r["subject"] is None and r["answered_at"] is None for r in rows)
    _, body, _ = await fetch(teacher, "/export?format=csv")
    table = [r for r in csv.DictReader(io.StringIO(body)) if r["checkin_id"] == str(anon["id"])]
    assert [(r["emotion"], r["note"], r["count"]) for r in table][:2] == [
        ("calm", "", "3"),
        ("happy", "", "1"),
    ]

    # One more answer (with a note) is not a group: the export does not move.
    await students[5].call(
        "PUT", f"/checkins/{anon['id']}/response", {"emotion": "sad", "note": "kiwi"}
    )
    _, again, _ = await fetch(teacher, "/export?format=json")
    assert [r for r in json.loads(again)["rows"] if r["checkin_id"] == anon["id"]] == rows

    # Erasing a student takes their note out of the released results; the counts stay.
    settings = stack.settings["us-east-1"]
    pseudonyms = Pseudonyms(parse_secrets(settings.secret_keys))
    counts = await rights.erase_subject(pool, pseudonyms, platform_id, students[0].subject)
    assert counts["anonymous_answers"] == 1
    _, after, _ = await fetch(teacher, "/export?format=json")
    notes = [r["note"] for r in json.loads(after)["rows"] if r["checkin_id"] == anon["id"]]
    assert [n for n in notes if n] == ["apple", "mango"]


async def test_csv_cells_that_a_spreadsheet_reads_as_formulas_are_defused(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool
) -> None:
    """OWASP CSV injection: = + - @ and also TAB and CR start a formula in some spreadsheets
    (names come from the LMS unchecked; notes and questions are trimmed)."""
    teacher, platform_id, students = await classroom(stack, canvas, course, 6)
    _, named = await teacher.call("POST", "/checkins", {"question": "Named?"})
    starts = ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1+1", "\r=1+1"]
    for student, start in zip(students, starts, strict=True):
        await pool.execute(
            "INSERT INTO course_roster (platform_id, context_id, subject, name, role_kinds,"
            " last_seen) VALUES ($1, 'course-1', $2, $3, '{learner}', now())",
            platform_id,
            student.subject,
            start,
        )
        await student.call("PUT", f"/checkins/{named['id']}/response", {"emotion": "calm"})
    status, body, _ = await fetch(teacher, "/export?format=csv")
    assert status == 200
    names = {r["name"] for r in csv.DictReader(io.StringIO(body, newline=""))}
    assert names == {"'" + s for s in starts}


async def test_erase_a_user_and_a_course(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool, infra: Infra
) -> None:
    teacher, _, bob, named, anon = await setup_course(stack, canvas, course)
    platform_id = await pool.fetchval("SELECT max(id) FROM platforms")
    await learners_in_roster(pool, 2)
    settings = infra.settings()
    pseudonyms = Pseudonyms(parse_secrets(settings.secret_keys))
    counts = await rights.erase_subject(pool, pseudonyms, platform_id, "s-alice")
    assert counts["identified_answers"] == 1 and counts["anonymous_answers"] == 1
    assert counts["roster_rows"] == 1
    left = await pool.fetch(
        "SELECT checkin_id, respondent FROM checkin_responses WHERE checkin_id = any($1)",
        [named, anon],
    )
    assert len(left) == 2 and "s-alice" not in {r["respondent"] for r in left}
    assert not await pool.fetchval(
        "SELECT count(*) FROM course_roster WHERE platform_id = $1 AND subject = 's-alice'",
        platform_id,
    )
    # Bob still sees his anonymous answer.
    status, shown = await bob.call("GET", f"/checkins/{anon}")
    assert status == 200 and shown["my_answer"]["emotion"] == "tired"
    row = await pool.fetchrow(
        "SELECT subject, details FROM checkin_audit WHERE action = 'erase.subject'"
        " AND platform_id = $1",
        platform_id,
    )
    assert row["subject"] is None
    details = json.loads(row["details"])
    assert details["subject_sha256"] == rights.subject_digest("s-alice")
    assert "s-alice" not in row["details"]

    # The teacher's check-ins stay with the course when the teacher is erased (via the CLI).
    args = argparse.Namespace(platform_id=platform_id, subject="t-1", context_id=None)
    assert await run_erase(args, settings) == 0
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM checkins WHERE platform_id = $1 AND created_by = 'erased'",
            platform_id,
        )
        == 2
    )

    args = argparse.Namespace(platform_id=platform_id, subject=None, context_id="course-1")
    assert await run_erase(args, settings) == 0
    assert not await pool.fetchval(
        "SELECT count(*) FROM checkins WHERE platform_id = $1", platform_id
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM course_roster WHERE platform_id = $1", platform_id
    )
    details = json.loads(
        await pool.fetchval(
            "SELECT details FROM checkin_audit WHERE action = 'erase.course' AND platform_id = $1",
            platform_id,
        )
    )
    assert details == {"checkins": 2, "answers": 2, "roster_rows": 1}
    status, listing = await teacher.call("GET", "/checkins")
    assert status == 200 and listing["checkins"] == []


async def test_retention_purges_old_checkins(pool: asyncpg.Pool) -> None:
    old, recent = await pool.fetch(
        """
        INSERT INTO checkins (platform_id, context_id, question, opens_at, closes_at, created_by)
        VALUES (990001, 'c', 'old', now() - interval '60 days', now() - interval '40 days', 't'),
               (990001, 'c', 'recent', now() - interval '20 days', now() - interval '10 days', 't')
        RETURNING id
        """
    )
    for cid in (old["id"], recent["id"]):
        await pool.execute(
            "INSERT INTO checkin_responses (checkin_id, respondent, emotion, pleasantness)"
            " VALUES ($1, 's', 'calm', 4)",
            cid,
        )
    counts = await rights.purge_expired(pool, 30)
    assert counts["checkins"] >= 1 and counts["answers"] >= 1
    remaining = {
        r["question"]
        for r in await pool.fetch("SELECT question FROM checkins WHERE platform_id = 990001")
    }
    assert remaining == {"recent"}
    assert (
        await pool.fetchval("SELECT count(*) FROM checkin_audit WHERE action = 'retention.purge'")
        >= 1
    )
    assert (await rights.purge_expired(pool, 30))["checkins"] == 0
