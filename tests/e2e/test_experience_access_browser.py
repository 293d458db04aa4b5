"""The check-in experience by keyboard alone (issue #17), in a real headless Chromium inside a
fake Canvas's cross-site iframe, third-party cookies blocked: every stop of the Tab key shows a
focus indicator of at least 3:1 against its background; the student answers at 1280 px at 200 %
zoom (a 640 px viewport) with prefers-reduced-motion (no transition runs); times show in the
viewer's time zone, to the minute. A deep-linked activity opens its check-in for students too,
the course's other open check-ins a button away; the teacher's deep-linking picker lists the
course's check-ins first. axe-core finds nothing on any of these pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.jwks.app import create_app as jwks_app
from shared.lti import claims as C
from tests.conftest import Infra
from tests.e2e.a11y import audit, focus_indicator, no_horizontal_scroll, tab_to
from tests.e2e.experience import open_tool
from tests.e2e.waits import frame_url
from tests.fakes.platform import FakePlatform
from tests.integration.test_checkins import INSTRUCTOR, LEARNER, Api, minted
from tests.lti_support import LtiStack, _serve

pytestmark = pytest.mark.integration

ZONE = "Asia/Kolkata"  # +05:30: minutes differ from UTC's


def clock(value: datetime) -> str:
    """The hour and minute an English (US) page shows for ``value`` in ZONE."""
    local = value.astimezone(ZoneInfo(ZONE))
    return f"{local.hour % 12 or 12}:{local.minute:02d}"


@pytest.mark.parametrize("lms", ["canvas"], indirect=True)
async def test_keyboard_only_at_200_percent_with_reduced_motion(
    stack: LtiStack, lms: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    client = lms.add_client(stack.redirect_uris())
    await stack.register(lms, client)
    async with chromium_context(
        "third_party_blocked", timezone_id=ZONE, reduced_motion="reduce"
    ) as context:
        teacher, t = await open_tool(
            context, stack, lms, client, "teacher-k", INSTRUCTOR, width=640, height=400
        )
        # The teacher creates a check-in with the keyboard.
        await tab_to(teacher, t, "#question")
        await teacher.keyboard.press("Control+A")
        await teacher.keyboard.type("Keyboard check-in")
        await tab_to(teacher, t, "#allow_note")
        await teacher.keyboard.press("Space")
        await tab_to(teacher, t, "#create-submit")
        await teacher.keyboard.press("Enter")
        item = t.locator("#teacher-list li").filter(has_text="Keyboard check-in")
        await item.wait_for()
        opens = await stack.pool.fetchval(
            "SELECT opens_at FROM checkins WHERE question = 'Keyboard check-in'"
        )
        shown = await item.locator(".when").inner_text()
        assert clock(opens) in shown, (shown, opens)
        await no_horizontal_scroll(t)

        # A student answers with the keyboard at 200 % zoom, motion reduced.
        page, s = await open_tool(
            context, stack, lms, client, "student-k", LEARNER, width=640, height=400
        )
        card = s.get_by_role("article", name="Keyboard check-in")
        await card.wait_for()
        face = card.locator("button.face.b4")
        assert await face.evaluate("el => getComputedStyle(el).transitionDuration") == "0s"
        await tab_to(page, s, "button.face.b4")
        await page.keyboard.press("Enter")
        legend = card.locator("legend")
        assert await legend.evaluate("el => el === document.activeElement")
        await tab_to(page, s, "input.word-input")
        await page.keyboard.press("ArrowRight")  # the second word, chosen
        chosen = await s.evaluate("() => document.activeElement.value")
        assert chosen == "relaxed"
        assert await card.get_by_role("radio", name="Relaxed").is_checked()
        await card.locator(".meaning").filter(has_text="Loose and easy").wait_for()
        await tab_to(page, s, "textarea")
        await page.keyboard.type("by keyboard")
        await tab_to(page, s, "button.back")
        await page.keyboard.press("Enter")  # back to the faces: the chosen one has the focus
        assert (
            await s.evaluate("() => document.activeElement.getAttribute('aria-pressed')") == "true"
        )
        await page.keyboard.press("Enter")
        assert await card.get_by_role("radio", name="Relaxed").is_checked()
        assert await card.locator("textarea").input_value() == "by keyboard"
        await tab_to(page, s, "button.send")
        await page.keyboard.press("Enter")
        thanks = card.locator(".thanks")
        await thanks.wait_for()
        assert await thanks.evaluate("el => el === document.activeElement")
        await no_horizontal_scroll(s)
        await audit(s, "answer sent (canvas, 640 px = 1280 px at 200 %)")
        await tab_to(page, s, "button.change")
        await page.keyboard.press("Enter")
        ring = await focus_indicator(s)
        assert (ring is not None and ring["text"] == "Relaxed") or ring["tag"] == "BUTTON"
        await page.close()

        # Four classmates answer: the class picture appears (a group of 5 is released).
        platform_id = await stack.pool.fetchval(
            "SELECT id FROM platforms WHERE client_id = $1", client.client_id
        )
        checkin_id = await stack.pool.fetchval(
            "SELECT id FROM checkins WHERE question = 'Keyboard check-in'"
        )
        for i, word in enumerate(("sad", "calm", "happy", "proud")):
            classmate = Api(
                stack.url,
                minted(stack.settings["us-east-1"], platform_id=platform_id, subject=f"k-{i}"),
            )
            status, _ = await classmate.call(
                "PUT", f"/checkins/{checkin_id}/response", {"emotion": word}
            )
            assert status == 201
        page, s = await open_tool(context, stack, lms, client, "student-k", LEARNER, width=375)
        picture = s.get_by_role("table", name="Pleasantness")
        await picture.wait_for()
        rows = [r.split() for r in await picture.locator("tbody tr").all_inner_texts()]
        assert rows == [["Really", "bad", "0"], ["Not", "so", "good", "1"], ["Okay", "1"],
                        ["Good", "1"], ["Really", "good", "2"]]  # fmt: skip
        await audit(s, "class picture (canvas, 375 px)")
        await page.close()

        # The teacher reads the results with the keyboard.
        await tab_to(teacher, t, "#teacher-list li button.secondary")
        await teacher.keyboard.press("Enter")
        results = t.locator("#results")
        await results.get_by_role("table", name="Emotions").wait_for()
        assert await results.evaluate("el => el === document.activeElement")
        await tab_to(teacher, t, "button[data-view=students]")
        await teacher.keyboard.press("Enter")
        await t.get_by_role("list", name="Answers of Person student-k").wait_for()
        await no_horizontal_scroll(t)


@pytest.fixture
async def tool_key(infra: Infra) -> AsyncIterator[None]:
    """The jwks service, which makes the tool's signing key (deep-linking responses are
    signed)."""
    runner, _ = await _serve(jwks_app(infra.settings()))
    try:
        yield
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("lms", ["canvas", "moodle"], indirect=True)
async def test_deep_linked_checkin_opens_for_students_and_the_picker_lists_first(
    stack: LtiStack, lms: FakePlatform, chromium_context: Callable[..., Any], tool_key: None
) -> None:
    client = lms.add_client(stack.redirect_uris())
    platform_id = await stack.register(lms, client)
    teacher = Api(
        stack.url,
        minted(
            stack.settings["us-east-1"],
            platform_id=platform_id,
            subject="t-dl",
            roles=("instructor",),
        ),
    )
    ids = {}
    for question in ("Monday check-in", "Linked check-in", "Friday check-in"):
        vocabulary = "simple" if question.startswith("Friday") else "full"
        status, body = await teacher.call(
            "POST", "/checkins", {"question": question, "vocabulary": vocabulary}
        )
        assert status == 201
        ids[question] = body["id"]
    async with chromium_context("third_party_blocked") as context:
        # A student opens the deep-linked activity: that check-in, then the others on demand.
        page, s = await open_tool(
            context,
            stack,
            lms,
            client,
            "student-dl",
            LEARNER,
            width=375,
            custom={"checkin_id": str(ids["Linked check-in"])},
        )
        linked = s.get_by_role("article", name="Linked check-in")
        await linked.wait_for()
        assert await s.get_by_role("heading", name="Your check-in").count() == 1
        assert await s.locator("article.answer-card").count() == 1
        await audit(s, f"deep-linked check-in, student ({lms.flavour}, 375 px)")
        await s.get_by_role("button", name="Show the other open check-ins (2)").click()
        await s.get_by_role("article", name="Monday check-in").wait_for()
        friday = s.get_by_role("article", name="Friday check-in")
        await friday.get_by_role("button", name="Good", exact=True).click()
        words = friday.get_by_role("group", name="Which word fits best?").get_by_role("radio")
        assert await words.count() == 2  # the simple vocabulary: two words a band
        await audit(s, f"deep-linked check-in with the others ({lms.flavour}, 375 px)")
        await page.close()

        # The teacher's deep-linking picker: the course's check-ins before the create form.
        page, t = await open_tool(
            context,
            stack,
            lms,
            client,
            "teacher-dl",
            INSTRUCTOR,
            width=1280,
            message_type=C.DEEP_LINKING_REQUEST,
        )
        await t.get_by_role("heading", name="Choose the check-in to add").wait_for()
        choice = t.locator("#teacher-list li").filter(has_text="Linked check-in")
        await choice.get_by_role("button", name="Add to course").wait_for()
        list_box = await t.locator("#teacher-list").bounding_box()
        form_box = await t.locator("#create").bounding_box()
        assert list_box is not None and form_box is not None
        assert list_box["y"] < form_box["y"]
        assert await t.locator("#views").is_hidden()
        await audit(t, f"deep-linking picker ({lms.flavour}, 1280 px)")
        # The page that returns the choice to the LMS, held before its script sends it.
        await page.route("**/static/autosubmit.js", lambda route: route.abort())
        await choice.get_by_role("button", name="Add to course").click()
        returning = await frame_url(page, "tool", lambda url: url.endswith("/app/deep-link"))
        await returning.get_by_role("button", name="Continue").wait_for()
        await audit(returning, f"deep-linking return page ({lms.flavour})")
