"""Launches in a real headless Chromium, the tool in a cross-site iframe of a fake LMS page:
third-party cookies blocked (the partitioned cookie carries the binding) and all cookies
blocked (LTI Platform Storage carries it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from tests.conftest import Infra
from tests.e2e.conftest import ARTIFACTS
from tests.fakes.platform import FakePlatform
from tests.lti_support import LtiStack, platform_server, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[LtiStack]:
    s, exits = await start_stack(infra, pool, host="localhost")
    try:
        yield s
    finally:
        await exits.aclose()


@pytest.fixture
async def canvas() -> AsyncIterator[FakePlatform]:
    async for p in platform_server("canvas"):
        yield p


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
        frame = page.frame_locator("#tool")
        status = frame.locator("#status")
        await status.filter(has_text="Signed in as a student").wait_for(timeout=45_000)
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
