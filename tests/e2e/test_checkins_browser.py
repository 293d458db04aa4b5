"""The check-in product in a real headless Chromium, the tool in a cross-site iframe of a fake
LMS page with third-party cookies blocked: a teacher creates a check-in, two students answer,
the teacher sees the distribution and participation; an anonymous check-in's results appear in
groups."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.experience import answer as answer_in
from tests.e2e.experience import face_of, launch_url
from tests.e2e.waits import signed_in
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import INSTRUCTOR, LEARNER, Api, learners_in_roster, minted
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration


def course_page(stack: LtiStack, canvas: FakePlatform, client: Client, sub: str, role: str) -> None:
    canvas.set_course_page(launch_url(stack, canvas, client, sub, role), tool_origin=stack.url)


async def course_tab(
    context: Any,
    stack: LtiStack,
    canvas: FakePlatform,
    client: Client,
    sub: str,
    role: str,
    *,
    narrow: bool = False,
) -> Any:
    """A new tab on the fake LMS's course page as ``sub``, once the tool in it is signed in."""
    course_page(stack, canvas, client, sub, role)
    page = await context.new_page()
    if narrow:
        await page.set_viewport_size({"width": 420, "height": 900})  # a narrow LMS column
    await page.goto(f"{canvas.base_url}/lms/course")
    await signed_in(page, "teacher" if role == INSTRUCTOR else "student", shot=f"checkins-{sub}")
    return page


@asynccontextmanager
async def teacher_in_course(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any]
) -> AsyncIterator[tuple[Any, Client, Any]]:
    """A registered course and, third-party cookies blocked, the browser context and the
    teacher's tab (a narrow LMS column) on its page, signed in."""
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    ARTIFACTS.mkdir(exist_ok=True)
    async with chromium_context("third_party_blocked") as context:
        teacher = await course_tab(
            context, stack, canvas, client, "teacher-1", INSTRUCTOR, narrow=True
        )
        yield context, client, teacher


