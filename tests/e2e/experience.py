"""Shared steps of the check-in experience's browser tests (issue #17): the tool in a cross-site
iframe of a fake Canvas or Moodle page, third-party cookies blocked."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from services.checkins import emotions
from shared.i18n.languages import ENGLISH, Language
from tests.e2e.waits import ARTIFACTS, signed_in
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import INSTRUCTOR
from tests.lti_support import LtiStack

# scripts/screenshots sets this to docs/screenshots: the README's pictures come from the tests.
README_SHOTS = os.environ.get("ATTUNE_SCREENSHOTS")


def launch_url(
    stack: LtiStack, lms: FakePlatform, client: Client, sub: str, role: str, **message: Any
) -> str:
    """The LMS's login initiation for ``sub`` (``message``: message_type, custom)."""
    params = {
        "iss": lms.issuer,
        "login_hint": sub,
        "client_id": client.client_id,
        "target_link_uri": f"{stack.url}/app",
        "lti_deployment_id": client.deployment_id,
        # Unique: Moodle's hints are single use.
        "lti_message_hint": json.dumps({"roles": [role], "n": secrets.token_hex(4), **message}),
    }
    if lms.flavour == "canvas":
        params |= {
            "canvas_environment": "prod",
            "canvas_region": "us-east-1",
            "lti_storage_target": "_parent",
        }
    return f"{stack.url}/lti/login?" + urlencode(params)


async def open_tool(
    context: Any,
    stack: LtiStack,
    lms: FakePlatform,
    client: Client,
    sub: str,
    role: str,
    *,
    width: int,
    height: int = 812,
    **message: Any,
) -> tuple[Any, Any]:
    """A new tab of the LMS's course page as ``sub``, ``width`` px wide, once the tool in its
    frame is signed in; returns the page and the tool's frame."""
    lms.set_course_page(launch_url(stack, lms, client, sub, role, **message), stack.url)
    page = await context.new_page()
    await page.set_viewport_size({"width": width, "height": height})
    await page.goto(f"{lms.base_url}/lms/course")
    await signed_in(page, "teacher" if role == INSTRUCTOR else "student", shot=f"exp-{sub}")
    return page, tool_frame(page)


def tool_frame(page: Any) -> Any:
    frame = page.frame(name="tool")
    assert frame is not None
    return frame


async def card_height(card: Any) -> float:
    box = await card.bounding_box()
    assert box is not None
    return float(box["height"])


def shot_path(name: str, *, readme: bool = False) -> Path:
    """Where a screenshot goes: the README's folder when scripts/screenshots runs, else
    test-artifacts/."""
    folder = Path(README_SHOTS) if readme and README_SHOTS else ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


FIGURES = ARTIFACTS / "experience-figures.jsonl"


def record(**figures: Any) -> None:
    """Measured figures (card heights, font sizes), for the issue's report."""
    ARTIFACTS.mkdir(exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(json.dumps(figures) + "\n")


def face_of(word: str, language: Language = ENGLISH) -> str:
    """The face (step 1) whose band holds ``word`` (an emotion id), in ``language``."""
    return str(emotions.catalogue(language)[f"face.{emotions.PLEASANTNESS[word]}"])


async def answer(
    card: Any, word: str, *, note: str | None = None, language: Language = ENGLISH
) -> None:
    """A student's answer in the card: the face of ``word``'s band, then the word, the note,
    Send; returns once the confirmation shows."""
    strings = emotions.catalogue(language)
    await card.get_by_role("button", name=face_of(word, language), exact=True).click()
    await card.locator("label.word").filter(has_text=strings[f"emotion.{word}"]).click()
    if note is not None:
        await card.get_by_label(strings["student.note"]).fill(note)
    await card.locator("button.send").click()
    await card.locator(".thanks").wait_for()
