"""Teacher controls for recurrence and editing in a real headless Chromium, the tool in a
cross-site iframe of a fake LMS page with third-party cookies blocked: a teacher creates a weekly
check-in from the form, edits its question inline (a field error first, then a good value) and
the list and the database show both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_checkins_browser import teacher_in_course
from tests.fakes.platform import FakePlatform
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration


def is_list_poll(response: Any) -> bool:
    """The teacher list's poll (GET /api/checkins/checkins), answered."""
    request = response.request
    return bool(request.method == "GET" and urlsplit(response.url).path == "/api/checkins/checkins")


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


async def test_teacher_creates_weekly_checkin_and_edits_its_question(
    stack: LtiStack,
    canvas: FakePlatform,
    chromium_context: Callable[..., Any],
) -> None:
    async with teacher_in_course(stack, canvas, chromium_context) as (_, _, teacher):
        t = teacher.frame_locator("#tool")

        # Create: weekly on Monday and Thursday.
        await t.get_by_label("Question").fill("Weekly mood?")
        days = t.locator("#recurrence-days")
        assert await days.is_hidden()
        await t.get_by_role("radio", name="Every week on").check()
        await days.wait_for()
        for number, day in enumerate(WEEKDAYS, start=1):
            await days.get_by_role("checkbox", name=day).set_checked(number in (1, 4))
        await t.get_by_role("button", name="Create check-in").click()
        await t.locator("#teacher-list li h3").filter(has_text="Weekly mood?").first.wait_for()

        checkin_id = await stack.pool.fetchval(
            "SELECT min(id) FROM checkins WHERE question = 'Weekly mood?'"
        )
        assert checkin_id is not None
        item = t.locator(f"#teacher-list li[data-checkin='{checkin_id}']")
        await (
            item.locator(".badge.recurrence")
            .filter(has_text="Repeats: Every week on Monday and Thursday")
            .wait_for()
        )
        row = await stack.pool.fetchrow(
            "SELECT recurrence, recurrence_days, recurrence_tz FROM checkins WHERE id = $1",
            checkin_id,
        )
        assert row["recurrence"] == "weekly"
        assert list(row["recurrence_days"]) == [1, 4]
        assert row["recurrence_tz"]
        await teacher.screenshot(path=str(ARTIFACTS / "checkins-edit-created.png"))

        # Edit: the inline form is pre-filled and keyboard-reachable.
        await item.get_by_role("button", name="Edit").click()
        question = item.get_by_label("Question")
        assert await question.input_value() == "Weekly mood?"
        assert await question.evaluate("el => el === document.activeElement")
        assert await item.get_by_label("Let students add a note").is_checked() is False
        assert await item.get_by_label("Closes").input_value() != ""

        # A field-level error from the API (422 validation_failed) sits next to the field.
        await question.fill("   ")
        await item.get_by_role("button", name="Save changes").click()
        error = item.locator(f"#edit-{checkin_id}-question-error")
        await error.filter(has_text="Required.").wait_for()
        assert await question.get_attribute("aria-invalid") == "true"

        # The open form survives the list's poll: wait for a poll to be answered (and a second
        # one, so the first has certainly been drawn), then look at the field.
        await question.fill("How was this week?")
        for _ in range(2):
            async with teacher.expect_response(is_list_poll):
                pass
        assert await question.input_value() == "How was this week?"
        await teacher.screenshot(path=str(ARTIFACTS / "checkins-edit-form.png"))

        await question.press("Enter")  # submits the form from the keyboard
        await item.locator("h3").filter(has_text="How was this week?").wait_for()
        await t.locator("#status").filter(has_text="Check-in saved.").wait_for()
        assert await item.get_by_role("button", name="Edit").evaluate(
            "el => el === document.activeElement"
        )
        await item.locator(".badge.recurrence").filter(has_text="Monday and Thursday").wait_for()
        await teacher.screenshot(path=str(ARTIFACTS / "checkins-edit-saved.png"))

        row = await stack.pool.fetchrow(
            "SELECT question, recurrence, recurrence_days FROM checkins WHERE id = $1",
            checkin_id,
        )
        assert row["question"] == "How was this week?"
        assert row["recurrence"] == "weekly"
        assert list(row["recurrence_days"]) == [1, 4]

        # Cancel leaves the check-in unchanged.
        await item.get_by_role("button", name="Edit").click()
        await item.get_by_label("Question").fill("Not saved")
        await item.get_by_role("button", name="Cancel").click()
        await item.locator("h3").filter(has_text="How was this week?").wait_for()
        assert (
            await stack.pool.fetchval("SELECT question FROM checkins WHERE id = $1", checkin_id)
            == "How was this week?"
        )
