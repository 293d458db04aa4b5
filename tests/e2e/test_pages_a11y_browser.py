"""axe-core on the pages around the check-ins (issue #17), in a real headless Chromium at 375
and 1280 px: the error page inside the LMS frame (a launch the tool refuses) and at the top
level (a missing page), the app opened without a launch, and the LTI Platform Storage page a
launch shows while the LMS keeps its binding (all cookies blocked). The registration pages are
audited inside the emulated LMS's frame by tests/e2e/test_emulator_walkthrough.py, the admin
and manual registration pages by tests/e2e/test_admin_browser.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.a11y import audit, no_horizontal_scroll
from tests.e2e.experience import launch_url
from tests.e2e.waits import frame_url
from tests.fakes.platform import FakePlatform
from tests.integration.test_checkins import LEARNER
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("width", [375, 1280])
async def test_error_and_interstitial_pages_have_no_axe_violations(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any], width: int
) -> None:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    stranger = canvas.add_client(stack.redirect_uris())  # never registered: refused
    async with chromium_context("all_blocked") as context:
        page = await context.new_page()
        await page.set_viewport_size({"width": width, "height": 800})

        # A refused launch: the error page in the LMS's frame.
        canvas.set_course_page(launch_url(stack, canvas, stranger, "student-x", LEARNER), stack.url)
        await page.goto(f"{canvas.base_url}/lms/course")
        frame = page.frame_locator("#tool")
        await frame.get_by_role("heading").first.wait_for()
        error = await frame_url(page, "tool", lambda url: "/lti/login" in url)
        assert "Error code" in await error.locator("main").inner_text()
        await audit(error, f"error page in the LMS frame ({width} px)")
        await no_horizontal_scroll(error)

        # The Platform Storage page (all cookies blocked), held before its script runs.
        await page.route("**/platform-storage.js", lambda route: route.abort())
        canvas.set_course_page(launch_url(stack, canvas, client, "student-y", LEARNER), stack.url)
        await page.goto(f"{canvas.base_url}/lms/course")
        storage = await frame_url(page, "tool", lambda url: "/lti/login" in url)
        await storage.get_by_text("Starting Attune").wait_for()
        await audit(storage, f"platform storage page ({width} px)")
        await page.unroute("**/platform-storage.js")

        # At the top level: a missing page and the app without a launch.
        await page.goto(f"{stack.url}/static/missing.css")
        await page.get_by_role("heading", name="Not found").wait_for()
        await audit(page, f"error page, not found ({width} px)")
        await page.goto(f"{stack.url}/app/")
        await page.get_by_text("Open Attune from your course in the LMS.").wait_for()
        await audit(page, f"app without a launch ({width} px)")
        await no_horizontal_scroll(page)
