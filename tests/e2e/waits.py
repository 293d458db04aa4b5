"""How the browser tests wait: on conditions, never on a budget a busy machine exceeds.

Every wait and action ends the moment its condition holds, so a fast machine never feels the
budget; the budget only bounds a wait for something that is not going to happen. It is set
generously, once, here: a 2-core machine shared with other work (CI runs on one) has taken
longer than Playwright's 30-second default for a cross-site launch that then completed.
``scripts/soak-e2e`` runs the browser tests repeatedly with busy loops competing for the cores
to prove it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError

from services.checkins.emotions import catalogue
from shared.i18n.languages import ENGLISH, Language

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # screenshots, logs

# The longest any single condition may take (Playwright's default for every wait and action
# of a context, navigation included).
WAIT_S = 180
# The longest a browser test may run in all (pytest-timeout), its fixtures included.
TEST_TIMEOUT_S = 1200


def deadline(seconds: float = WAIT_S) -> Callable[[], bool]:
    """A function that tells whether ``seconds`` have passed since this call."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    return lambda: loop.time() >= end


async def signed_in(
    page: Any, role: str, *, shot: str, frame: str = "#tool", language: Language = ENGLISH
) -> None:
    """Wait until the app in the page's ``frame`` says it is signed in as ``role``.

    The tool's frame navigates cross-site three times (login, the LMS's auth endpoint, the
    launch) and Chromium may swap the frame out of process each time; a locator resolved
    around a swap has once waited on a frame that was gone while the page showed the signed-in
    app. So each try resolves the iframe afresh with a short timeout, and the page's frames
    are also read directly. On failure the page is photographed as ``shot``.
    """
    wanted = str(catalogue(language)[f"app.signed_in_{role}"]).rstrip(".")
    expired = deadline()
    text: str | None = None
    while not expired():
        status = page.frame_locator(frame).locator("#status")
        try:
            await status.filter(has_text=wanted).wait_for(timeout=2_000)
            return
        except PlaywrightError:
            pass  # not (yet) there, or the frame it resolved was swapped out
        for each in page.frames:
            if each is page.main_frame:
                continue  # the LMS's own page
            try:
                # With a timeout: a frame stuck between documents never gets a script context,
                # and a plain evaluate waited for one forever (seen on a busy machine).
                text = await each.locator("#status").first.text_content(timeout=1_000)
            except PlaywrightError:
                continue  # navigating or detached: the next try sees its successor
            if text and wanted in text:
                return
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{shot}-launch-failed.png"))
    raise AssertionError(f"{role} launch did not finish within {WAIT_S} s: status {text!r}")


async def frame_url(page: Any, name: str, condition: Callable[[str], bool]) -> Any:
    """The frame called ``name`` once its URL meets ``condition`` (looked up afresh on every
    try: Chromium may swap the frame object, e.g. when it turns into an error page)."""
    expired = deadline()
    url = ""
    while not expired():
        found = page.frame(name=name)
        url = found.url if found is not None else ""
        if found is not None and condition(url):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"frame {name!r} never reached the expected URL; last {url!r}")
