"""Anonymous check-ins hold against the teacher (and against curious classmates): the attacks
of issue #15 run against the real gateway, services and Postgres.

The main test is the side-by-side polling attack: an anonymous and an identified check-in in
the same course, students answering both one by one, and after every answer the teacher polls
everything a teacher can read (the list, both check-ins' results, the export, the insights)
while a student who answered first polls the class pictures. An attacker then pairs each
change of anything anonymous with the student who just appeared (or changed) in the
identified check-in. Nothing may be attributable to one student.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import asyncpg
import pytest

from services.checkins import queries
from services.checkins.emotions import FULL, PLEASANTNESS
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import Api, course, minted, open_checkin_row
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration

__all__ = ["course"]  # a fixture shared with the check-in tests

GROUP = 5  # ATTUNE_CHECKIN_MIN_CLASS_SIZE's default, the stack's setting


@dataclass
class Classroom:
    teacher: Api
    students: list[Api]
    subjects: list[str]


async def classroom(stack: LtiStack, canvas: FakePlatform, client: Client, n: int) -> Classroom:
    platform_id = await stack.pool.fetchval(
        "SELECT id FROM platforms WHERE client_id = $1", client.client_id
    )
    settings = stack.settings["us-east-1"]
    run = uuid.uuid4().hex[:6]
    subjects = [f"kid-{run}-{i:02d}" for i in range(n)]
    teacher = Api(
        stack.url,
        minted(settings, platform_id=platform_id, subject=f"t-{run}", roles=("instructor",)),
    )
    students = [
        Api(stack.url, minted(settings, platform_id=platform_id, subject=s)) for s in subjects
    ]
    return Classroom(teacher, students, subjects)


def word(i: int) -> str:
    """Student i's feeling: every run of GROUP consecutive students covers all five bands with
    different words, so no group of answers is uniform (see docs/checkins.md: a group whose
    answers are all the same says what each of its members chose)."""
    return FULL[i % 5 + 1][i // 5]


def bag(values: Any) -> Counter[Any]:
    return Counter(values)


def pleasantness_bag(counts: list[int] | None) -> Counter[int]:
    return Counter({band + 1: n for band, n in enumerate(counts or []) if n})


@dataclass
class Seen:
    """What the teacher (and one curious student) could read after one step."""

    actor: str | None
    identified: dict[str, str]  # subject -> emotion, from the identified check-in's results
    sources: dict[str, Counter[Any]]
    trend: tuple[int, float]  # anonymous answers and their pleasantness sum, from insights
    participation: int
    list_item: dict[str, Any]


@dataclass
class Attacker:
    """Pairs each change of an anonymous output with who acted in the identified check-in
    since the outputs last changed: when everything the change adds is the same answer (one
    answer, or a group all alike), that is the answer of each of them."""

    claims: list[tuple[str, str, Any]] = field(default_factory=list)
    window: set[str] = field(default_factory=set)  # who acted since anything last changed

    def observe(self, before: Seen, after: Seen) -> None:
        assert after.actor is not None
        self.window.add(after.actor)
        changed = False
        for name, now in after.sources.items():
            added = now - before.sources[name]
            if not added and not before.sources[name] - now:
                continue
            changed = True
            if len(added) == 1 and sum(added.values()) >= len(self.window):
                self.claims += [(name, a, next(iter(added))) for a in sorted(self.window)]
        (n0, s0), (n1, s1) = before.trend, after.trend
        if n1 != n0 or round(s1 - s0) != 0:  # averages come rounded to 0.01
            changed = True
            grown, total = n1 - n0, round(s1 - s0)
            if len(self.window) == 1 and grown <= 1:
                self.claims.append(("insights", after.actor, total))  # the answer, or its move
            elif grown >= len(self.window) and total in (grown, 5 * grown):
                self.claims += [("insights", a, total // grown) for a in sorted(self.window)]
        if changed:
            self.window = set()


async def look(room: Classroom, named: int, anon: int, curious: Api, actor: str | None) -> Seen:
    teacher = room.teacher
    status, listed = await teacher.call("GET", "/checkins")
    assert status == 200
    item = next(c for c in listed["checkins"] if c["id"] == anon)
    participation = item.pop("participation")["answered"]
    for changing in ("status", "closed_early_at"):
        item.pop(changing)

    _, named_view = await teacher.call("GET", f"/checkins/{named}")
    identified = {r["subject"]: r["emotion"] for r in named_view["responses"]}
    _, anon_view = await teacher.call("GET", f"/checkins/{anon}")
    assert anon_view["participation"]["answered"] == participation
    distribution = anon_view.get("distribution") or {}

    _, exported = await teacher.call("GET", "/export?format=json")
    anon_rows = [r for r in exported["rows"] if r["checkin_id"] == anon]
    export_answers: Counter[Any] = Counter()
    export_notes: Counter[Any] = Counter()
    for r in anon_rows:
        if r["emotion"] is not None:
            export_answers[(r["emotion"], r["pleasantness"])] += int(r.get("count") or 1)
        if r["note"]:
            export_notes[r["note"]] += 1

    _, insights = await teacher.call("GET", "/insights")
    known = [PLEASANTNESS[e] for e in identified.values()]
    total = sum(p["answers"] for p in insights["trend"])
    weighted = sum(p["answers"] * p["average"] for p in insights["trend"])
    trend = (total - len(known), weighted - sum(known))

    _, history = await curious.call("GET", "/history")
    pictures = {h["id"]: (h["class"] or {}).get("pleasantness") for h in history["history"]}

    return Seen(
        actor=actor,
        identified=identified,
        sources={
            "emotions": bag(
                e["emotion"] for e in distribution.get("emotions", []) for _ in range(e["count"])
            ),
            "bands": pleasantness_bag(distribution.get("pleasantness")),
            "notes": bag(anon_view.get("notes") or []),
            "export": export_answers,
            "export notes": export_notes,
            "class picture (anonymous)": pleasantness_bag(pictures.get(anon)),
            "class picture (identified)": pleasantness_bag(pictures.get(named)),
        },
        trend=trend,
        participation=participation,
        list_item=item,
    )


async def test_polling_side_by_side_links_no_anonymous_answer_to_a_student(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    room = await classroom(stack, canvas, course, 12)
    _, named = await room.teacher.call("POST", "/checkins", {"question": "Named: how are you?"})
    _, anon = await room.teacher.call(
        "POST",
        "/checkins",
        {"question": "Anonymous: how are you?", "anonymous": True, "allow_note": True},
    )
    curious = room.students[0]
    notes: dict[str, str] = {}
    seen = [await look(room, named["id"], anon["id"], curious, None)]
    attacker = Attacker()

    async def step(i: int, emotion: str, actor: str) -> None:
        student = room.students[i]
        for cid, body in ((named["id"], {"emotion": emotion}), (anon["id"], {"emotion": emotion})):
            if cid == anon["id"] and i % 3 == 0:
                notes[actor] = body["note"] = f"thought {uuid.uuid4().hex[:6]}"
            status, _ = await student.call("PUT", f"/checkins/{cid}/response", body)
            assert status in (200, 201)
        seen.append(await look(room, named["id"], anon["id"], curious, actor))
        attacker.observe(seen[-2], seen[-1])

    for i, subject in enumerate(room.subjects):
        await step(i, word(i), subject)
        # Whether a student answered is not hidden (docs/checkins.md): the count is exact.
        assert seen[-1].participation == i + 1
    # A student changes both answers; then the teacher closes both check-ins.
    await step(2, "fantastic", room.subjects[2])
    for cid in (named["id"], anon["id"]):
        assert (await room.teacher.call("POST", f"/checkins/{cid}/close"))[0] == 200
    seen.append(await look(room, named["id"], anon["id"], curious, "(closed)"))
    attacker.observe(seen[-2], seen[-1])

    assert attacker.claims == [], f"anonymous answers attributed: {attacker.claims}"
    # Nothing anonymous moves except with a whole new group of answers; the list item never.
    for before, after in pairwise(seen):
        assert after.list_item == before.list_item
        moved = [n for n, now in after.sources.items() if now != before.sources[n]]
        grown = sum((after.sources["emotions"] - before.sources["emotions"]).values())
        assert not moved or grown >= GROUP, (after.actor, moved, grown)
    # The attack did see results: two groups of five, the last two answers and the change not
    # (they never make a group of five).
    final = seen[-1]
    assert sum(final.sources["emotions"].values()) == 10
    exported = Counter({e: n for (e, _), n in final.sources["export"].items()})
    assert final.sources["emotions"] == exported and final.trend[0] == 10
    assert final.sources["emotions"] == bag(word(i) for i in range(10))
    assert final.sources["notes"] == bag(n for s, n in notes.items() if s in room.subjects[:10])


async def test_below_the_group_size_only_participation_shows(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    room = await classroom(stack, canvas, course, GROUP - 1)
    _, anon = await room.teacher.call(
        "POST", "/checkins", {"question": "Q", "anonymous": True, "allow_note": True}
    )
    cid = anon["id"]
    for i, student in enumerate(room.students):
        status, _ = await student.call(
            "PUT", f"/checkins/{cid}/response", {"emotion": word(i), "note": f"note {i}"}
        )
        assert status == 201
    _, view = await room.teacher.call("GET", f"/checkins/{cid}")
    assert view["participation"]["answered"] == GROUP - 1
    assert view["distribution"] is None and view["notes"] == []
    assert view["results"] == {"answers": 0, "group_size": GROUP, "next_in": 1, "not_shown": 4}
    _, exported = await room.teacher.call("GET", "/export?format=json")
    assert [r for r in exported["rows"] if r["checkin_id"] == cid] == []
    _, insights = await room.teacher.call("GET", "/insights")
    assert insights["trend"] == []
    for student in room.students:
        _, mine = await student.call("GET", f"/checkins/{cid}")
        assert mine["my_answer"] is not None and mine["class"] is None


async def test_results_change_only_in_groups(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    """The first group of GROUP answers shows; a changed answer and the next GROUP - 1 answers
    do not; the GROUP-th new answer shows them all at once; closing shows nothing new."""
    room = await classroom(stack, canvas, course, 2 * GROUP + 2)
    _, anon = await room.teacher.call(
        "POST", "/checkins", {"question": "Q", "anonymous": True, "allow_note": True}
    )
    cid = anon["id"]

    async def answer(i: int, emotion: str, note: str | None = None) -> None:
        body = {"emotion": emotion, **({"note": note} if note else {})}
        status, _ = await room.students[i].call("PUT", f"/checkins/{cid}/response", body)
        assert status in (200, 201)

    async def results() -> dict[str, Any]:
        _, view = await room.teacher.call("GET", f"/checkins/{cid}")
        return view

    for i in range(GROUP):
        await answer(i, "calm", "first" if i == 0 else None)
    first = await results()
    assert first["distribution"]["pleasantness"] == [0, 0, GROUP, 0, 0]
    assert first["distribution"]["emotions"] == [
        {"emotion": "calm", "pleasantness": 3, "count": GROUP}
    ]
    assert first["notes"] == ["first"]

    await answer(0, "happy", "changed")  # a change is not a new answer: nothing shows
    changed = await results()
    assert (changed["distribution"], changed["notes"]) == (first["distribution"], ["first"])
    assert (
        first["results"]
        == changed["results"]
        == {
            "answers": GROUP,
            "group_size": GROUP,
            "next_in": GROUP,
            "not_shown": 0,
        }
    )
    for i in range(GROUP, 2 * GROUP - 1):
        await answer(i, "sad")
        view = await results()
        assert (view["distribution"], view["notes"]) == (first["distribution"], ["first"])
        assert view["results"]["next_in"] == 2 * GROUP - i - 1
        assert view["results"]["not_shown"] == i - GROUP + 1
    await answer(2 * GROUP - 1, "sad")
    second = await results()
    assert second["distribution"]["pleasantness"] == [0, GROUP, GROUP - 1, 0, 1]
    assert second["notes"] == ["changed"]
    assert second["results"]["answers"] == 2 * GROUP

    await answer(2 * GROUP, "proud")
    assert (await results())["results"]["not_shown"] == 1
    assert (await room.teacher.call("POST", f"/checkins/{cid}/close"))[0] == 200
    closed = await results()
    assert closed["distribution"] == second["distribution"]
    assert closed["results"]["not_shown"] == 1  # never shown: it would stand alone
    # Students see the same groups.
    _, mine = await room.students[0].call("GET", f"/checkins/{cid}")
    assert mine["class"] == {"pleasantness": [0, GROUP, GROUP - 1, 0, 1], "total": 2 * GROUP}


async def test_student_class_picture_moves_in_groups_for_identified_checkins_too(
    stack: LtiStack, canvas: FakePlatform, course: Client
) -> None:
    """A student polling the class picture while classmates answer one by one learns no
    classmate's answer, even on an identified check-in (only the teacher sees those)."""
    room = await classroom(stack, canvas, course, GROUP + 2)
    _, named = await room.teacher.call("POST", "/checkins", {"question": "Q"})
    cid = named["id"]
    pictures = []
    for i, student in enumerate(room.students):
        await student.call("PUT", f"/checkins/{cid}/response", {"emotion": word(i)})
        _, mine = await room.students[0].call("GET", f"/checkins/{cid}")
        pictures.append(mine["class"])
    assert pictures[: GROUP - 1] == [None] * (GROUP - 1)
    shown = {"pleasantness": [1, 1, 1, 1, 1], "total": GROUP}
    assert pictures[GROUP - 1 :] == [shown, shown, shown]
    _, listed = await room.students[1].call("GET", "/checkins")
    assert listed["checkins"][0]["class"] == shown
    # The teacher of an identified check-in still sees every answer as it comes.
    _, view = await room.teacher.call("GET", f"/checkins/{cid}")
    assert len(view["responses"]) == GROUP + 2
    assert sum(view["distribution"]["pleasantness"]) == GROUP + 2


