"""One hosted Canvas client_id serves many schools, each on its own domain: a school page on
an origin nobody recorded launches Attune in headless Chromium (third-party cookies blocked).

The fake LMS's page (``http://127.0.0.1:<port>``) posts the login as Canvas's launch page
does, so the browser names its Origin. The registration records another school's host only:
Attune cannot show its Platform Storage page there (the browser would refuse the frame), so
the login redirects straight to the platform and the partitioned cookie binds it; the verified
launch proves the page's origin (its signed return URL) and the app shows in that page. A page
of that origin that the launch did not prove stays refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.e2e.waits import ARTIFACTS, TEST_TIMEOUT_S, frame_url, signed_in
from tests.fakes.platform import FakePlatform
from tests.lti_support import LtiStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(TEST_TIMEOUT_S)]


async def test_an_unrecorded_school_page_launches_and_is_learned(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client, frame_origins=["https://other-school.instructure.com"])
    canvas.return_url = f"{canvas.base_url}/lms/course"  # the page the launch comes from
    canvas.set_posting_course_page(
        f"{stack.url}/lti/login",
        {
            "iss": canvas.issuer,
            "login_hint": "student-1",
            "client_id": client.client_id,
            "target_link_uri": f"{stack.url}/app",
            "deployment_id": client.deployment_id,
            "lti_message_hint": "m1",
            "canvas_environment": "prod",
            "canvas_region": "us-east-1",
            "lti_storage_target": "_parent",
        },
    )
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await page.goto(f"{canvas.base_url}/lms/course")
        await signed_in(page, "student", shot="learned-origin-student")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "learned-origin-student.png"))
        # No storage page was shown (it could not have been framed here); the cookie bound.
        assert await page.evaluate("window.storageLog") == []
        tool = page.frame(name="tool")
        assert tool is not None and urlsplit(tool.url).path == "/app/"
        app_url = tool.url
    learned = await stack.pool.fetchval(
        "SELECT o.frame_origins FROM deployment_observations o JOIN platforms p "
        "ON p.id = o.platform_id WHERE p.client_id = $1",
        client.client_id,
    )
    assert list(learned) == [canvas.base_url]

    # The same app page framed by a page of another origin (a port the launch never proved).
    other = web.Application()

    async def framing(request: web.Request) -> web.Response:
        return web.Response(
            text=f'<iframe name="tool" src="{app_url}"></iframe>', content_type="text/html"
        )

    other.router.add_get("/", framing)
    runner = web.AppRunner(other, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with chromium_context("third_party_blocked") as context:
            evil = await context.new_page()
            await evil.goto(f"http://127.0.0.1:{runner.addresses[0][1]}/")
            frame = await frame_url(evil, "tool", lambda url: url.startswith("chrome-error://"))
            assert await frame.locator("#status").count() == 0
    finally:
        await runner.cleanup()
