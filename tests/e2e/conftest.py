"""Real headless Chromium (Debian's package) driven by Playwright, with cookie policy set
explicitly per test through the profile's preferences."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import Infra
from tests.e2e.waits import ARTIFACTS, TEST_TIMEOUT_S, WAIT_S
from tests.lti_support import LtiStack, start_stack

__all__ = ["ARTIFACTS"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Cross-site iframes stay in the page's renderer process. Site isolation is Chromium's process
# model, not web behaviour: cookies and their partitioning, CSP frame-ancestors, postMessage
# and navigation behave the same. But Playwright follows an out-of-process iframe through a
# separate target that it re-attaches at every cross-site navigation (the tool frame makes
# three), and on a busy machine it has lost one: the frame showed "Signed in as a student"
# while none of its elements or scripts could be reached for minutes.
SAME_PROCESS_FRAMES = (
    "--disable-site-isolation-trials",
    "--disable-features=IsolateOrigins,site-per-process",
)
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests get a time limit their generous waits fit in (tests/e2e/waits.py)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


# cookie_controls_mode 1 blocks third-party cookies (Chrome incognito, Safari-like);
# default_content_setting_values.cookies 2 blocks every cookie.
COOKIE_POLICIES: dict[str, dict[str, Any]] = {
    "third_party_blocked": {"profile": {"cookie_controls_mode": 1}},
    "all_blocked": {
        "profile": {"cookie_controls_mode": 1, "default_content_setting_values": {"cookies": 2}},
    },
}


@pytest.fixture
def chromium_context() -> Callable[..., Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: scripts/bootstrap installs the Debian package")
    from playwright.async_api import async_playwright

    @asynccontextmanager
    async def open_context(policy: str, **options: Any) -> AsyncIterator[Any]:
        """``options``: more Playwright context options (timezone_id, reduced_motion, ...)."""
        profile = Path(tempfile.mkdtemp(prefix="attune-chromium-"))
        (profile / "Default").mkdir()
        (profile / "Default" / "Preferences").write_text(json.dumps(COOKIE_POLICIES[policy]))
        try:
            async with async_playwright() as pw:
                context = await pw.chromium.launch_persistent_context(
                    str(profile),
                    executable_path=CHROMIUM,
                    headless=True,
                    args=[
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        *SAME_PROCESS_FRAMES,
                    ],
                    timeout=WAIT_S * 1000,
                    **options,
                )
                # Every wait and action of the test: on its condition, within WAIT_S.
                context.set_default_timeout(WAIT_S * 1000)
                context.set_default_navigation_timeout(WAIT_S * 1000)
                try:
                    yield context
                finally:
                    await context.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    return open_context


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[LtiStack]:
    """The stack on ``localhost``: another site than the fake LMS (127.0.0.1), as a real LMS
    iframe is."""
    s, exits = await start_stack(infra, pool, host="localhost")
    try:
        yield s
    finally:
        await exits.aclose()


@pytest.fixture
async def lms(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fake LMS of the flavour the test is parametrized with (indirect): "canvas"|"moodle"."""
    from tests.lti_support import platform_server

    async for platform in platform_server(request.param):
        yield platform
