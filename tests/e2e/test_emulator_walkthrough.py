"""The README's "Try it without an LMS" steps in headless Chromium (third-party cookies
blocked), against the real ``attune dev`` subprocess: embedded Postgres and broker, the five
services, the gateway on http://localhost:<port> and the LMS emulator on
http://127.0.0.1:<port + 1> (different sites, as a real LMS iframe is).

For each flavour: register Attune from the emulated LMS's admin page (dynamic registration in
an iframe, install code from the banner; Moodle: activate the pending tool), create a check-in
as the teacher on the course page, answer as two students (user switcher), see the results,
and find the launches on Kafka (attune.launch.v1)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from devstack.embedded import free_port
from services.checkins import emotions
from shared.i18n.languages import BY_TAG, ENGLISH, Language
from tests.e2e.a11y import audit, no_horizontal_scroll
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.experience import answer, face_of
from tests.e2e.waits import WAIT_S, frame_url, signed_in

pytestmark = pytest.mark.integration

# attune dev starts an embedded Postgres (initdb on first start), the broker, five services
# and the emulator: a condition (the banner) ends the wait; the bound is for a stack that
# never comes up.
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 120.0


@dataclass
class DevStack:
    attune_url: str
    emulator_url: str
    kafka: str
    install_codes: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[DevStack]:
    work = Path(tempfile.mkdtemp(prefix="attune-emulator-e2e-"))
    work.chmod(0o755)  # initdb runs as the postgres user when we are root
    port, emulator_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    log = work / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "attune.cli", "dev", "--port", str(port),
             "--emulator-port", str(emulator_port), "--data-dir", str(work / "data")],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Press Ctrl-C to stop" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"attune dev did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        text = log.read_text()
        codes = dict(re.findall(r"install code for (\w+): (\S+)", text))
        kafka = re.search(r"^\s+kafka\s+(\S+)", text, re.M)
        assert kafka is not None and set(codes) == {"canvas", "moodle"}, text[-2000:]
        assert f"http://localhost:{port}/" in text and f"http://127.0.0.1:{emulator_port}/" in text
        yield DevStack(
            attune_url=f"http://localhost:{port}",
            emulator_url=f"http://127.0.0.1:{emulator_port}",
            kafka=kafka.group(1),
            install_codes=codes,
            log=log,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "emulator-attune-dev.log")
        shutil.rmtree(work, ignore_errors=True)


async def launch_events(kafka: str, issuer: str, want: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        "attune.launch.v1", bootstrap_servers=kafka, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )  # fmt: skip
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and len(found) < want:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value or b"{}")
                    if event.get("data", {}).get("platform", {}).get("issuer") == issuer:
                        found.append(event["data"])
    finally:
        await consumer.stop()
    return found


async def act_as(page: Any, who: str, role: str, shot: str, language: Language = ENGLISH) -> Any:
    """Switch user on the emulated course page; returns the tool's frame once the new user's
    launch is signed in. The switch loads a new page (``?user=``): waiting for it first keeps
    the previous user's signed-in frame from answering the wait (two students in a row)."""
    await page.get_by_label("Act as").select_option(label=who)
    user = await page.get_by_label("Act as").input_value()
    async with page.expect_navigation(url=re.compile(rf"[?&]user={re.escape(user)}\b")):
        await page.get_by_role("button", name="Switch user").click()
    await signed_in(page, role, shot=f"emulator-{shot}", language=language)
    return page.frame_locator("#tool")


async def register_from_admin(page: Any, dev_stack: DevStack, flavour: str) -> None:
    """Steps 1 and 2: register Attune from the emulated LMS's admin page (dynamic
    registration in its iframe, a mistyped install code first), then activate it (Moodle).
    axe audits each page in the frame."""
    lms = f"{dev_stack.emulator_url}/{flavour}"
    # 1. The emulated LMS's admin page: dynamic registration.
    await page.goto(f"{lms}/admin")
    assert "DEVELOPMENT EMULATOR" in await page.inner_text("body")
    code = await page.locator("#install-code").inner_text()
    assert code == dev_stack.install_codes[flavour]
    action = "Add LTI Advantage" if flavour == "moodle" else "Register with dynamic registration"
    await page.get_by_role("button", name=action).click()
    # 2. Attune's install page in the LMS's iframe: install code, Register, Finish. A
    # mistyped code first: the page to try again.
    frame = page.frame_locator("#registration")
    await frame.locator("#credential").wait_for()
    await audit(await frame_url(page, "registration", bool), f"install page ({flavour})")
    await frame.locator("#credential").fill("not-the-code")
    await frame.get_by_role("button", name="Register Attune").click()
    await frame.get_by_role("heading", name="That install code was not accepted").wait_for()
    retry = page.frame(name="registration")
    await audit(retry, f"install page, code not accepted ({flavour})")
    await frame.locator("#credential").fill(code)
    await frame.get_by_role("button", name="Register Attune").click()
    await frame.get_by_role("button", name="Finish").wait_for()
    await audit(page.frame(name="registration"), f"registered page ({flavour})")
    await page.screenshot(path=str(ARTIFACTS / f"emulator-{flavour}-registered.png"))
    await frame.get_by_role("button", name="Finish").click()
    await page.wait_for_url(f"{lms}/admin")
    tools = page.locator("#tools")
    if flavour == "moodle":
        await tools.filter(has_text="Pending").wait_for()
        await page.get_by_role("button", name="Activate Attune").click()
    await tools.filter(has_text="Active").wait_for()


