"""The check-in experience (issue #17) in a real headless Chromium, the tool in a cross-site
iframe of a fake Canvas and a fake Moodle course page, third-party cookies blocked, at 375 px
(a phone) and 1280 px: a teacher creates check-ins (the form clears), a student answers in two
steps (five faces, then the words of that band with their meanings), goes back without losing
anything, sends, sees a warm confirmation and can change the answer; the teacher reads the
results (who has not answered yet, charts readable on a phone), the insights (the trend's
scale), the per-student view and downloads the exports. axe-core finds nothing on any of these
pages, nothing scrolls sideways, each answer step fits a phone screen, and the LMS frame is
sized to the content where the LMS listens (Canvas)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.checkins import emotions
from tests.e2e.a11y import audit, contrast, no_horizontal_scroll, smallest_text
from tests.e2e.experience import card_height, open_tool, record, shot_path
from tests.fakes.platform import FakePlatform
from tests.integration.test_checkins import INSTRUCTOR, LEARNER, launch_token, learners_in_roster
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration

CARD_MAX_PX = 700  # an answer step fits one phone screen
QUESTION = "How do you feel about the exam?"
SECONDS = re.compile(r"\d:\d\d:\d\d")


async def selected_look(label: Any) -> dict[str, Any]:
    """How a chosen face or word looks: its border, background and check mark."""
    look: dict[str, Any] = await label.evaluate(
        """el => {
          const cs = getComputedStyle(el);
          const mark = el.querySelector('.check');
          return {border: cs.borderTopColor, width: parseFloat(cs.borderTopWidth),
                  background: cs.backgroundColor,
                  check: !!mark && getComputedStyle(mark).display !== 'none'};
        }"""
    )
    return look


def assert_unmistakable(chosen: dict[str, Any], other: dict[str, Any]) -> None:
    assert chosen["check"] and not other["check"]
    assert chosen["width"] > other["width"]
    assert chosen["background"] != other["background"]
    assert contrast(chosen["border"], "rgb(255, 255, 255)") >= 3
    assert contrast(chosen["border"], chosen["background"]) >= 3


@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("lms", ["canvas", "moodle"], indirect=True)
async def test_student_and_teacher_flows(
    stack: LtiStack, lms: FakePlatform, chromium_context: Callable[..., Any], width: int
) -> None:
    flavour = lms.flavour
    where = f"{flavour}, {width} px"
    readme = flavour == "canvas"
    client = lms.add_client(stack.redirect_uris())
    await stack.register(lms, client)
    async with chromium_context("third_party_blocked") as context:
        teacher, t = await open_tool(
            context, stack, lms, client, "teacher-1", INSTRUCTOR, width=width
        )
        await t.locator("#teacher-list li").filter(has_text="No check-ins yet").wait_for()
        await audit(t, f"teacher list, empty ({where})")

        # Create two check-ins; the form clears after each.
        question = t.get_by_label("Question")
        await question.fill(QUESTION)
        await t.get_by_label("Let students add a note").check()
        await t.get_by_role("button", name="Create check-in").click()
        await t.locator("#teacher-list li h3").filter(has_text=QUESTION).wait_for()
        assert await question.input_value() == "How are you feeling today?"
        assert not await t.get_by_label("Let students add a note").is_checked()
        await question.fill("Anonymous pulse")
        await t.get_by_role("checkbox", name="Anonymous").check()
        await t.get_by_label("Let students add a note").check()
        await t.get_by_role("button", name="Create check-in").click()
        await t.locator("#teacher-list li h3").filter(has_text="Anonymous pulse").wait_for()
        assert not await t.get_by_role("checkbox", name="Anonymous").is_checked()
        times = await t.locator("#teacher-list .when").first.inner_text()
        assert times and not SECONDS.search(times), times  # to the minute
        await audit(t, f"teacher list ({where})")
        await no_horizontal_scroll(t)

        # A student answers in two steps.
        page, s = await open_tool(context, stack, lms, client, "student-a", LEARNER, width=width)
        card = s.get_by_role("article", name=QUESTION)
        anonymous_card = s.get_by_role("article", name="Anonymous pulse")
        faces = card.get_by_role("group", name="How does it feel?")
        for name in ("Really bad", "Not so good", "Okay", "Good", "Really good"):
            await faces.get_by_role("button", name=name, exact=True).wait_for()
        step1 = {
            "identified": await card_height(card),
            "anonymous": await card_height(anonymous_card),
        }
        await audit(s, f"answer step 1 ({where})")
        moving = await faces.get_by_role("button", name="Good", exact=True).evaluate(
            "el => getComputedStyle(el).transitionDuration"
        )
        assert moving != "0s"  # the faces move a little (not with prefers-reduced-motion)
        await no_horizontal_scroll(s)
        if width == 375:
            await card.screenshot(path=str(shot_path("student-step-1", readme=readme)))
        await faces.get_by_role("button", name="Not so good", exact=True).click()
        words = card.get_by_role("group", name="Which word fits best?")
        assert await words.get_by_role("radio").count() == 10
        # The anonymous card with a note is the tallest: every band's words are measured, with
        # the word whose meaning is the longest chosen (its meaning shows).
        step2 = {"identified": await card_height(card)}
        strings = emotions.catalogue()
        for band, words_of_band in emotions.FULL.items():
            face = strings[f"face.{band}"]
            longest = max(words_of_band, key=lambda w: len(strings[f"meaning.{w}"]))
            await anonymous_card.get_by_role("button", name=face, exact=True).click()
            await anonymous_card.get_by_role("radio", name=strings[f"emotion.{longest}"]).check()
            step2[f"anonymous {face}"] = await card_height(anonymous_card)
            await anonymous_card.get_by_role("button", name="Back to the faces").click()
        await anonymous_card.get_by_role("button", name="Really bad", exact=True).click()
        record(flavour=flavour, width=width, step1=step1, step2=step2)
        await anonymous_card.screenshot(path=str(shot_path(f"anonymous-step-2-{flavour}-{width}")))
        for step in (step1, step2):
            assert max(step.values()) <= CARD_MAX_PX, (where, step1, step2)

        # Meanings: on hover, on focus, on tap.
        meaning = card.locator(".meaning")
        await card.locator("label.word", has_text="Worried").hover()
        await meaning.filter(has_text="Thinking something bad might happen.").wait_for()
        await words.get_by_role("radio", name="Tired").focus()
        await meaning.filter(has_text="Low on energy").wait_for()
        description = await words.get_by_role("radio", name="Tired").evaluate(
            "n => document.getElementById(n.getAttribute('aria-describedby')).textContent"
        )
        assert description == "Low on energy and wanting to rest."
        await card.locator("label.word", has_text="Nervous").click()
        assert await words.get_by_role("radio", name="Nervous").is_checked()
        await card.locator("label.word", has_text="Nervous").hover()
        await meaning.filter(has_text="Jittery about something").wait_for()
        assert_unmistakable(
            await selected_look(card.locator("label.word", has_text="Nervous")),
            await selected_look(card.locator("label.word", has_text="Worried")),
        )
        note = card.get_by_label("Anything to add?")
        await note.fill("note from a")
        await card.locator(".count").filter(has_text="11 of 500 characters").wait_for()
        next_text = await card.locator(".next").inner_text()
        assert "Your teacher will see your answer with your name" in next_text
        assert "can change it until the check-in closes" in next_text
        await audit(s, f"answer step 2 ({where})")
        await no_horizontal_scroll(s)
        if width == 375:
            await card.screenshot(path=str(shot_path("student-step-2", readme=readme)))

        # Back to the faces and forward again: nothing is lost.
        await card.get_by_role("button", name="Back to the faces").click()
        chosen = faces.get_by_role("button", name="Not so good", exact=True)
        assert await chosen.get_attribute("aria-pressed") == "true"
        assert await chosen.evaluate("el => el === document.activeElement")
        assert_unmistakable(
            await selected_look(chosen),
            await selected_look(faces.get_by_role("button", name="Good", exact=True)),
        )
        await chosen.click()
        assert await words.get_by_role("radio", name="Nervous").is_checked()
        assert await note.input_value() == "note from a"
        await card.get_by_role("button", name="Send my answer").click()

        # A warm confirmation; the answer can change while the check-in is open.
        thanks = card.locator(".thanks")
        await thanks.filter(has_text="Thanks for checking in!").wait_for()
        assert await thanks.evaluate("el => el === document.activeElement")
        assert "Nervous (Not so good)" in await card.locator(".my-answer").inner_text()
        await card.filter(has_text="The class picture appears once 5 students").wait_for()
        await s.locator("#student-history li").filter(has_text="Nervous").wait_for()
        await audit(s, f"answer sent ({where})")
        if width == 375:
            await card.screenshot(path=str(shot_path("student-sent", readme=readme)))
        async with page.expect_download() as info:
            await s.get_by_role("button", name="Download my answers (CSV)").click()
        mine = await info.value
        assert mine.suggested_filename == "my-checkins.csv"
        own = Path(await mine.path()).read_text(encoding="utf-8")  # noqa: ASYNC240
        assert QUESTION in own and "nervous" in own
        await card.get_by_role("button", name="Change my answer").click()
        assert (
            await faces.get_by_role("button", name="Not so good", exact=True).get_attribute(
                "aria-pressed"
            )
            == "true"
        )
        await page.close()

        # Another student launches and does not answer: the teacher sees the name.
        await launch_token(stack.url, lms, client, "student-c")
        await learners_in_roster(stack.pool, 2)

        # The teacher's results.
        item = t.locator("#teacher-list li").filter(has_text=QUESTION)
        await item.filter(has_text="1 of 2 students answered").wait_for()
        await item.get_by_role("button", name="View results").click()
        results = t.locator("#results")
        await results.get_by_role("table", name="Pleasantness").wait_for()
        await results.get_by_role("table", name="Emotions").wait_for()
        missing = t.locator("#results-missing")
        await missing.filter(has_text="Person student-c").wait_for()
        assert "Person student-a" not in await missing.inner_text()
        await t.locator("#results-who").filter(has_text="Person student-a: Nervous").wait_for()
        chart_px = await smallest_text(t, "#results table.chart")
        assert chart_px >= 12, chart_px
        await audit(t, f"results ({where})")
        await no_horizontal_scroll(t)
        if width == 1280:
            await results.screenshot(path=str(shot_path("teacher-results", readme=readme)))

        # Insights: the trend says its scale.
        await t.get_by_role("button", name="Insights").click()
        trend = t.get_by_role("table", name="Pleasantness over time")
        await trend.wait_for()
        assert "from 1 (very unpleasant) to 5 (very pleasant)" in await trend.inner_text()
        insights_px = await smallest_text(t, "#view-insights table.chart")
        assert insights_px >= 12, insights_px
        await audit(t, f"insights ({where})")
        await no_horizontal_scroll(t)

        # The per-student view.
        await t.get_by_role("button", name="Students").click()
        row = t.get_by_role("list", name="Answers of Person student-a")
        await row.filter(has_text="Nervous").wait_for()
        assert (
            "no answer"
            in await t.get_by_role("list", name="Answers of Person student-c").inner_text()
        )
        assert "Anonymous pulse" not in await t.locator("#view-students").inner_html()
        await audit(t, f"per-student view ({where})")
        await no_horizontal_scroll(t)
        if width == 1280:
            await t.locator("#view-students").screenshot(
                path=str(shot_path("teacher-students", readme=readme))
            )
        record(flavour=flavour, width=width, chart_min_px=chart_px, insights_min_px=insights_px)

        # Exports: the buttons download what the API exports.
        await t.get_by_role("button", name="Check-ins").click()
        for fmt, button in (("csv", "Download CSV"), ("json", "Download JSON")):
            async with teacher.expect_download() as info:
                await t.get_by_role("button", name=button).click()
            download = await info.value
            assert download.suggested_filename == f"checkins-course.{fmt}"
            text = Path(await download.path()).read_text(encoding="utf-8")  # noqa: ASYNC240
            if fmt == "csv":
                assert text.startswith("checkin_id,question") and QUESTION in text
            else:
                assert QUESTION in {r["question"] for r in json.loads(text)["rows"]}

        # The LMS frame: Canvas fits it to the content (lti.frameResize), Moodle 4.5 to the
        # window (it listens for no message).
        await teacher.get_by_role("heading", name="Wellbeing 101").wait_for()
        frame_box = await teacher.locator("#tool").bounding_box()
        assert frame_box is not None
        inner = await t.evaluate(
            "() => [document.documentElement.scrollHeight, document.documentElement.clientHeight]"
        )
        if flavour == "canvas":
            sizes = await teacher.evaluate("window.frameResizes")
            assert sizes, "the tool never asked to resize its frame"
            assert inner[0] <= inner[1] + 1, f"the tool scrolls inside its frame: {inner}"
        else:
            viewport = await teacher.evaluate("window.innerHeight")
            assert abs(frame_box["y"] + frame_box["height"] + 15 - viewport) <= 2
