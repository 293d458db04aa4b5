"""Launches in a real headless Chromium, the tool in a cross-site iframe of a fake LMS page:
third-party cookies blocked (the partitioned cookie carries the binding) and all cookies
blocked (LTI Platform Storage carries it); and the same pages refused when a page of an
unregistered origin frames them (CSP frame-ancestors)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.waits import frame_url, signed_in
from tests.fakes.platform import FakePlatform
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("policy", "storage_used"),
    [("third_party_blocked", False), ("all_blocked", True)],
)
async def test_launch_in_cross_site_iframe(
    stack: LtiStack,
    canvas: FakePlatform,
    chromium_context: Callable[..., Any],
    policy: str,
    storage_used: bool,
) -> None:
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client)
    login_url = f"{stack.url}/lti/login?" + urlencode(
        {
            "iss": canvas.issuer,
            "login_hint": "student-1",
            "client_id": client.client_id,
            "target_link_uri": f"{stack.url}/app",
            "lti_deployment_id": client.deployment_id,
            "lti_message_hint": "m1",
            "canvas_environment": "prod",
            "canvas_region": "us-east-1",
            "lti_storage_target": "_parent",
        }
    )
    canvas.set_course_page(login_url, tool_origin=stack.url)
    async with chromium_context(policy) as context:
        page = await context.new_page()
        await page.goto(f"{canvas.base_url}/lms/course")
        await signed_in(page, "student", shot=f"launch-iframe-{policy}")
        log = await page.evaluate("window.storageLog")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"launch-iframe-{policy}.png"))
    assert "lti.put_data" in log
    assert ("lti.get_data" in log) is storage_used
    assert (
        await stack.pool.fetchval(
            "SELECT count(*) FROM launches WHERE platform_id = $1", platform_id
        )
        == 1
    )


async def _serve_page(body: str) -> tuple[web.AppRunner, str]:
    """A page on another origin (another port of 127.0.0.1): not a registered LMS."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_only_the_registered_lms_may_frame_the_tool(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    """The tool loads in the registered LMS's cross-site iframe; the same pages framed by a page
    of another origin are refused by Chromium (CSP frame-ancestors), leaving an error frame."""
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)  # frame origins: the fake LMS's origin
    login_url = f"{stack.url}/lti/login?" + urlencode(
        {
            "iss": canvas.issuer,
            "login_hint": "student-2",
            "client_id": client.client_id,
            "target_link_uri": f"{stack.url}/app",
            "lti_deployment_id": client.deployment_id,
            "canvas_environment": "prod",
            "lti_storage_target": "_parent",
        }
    )
    canvas.set_course_page(login_url, tool_origin=stack.url)
    ARTIFACTS.mkdir(exist_ok=True)
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await page.goto(f"{canvas.base_url}/lms/course")
        await signed_in(page, "student", shot="framed-by-registered-lms")
        tool = page.frame(name="tool")
        assert tool is not None
        app_url = tool.url  # the fragment (launch token) is gone; the frame reference stays
        assert app_url.startswith(f"{stack.url}/app/?f="), app_url

        runner, evil = await _serve_page(
            "<!doctype html><title>Not an LMS</title>"
            f'<iframe id="tool" name="tool" src="{html.escape(app_url)}"></iframe>'
            f'<iframe id="login" name="login" src="{html.escape(login_url)}"></iframe>'
        )
        try:
            other = await context.new_page()
            console: list[str] = []
            other.on("console", lambda message: console.append(message.text))
            await other.goto(f"{evil}/", wait_until="load")
            for name in ("tool", "login"):
                # The refused frame turns into Chromium's error page.
                frame = await frame_url(other, name, lambda url: url.startswith("chrome-error://"))
                assert await frame.locator("#status, #attune-storage").count() == 0
            await other.screenshot(path=str(ARTIFACTS / "framed-by-unregistered-origin.png"))
            refusals = [m for m in console if "frame-ancestors" in m]
            assert len(refusals) >= 2, console
            assert all(canvas.base_url in m for m in refusals), refusals

            # The same app URL inside the registered LMS's page is still allowed.
            canvas.set_course_page(app_url, tool_origin=stack.url)
            again = await context.new_page()
            await again.goto(f"{canvas.base_url}/lms/course", wait_until="load")
            framed = again.frame(name="tool")
            assert framed is not None
            await again.frame_locator("#tool").locator("#status").wait_for()
            assert not framed.url.startswith("chrome-error://")
        finally:
            await runner.cleanup()