@pytest.mark.parametrize("flavour", ["canvas", "moodle"])
async def test_register_create_answer_and_see_results(
    dev_stack: DevStack, flavour: str, chromium_context: Callable[..., Any]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    lms = f"{dev_stack.emulator_url}/{flavour}"
    question = f"How do you feel about the {flavour} exam?"
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await page.set_viewport_size({"width": 900, "height": 1100})
        await register_from_admin(page, dev_stack, flavour)

        # 3. The teacher creates a check-in on the course page.
        await page.get_by_role("link", name="Course: Wellbeing 101").click()
        await signed_in(page, "teacher", shot=f"emulator-{flavour}-teacher")
        t = page.frame_locator("#tool")
        await t.get_by_label("Question").fill(question)
        await t.get_by_role("button", name="Create check-in").click()
        await t.locator("#teacher-list li h3").filter(has_text="exam").wait_for()
        await page.screenshot(path=str(ARTIFACTS / f"emulator-{flavour}-teacher-created.png"))

        # 4. Two students answer, switching user on the course page: one on a phone (375 px),
        # one at 1280 px.
        for who, word, width in (("Ada Student", "nervous", 375), ("Ben Student", "excited", 1280)):
            await page.set_viewport_size({"width": width, "height": 900})
            s = await act_as(page, f"{who} (student)", "student", f"{flavour}-{who}")
            card = s.get_by_role("article", name=question)
            await card.get_by_role("button", name=face_of(word), exact=True).wait_for()
            await audit(page.frame(name="tool"), f"answer step 1 ({flavour} emulator, {width} px)")
            await answer(card, word)
            await audit(page.frame(name="tool"), f"answer sent ({flavour} emulator, {width} px)")
            shot = f"emulator-{flavour}-{who.split()[0].lower()}-answered.png"
            await page.screenshot(path=str(ARTIFACTS / shot))

        # 5. Back as the teacher: the results.
        t = await act_as(page, "Tess Teacher (teacher)", "teacher", f"{flavour}-teacher-again")
        item = t.locator("#teacher-list li").filter(has_text=f"the {flavour} exam")
        answered = re.compile(r"\b2 of \d+ students answered")
        await item.filter(has_text=answered).wait_for()
        await item.get_by_role("button", name="View results").click()
        await t.locator("#results-participation").filter(has_text=answered).wait_for()
        await t.get_by_role("table", name="Pleasantness").wait_for()
        await audit(page.frame(name="tool"), f"results ({flavour} emulator, 1280 px)")
        await page.screenshot(
            path=str(ARTIFACTS / f"emulator-{flavour}-teacher-results.png"), full_page=True
        )

        # Deep linking: the teacher adds the check-in to the course as a link.
        if flavour == "canvas":
            await page.get_by_role("button", name="Add Attune content (deep linking)").click()
            t = page.frame_locator("#tool")
            choice = t.locator("#teacher-list li").filter(has_text=f"the {flavour} exam")
            await choice.get_by_role("button", name="Add to course").click()
            await t.locator("#dl-added").filter(has_text=question).wait_for()
            await page.goto(f"{lms}/course?user=student-a")
            await page.get_by_role("link", name=question).click()
            await signed_in(page, "student", shot=f"emulator-{flavour}-link")
            await page.screenshot(path=str(ARTIFACTS / f"emulator-{flavour}-deep-link.png"))

    # 6. The launches went out on Kafka (Canvas's issuer is on its Instructure side, localhost).
    issuer = lms.replace("127.0.0.1", "localhost") if flavour == "canvas" else lms
    events = await launch_events(dev_stack.kafka, issuer, want=4)
    assert len(events) >= 4, events
    assert {e["user"]["sub"] for e in events} >= {"teacher-1", "student-a", "student-b"}
    assert all(e["context"]["id"] == "course-1" for e in events)


# Each bar grows from where the language starts a line: the left in English, the right in
# Arabic (logical CSS: inline-size in a table cell that follows the page's direction). An
# empty bar (a band nobody chose) sits at that start.
BAR_START = """() => {
    const bar = [...document.querySelectorAll('#results-pleasantness .bar')]
        .find(b => b.getBoundingClientRect().width === 0);
    const track = bar.parentElement.getBoundingClientRect(), box = bar.getBoundingClientRect();
    const near = (a, b) => Math.abs(a - b) < 1.5;
    return {left: near(box.left, track.left), right: near(box.right, track.right)};
}"""


@pytest.mark.parametrize(
    ("flavour", "locale", "tag"),
    [("canvas", "es", "es"), ("moodle", "ar", "ar")],
    ids=["canvas-es", "moodle-ar"],
)
async def test_student_and_teacher_in_their_own_language(
    dev_stack: DevStack,
    flavour: str,
    locale: str,
    tag: str,
    chromium_context: Callable[..., Any],
) -> None:
    """The emulated LMS's user language (launch_presentation.locale, spelt as that LMS does)
    reaches the whole experience: a teacher creates a check-in, a student answers on a phone,
    the teacher reads the results, every page in the language with its lang and dir, axe
    passing in it."""
    language = BY_TAG[tag]
    direction = "rtl" if language.rtl else "ltr"
    strings = emotions.catalogue(language)
    lms = f"{dev_stack.emulator_url}/{flavour}"
    question = {"es": "¿Cómo llegas al examen de mañana?", "ar": "كيف تشعر قبل امتحان الغد؟"}[tag]
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await page.set_viewport_size({"width": 1280, "height": 900})
        await page.goto(f"{lms}/course")
        if await page.locator("#no-tool").count():  # run on its own: register first
            await register_from_admin(page, dev_stack, flavour)

        # The teacher, whose LMS speaks the language.
        await page.goto(f"{lms}/course?user=teacher-1&lang={locale}")
        await signed_in(page, "teacher", shot=f"emulator-{tag}-teacher", language=language)
        tool = page.frame(name="tool")
        html = "() => [document.documentElement.lang, document.documentElement.dir,"
        html += " getComputedStyle(document.body).direction]"
        assert await tool.evaluate(html) == [tag, direction, direction]
        t = page.frame_locator("#tool")
        await t.get_by_label(str(strings["teacher.question"]), exact=True).fill(question)
        await t.get_by_label(str(strings["teacher.allow_note"])).check()
        await t.get_by_role("button", name=str(strings["teacher.submit"])).click()
        heading = t.locator("#teacher-list li h3").filter(has_text=question)
        await heading.wait_for()
        assert await heading.get_attribute("dir") == "auto"  # the teacher's own words
        await audit(page.frame(name="tool"), f"teacher page ({tag}, {flavour} emulator)")

        # A student answers on a phone.
        await page.set_viewport_size({"width": 375, "height": 900})
        who = "Ada Student (student)"
        s = await act_as(page, who, "student", f"{flavour}-{tag}-ada", language)
        card = s.get_by_role("article", name=question)
        face = card.get_by_role("button", name=face_of("nervous", language), exact=True)
        await face.wait_for()
        await audit(page.frame(name="tool"), f"answer step 1 ({tag}, 375 px)")
        assert await no_horizontal_scroll(page.frame(name="tool")) == 0
        await face.click()
        await card.get_by_role("group", name=str(strings["student.words"])).wait_for()
        await audit(page.frame(name="tool"), f"answer step 2 ({tag}, 375 px)")
        await card.get_by_role("button", name=str(strings["student.back"])).click()
        await answer(card, "nervous", note=question, language=language)
        await audit(page.frame(name="tool"), f"answer sent ({tag}, 375 px)")
        await page.screenshot(path=str(ARTIFACTS / f"emulator-{tag}-student-sent.png"))

        # The teacher reads the results.
        await page.set_viewport_size({"width": 1280, "height": 900})
        who = "Tess Teacher (teacher)"
        t = await act_as(page, who, "teacher", f"{flavour}-{tag}-teacher-again", language)
        item = t.locator("#teacher-list li").filter(has_text=question)
        await item.get_by_role("button", name=str(strings["teacher.view"])).click()
        await t.get_by_role("table", name=str(strings["chart.pleasantness"])).wait_for()
        note = t.locator("#results-who p").filter(has_text=question)
        assert await note.get_attribute("dir") == "auto"  # the student's note as typed
        bar = await page.frame(name="tool").evaluate(BAR_START)
        assert bar == {"left": not language.rtl, "right": language.rtl}, bar
        await audit(page.frame(name="tool"), f"results ({tag}, {flavour} emulator)")
        await page.screenshot(
            path=str(ARTIFACTS / f"emulator-{tag}-teacher-results.png"), full_page=True
        )
