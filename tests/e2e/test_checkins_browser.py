"""The check-in product in a real headless Chromium, the tool in a cross-site iframe of a fake
LMS page with third-party cookies blocked: a teacher creates a check-in, two students answer,
the teacher sees the distribution and participation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.waits import signed_in
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import INSTRUCTOR, LEARNER, learners_in_roster
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration


def course_page(stack: LtiStack, canvas: FakePlatform, client: Client, sub: str, role: str) -> None:
    login_url = f"{stack.url}/lti/login?" + urlencode(
        {
            "iss": canvas.issuer,
            "login_hint": sub,
            "client_id": client.client_id,
            "target_link_uri": f"{stack.url}/app",
            "lti_deployment_id": client.deployment_id,
            "lti_message_hint": json.dumps({"roles": [role]}),
            "canvas_environment": "prod",
            "canvas_region": "us-east-1",
            "lti_storage_target": "_parent",
        }
    )
    canvas.set_course_page(login_url, tool_origin=stack.url)


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

        for sub, word in (("student-a", "Nervous"), ("student-b", "Excited")):
            page = await course_tab(context, stack, canvas, client, sub, LEARNER)
            s = page.frame_locator("#tool")
            card = s.get_by_role("article", name="How do you feel about the exam?")
            await card.get_by_role("radio", name=word).check()
            await card.get_by_label("Anything to add?").fill(f"note from {sub}")
            await card.get_by_role("button", name="Send my answer").click()
            await s.get_by_text("Thanks, your answer was saved").wait_for()
            await s.locator("#student-history li").filter(has_text=word).wait_for()
            await page.screenshot(path=str(ARTIFACTS / f"checkins-{sub}-answered.png"))
            await page.close()

        await learners_in_roster(stack.pool, 2)
        await t.get_by_role("button", name="View results").click()
        await (
            t.locator("#results-participation")
            .filter(has_text="2 of 2 students answered")
            .wait_for()
        )
        chart = t.locator("#results svg[role=img]").first
        label = await chart.get_attribute("aria-label")
        assert label is not None and "Unpleasant 1" in label and "Very pleasant 1" in label
        who = t.locator("#results-who")
        await who.filter(has_text="Person student-a").wait_for()
        assert "note from student-b" in await who.inner_text()
        await t.locator("#insights-body figure").first.wait_for()
        await teacher.screenshot(
            path=str(ARTIFACTS / "checkins-teacher-results.png"), full_page=True
        )