async def test_concurrent_readers_release_one_group(pool: asyncpg.Pool) -> None:
    """Releases happen on read: many readers at once release the group once, and a reader
    never releases fewer than GROUP answers more than the last release."""
    course, checkin_id = await open_checkin_row(pool, "release", anonymous=True)

    async def answer(n: int) -> None:
        await pool.execute(
            "INSERT INTO checkin_responses (checkin_id, respondent, emotion, pleasantness, note)"
            " SELECT $1, 'p1:' || $2 || '-' || i, 'calm', 3, 'n' || i"
            " FROM generate_series(1, $3) i",
            checkin_id,
            uuid.uuid4().hex,
            n,
        )

    async def read_all() -> list[Any]:
        async def one() -> Any:
            async with pool.acquire() as conn:
                return (await queries.released_results(conn, course, [checkin_id], GROUP)).get(
                    checkin_id
                )

        return list(await asyncio.gather(*(one() for _ in range(8))))

    await answer(GROUP - 1)
    assert await read_all() == [None] * 8
    await answer(1)
    first = await read_all()
    assert {r["answers"] for r in first} == {GROUP} and len({tuple(r["notes"]) for r in first}) == 1
    released_at = await pool.fetchval(
        "SELECT released_at FROM checkin_results WHERE checkin_id = $1", checkin_id
    )
    await answer(GROUP - 1)
    assert {r["answers"] for r in await read_all()} == {GROUP}
    assert released_at == await pool.fetchval(
        "SELECT released_at FROM checkin_results WHERE checkin_id = $1", checkin_id
    )
    await answer(1)
    assert {r["answers"] for r in await read_all()} == {2 * GROUP}
    # Another course's reader cannot release (or read) this check-in's results.
    other = queries.Course(course.platform_id, "another-course")
    async with pool.acquire() as conn:
        assert await queries.released_results(conn, other, [checkin_id], GROUP) == {}