async def test_teacher_creates_students_answer_teacher_sees_results(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    async with teacher_in_course(stack, canvas, chromium_context) as (context, client, teacher):
        t = teacher.frame_locator("#tool")
        await t.get_by_label("Question").fill("How do you feel about the exam?")
        await t.get_by_label("Let students add a note").check()
        await t.get_by_role("button", name="Create check-in").click()
        await t.locator("#teacher-list li h3").filter(has_text="the exam").wait_for()
        await teacher.screenshot(path=str(ARTIFACTS / "checkins-teacher-created.png"))

        for sub, word in (("student-a", "nervous"), ("student-b", "excited")):
            page = await course_tab(context, stack, canvas, client, sub, LEARNER)
            s = page.frame_locator("#tool")
            card = s.get_by_role("article", name="How do you feel about the exam?")
            await answer_in(card, word, note=f"note from {sub}")
            await s.locator("#student-history li").filter(has_text=word.capitalize()).wait_for()
            await page.screenshot(path=str(ARTIFACTS / f"checkins-{sub}-answered.png"))
            await page.close()

        await learners_in_roster(stack.pool, 2)
        await t.get_by_role("button", name="View results").click()
        await (
            t.locator("#results-participation")
            .filter(has_text="2 of 2 students answered")
            .wait_for()
        )
        chart = t.get_by_role("table", name="Pleasantness")
        rows = await chart.locator("tbody tr").all_inner_texts()
        assert [r.split() for r in rows][1] == ["Unpleasant", "1"]
        assert [r.split() for r in rows][4] == ["Very", "pleasant", "1"]
        who = t.locator("#results-who")
        await who.filter(has_text="Person student-a").wait_for()
        assert "note from student-b" in await who.inner_text()
        await t.get_by_role("button", name="Insights").click()
        await t.get_by_role("table", name="Pleasantness over time").wait_for()
        await teacher.screenshot(
            path=str(ARTIFACTS / "checkins-teacher-results.png"), full_page=True
        )


async def test_anonymous_results_appear_in_groups_and_say_how_many_more(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    """The teacher's page of an anonymous check-in shows only how many answered until a group
    of ATTUNE_CHECKIN_MIN_CLASS_SIZE (5) answers is in, says how many more are needed, and
    updates by itself (the 4 s poll) when the group completes; the student's page says what
    the teacher sees."""
    async with teacher_in_course(stack, canvas, chromium_context) as (context, client, teacher):
        t = teacher.frame_locator("#tool")
        await t.get_by_label("Question").fill("Anonymous pulse")
        anonymous = t.get_by_role("checkbox", name="Anonymous")
        label = await t.locator("label").filter(has=anonymous).inner_text()
        assert "shows no one, you included, who answered what" in label
        assert "groups of at least 5 answers" in label
        await anonymous.check()
        await t.get_by_label("Let students add a note").check()
        await t.get_by_role("button", name="Create check-in").click()
        await t.locator("#teacher-list li h3").filter(has_text="Anonymous pulse").wait_for()
        checkin_id = await stack.pool.fetchval(
            "SELECT id FROM checkins WHERE question = 'Anonymous pulse'"
        )
        platform_id = await stack.pool.fetchval(
            "SELECT id FROM platforms WHERE client_id = $1", client.client_id
        )
        settings = stack.settings["us-east-1"]
        students = {  # the others answer through the API: faster
            i: Api(stack.url, minted(settings, platform_id=platform_id, subject=f"anon-kid-{i}"))
            for i in range(1, 6)
        }

        async def answer(i: int, word: str) -> None:
            body = {"emotion": word, "note": f"note {i}"}
            status, _ = await students[i].call("PUT", f"/checkins/{checkin_id}/response", body)
            assert status == 201

        # The first student answers in the browser: the page's promise and the note's hint.
        page = await course_tab(context, stack, canvas, client, "anon-kid-browser", LEARNER)
        s = page.frame_locator("#tool")
        card = s.get_by_role("article", name="Anonymous pulse")
        await card.filter(has_text="never yours alone or with your name").wait_for()
        assert "results of at least 5 answers together" in await card.inner_text()
        await card.get_by_role("button", name=face_of("calm"), exact=True).click()
        note = card.get_by_label("Anything to add?")
        hint = await note.evaluate(
            "n => n.getAttribute('aria-describedby').split(' ')"
            ".map(id => document.getElementById(id).textContent).join(' ')"
        )
        assert "reads notes without names" in hint
        assert "sees your feeling only in results of at least 5 answers" in await card.inner_text()
        await card.get_by_role("button", name="Back to the faces").click()
        await answer_in(card, "calm", note="note 0")
        await card.filter(
            has_text="The class picture appears once 5 students have answered"
        ).wait_for()
        await page.close()
        item = t.locator(f"#teacher-list li[data-checkin='{checkin_id}']")
        await item.get_by_role("button", name="View results").click()
        state = t.locator("#results-state")
        await state.filter(has_text="Results appear once 5 students have answered").wait_for()
        await state.filter(has_text="4 more to go").wait_for()
        assert await t.locator("#results table.chart").count() == 0
        assert "note 0" not in await t.locator("#results").inner_text()

        for i, word in enumerate(("happy", "sad", "calm", "proud"), start=1):
            await answer(i, word)
        await state.filter(has_text="These results cover 5 answers").wait_for(timeout=30_000)
        await state.filter(has_text="when 5 more students answer").wait_for()
        chart = t.get_by_role("table", name="Pleasantness")
        rows = [r.split() for r in await chart.locator("tbody tr").all_inner_texts()]
        assert rows[2] == ["Neutral", "2"] and rows[4] == ["Very", "pleasant", "2"]
        notes = t.get_by_role("heading", name="Notes, in alphabetical order")
        await notes.wait_for()
        assert "note 4" in await t.locator("#results").inner_text()

        # A sixth answer, then the check-in closes: it is never shown (it would stand alone).
        await answer(5, "devastated")
        await item.get_by_role("button", name="Close now").click()
        await state.filter(has_text="These results cover 5 answers.").wait_for(timeout=30_000)
        await t.locator("#results").filter(has_text="Answers not included: 1.").wait_for()
        assert "note 5" not in await t.locator("#results").inner_text()
        await teacher.screenshot(
            path=str(ARTIFACTS / "checkins-teacher-anonymous-results.png"), full_page=True
        )
