"""Canvas as Instructure hosts it, in headless Chromium with third-party cookies blocked,
against the real ``attune dev`` (its LMS emulator plays hosted Canvas: issuers and auth
domains on ``http://localhost:<emulator port>``, the school's pages on
``http://127.0.0.1:<emulator port>/canvas``; the tool on ``http://localhost:<port>``).

One test per item of issue #20, each failing on the code before it for its own reason:

1. dynamic registration opened from the school's page, and every launch framed by it;
2. a self-hosted Canvas's ``canvas_region=not_configured`` does not refuse the login;
3. a JSON-URL developer key whose Redirect URIs the admin left empty launches;
4. a beta and a test launch of the production registration;
5. the admin's edits after the registration answer (no roster, no names) are told to the
   teacher (in the teacher's language too);
6. a disabled deployment named as Canvas names it (``deployment_id``) is refused at login;
7. a school page whose origin nobody recorded: learned from the first verified launch.

The tests share one ``attune dev``. Apart from the first, each records a Canvas developer key
of its own the way an admin does by hand (the emulator's JSON-URL form, then Attune's admin
API with the school's page origin), so it does not depend on dynamic registration; the course
page launches the newest key.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from services.checkins import emotions
from services.registration.cli import create_token
from shared.i18n.languages import BY_TAG
from tests.e2e import test_emulator_walkthrough as walkthrough
from tests.e2e.test_emulator_walkthrough import DevStack
from tests.e2e.waits import (
    ARTIFACTS,
    TEST_TIMEOUT_S,
    WAIT_S,
    deadline,
    frame_url,
    signed_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(TEST_TIMEOUT_S)]

WAIT_MS = WAIT_S * 1000


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[DevStack]:
    """The walkthrough's ``attune dev`` (the README's way to run Attune with the emulator),
    started once for this module."""
    yield from walkthrough.dev_stack.__wrapped__()


def school(dev: DevStack) -> str:
    return f"{dev.emulator_url}/canvas"


def canvas_issuer(dev: DevStack) -> str:
    return dev.emulator_url.replace("127.0.0.1", "localhost") + "/canvas"


@asynccontextmanager
async def admin_api(dev: DevStack) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """Attune's admin API with a fresh admin token (made in attune dev's database)."""
    found = re.search(r"^\s+postgres\s+(postgresql://\S+)", dev.log.read_text(), re.M)
    assert found is not None, "attune dev printed no postgres URL"
    pool = await asyncpg.create_pool(found.group(1), min_size=1, max_size=1)
    assert pool is not None
    try:
        token = await create_token(pool, f"e2e-{secrets.token_hex(4)}")
    finally:
        await pool.close()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        yield http, f"{dev.attune_url}/api/admin"


async def platform(dev: DevStack, client_id: str | None = None) -> dict[str, Any]:
    async with admin_api(dev) as (http, api), http.get(f"{api}/platforms") as resp:
        listed = (await resp.json())["platforms"]
    mine = [
        p
        for p in listed
        if p["issuer"] == canvas_issuer(dev) and client_id in (None, p["client_id"])
    ]
    assert mine, listed
    return mine[0]


async def register_dynamically(dev: DevStack, page: Any) -> None:
    """Dynamic registration from the school's Canvas admin page. The install page shows inside
    the school's page only if its frame-ancestors allow the school's host (the registration
    endpoint's), not just the issuer's host."""
    await page.goto(f"{school(dev)}/admin")
    await page.get_by_role("button", name="Register with dynamic registration").click()
    frame = page.frame_locator("#registration")
    try:
        await frame.locator("#credential").fill(dev.install_codes["canvas"], timeout=WAIT_MS)
    except Exception:
        await page.screenshot(path=str(ARTIFACTS / "canvas-hosted-install-refused.png"))
        raise
    await frame.get_by_role("button", name="Register Attune").click()
    await frame.get_by_role("button", name="Finish").click(timeout=WAIT_MS)
    await page.wait_for_url(f"{school(dev)}/admin", timeout=WAIT_MS)
    await page.locator("#tools").filter(has_text="Active").wait_for(timeout=WAIT_MS)


async def course(page: Any, dev: DevStack, user: str, env: str = "production") -> None:
    await page.goto(f"{school(dev)}/course?user={user}&env={env}")


async def record_key(
    dev: DevStack, page: Any, *, redirect_uris: str, frame_origins: list[str] | None
) -> dict[str, Any]:
    """A Canvas developer key made by hand: the emulator's "+ LTI Key: Enter URL" form, then
    the key recorded in Attune through its admin API (what docs/registration.md, Option B,
    tells an admin). The course page then launches this key. Returns Attune's platform."""
    await page.goto(f"{school(dev)}/admin")
    await page.get_by_label(re.compile("^Redirect URIs")).fill(redirect_uris)
    await page.get_by_role("button", name="Save developer key").click()
    details = page.locator("#tool-details")

    async def field(name: str) -> str:
        return str(await details.locator(f'[data-field="{name}"]').inner_text(timeout=WAIT_MS))

    body: dict[str, Any] = {
        "issuer": await field("Platform ID"),
        "client_id": await field("Client ID"),
        "product": "canvas",
        "auth_url": await field("Authentication request URL"),
        "jwks_url": await field("Public keyset URL"),
        "token_url": await field("Access token URL"),
    }
    assert body["issuer"] == canvas_issuer(dev)
    if frame_origins is not None:
        body["frame_origins"] = frame_origins
    async with admin_api(dev) as (http, api), http.post(f"{api}/platforms", json=body) as resp:
        assert resp.status == 201, await resp.text()
        return dict((await resp.json())["platform"])


def launch_url(dev: DevStack) -> str:
    return f"{dev.attune_url}/lti/launch"


async def school_key(dev: DevStack, page: Any) -> dict[str, Any]:
    """A key with Attune's launch URL typed in and the school's page origin recorded."""
    return await record_key(
        dev, page, redirect_uris=launch_url(dev), frame_origins=[dev.emulator_url]
    )


async def edit_newest_key(page: Any, dev: DevStack, *, roster: bool, privacy: str) -> None:
    """The Canvas admin's edits after the registration (the emulator's review form)."""
    await page.goto(f"{school(dev)}/admin")
    edit = page.locator("#tools details").last
    await edit.locator("summary").click()
    box = edit.get_by_label("Names and Role Provisioning (course roster)")
    await (box.check() if roster else box.uncheck())
    await edit.get_by_label("Privacy level").select_option(privacy)
    await edit.get_by_role("button", name=re.compile("^Save .* settings$")).click()
    await page.wait_for_url(f"{school(dev)}/admin", timeout=WAIT_MS)


async def test_1_registration_and_launches_are_framed_by_the_school(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await register_dynamically(dev_stack, page)
        await page.screenshot(path=str(ARTIFACTS / "canvas-hosted-registered.png"))
        await course(page, dev_stack, "teacher-1")
        await signed_in(page, "teacher", shot="canvas-hosted-teacher")
        # The login's Platform Storage page showed (framed by the school's page) and reached
        # the page through Canvas's forwarding frame on the auth domain.
        assert "lti.put_data" in await page.evaluate("window.storageLog")
        tool = page.frame(name="tool")
        assert tool is not None and urlsplit(tool.url).path == "/app/"
    registered = await platform(dev_stack)
    assert registered["frame_origins"] == [dev_stack.emulator_url]


async def test_2_self_hosted_region_not_configured(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await school_key(dev_stack, page)
        await page.goto(f"{school(dev_stack)}/admin")
        await page.get_by_label("Self-hosted (region not configured)").check()
        await page.get_by_role("button", name="Save hosting").click()
        await page.wait_for_url(f"{school(dev_stack)}/admin", timeout=WAIT_MS)
        try:
            await course(page, dev_stack, "student-a")
            await signed_in(page, "student", shot="canvas-self-hosted-student")
        finally:
            await page.goto(f"{school(dev_stack)}/admin")
            await page.get_by_label("Instructure-hosted (region us-east-1)").check()
            await page.get_by_role("button", name="Save hosting").click()


async def test_3_beta_and_test_environments(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await school_key(dev_stack, page)
        for env, user, role in (("beta", "teacher-1", "teacher"), ("test", "student-b", "student")):
            await course(page, dev_stack, user, env)
            assert await page.locator("#lms-env").inner_text() == env
            await signed_in(page, role, shot=f"canvas-{env}-{role}")
            await page.screenshot(path=str(ARTIFACTS / f"canvas-hosted-{env}.png"))


async def test_4_disabled_deployment_refused_at_login(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        key = await school_key(dev_stack, page)
        await course(page, dev_stack, "student-c")
        await signed_in(page, "student", shot="canvas-before-disable")
        registered = await platform(dev_stack, key["client_id"])
        [deployment] = [d["deployment_id"] for d in registered["deployments"]]
        base = f"/platforms/{registered['id']}/deployments"
        async with admin_api(dev_stack) as (http, api):
            async with http.post(
                f"{api}{base}/disable", json={"deployment_id": deployment}
            ) as resp:
                assert resp.status == 200, await resp.text()
            try:
                # Once the change reached the login service (registration events), the login
                # itself refuses it as Canvas names it (deployment_id), before the browser is
                # sent to Canvas's auth endpoint.
                probe = {
                    "iss": canvas_issuer(dev_stack),
                    "client_id": registered["client_id"],
                    "deployment_id": deployment,
                    "login_hint": "student-c",
                    "target_link_uri": f"{dev_stack.attune_url}/app",
                }
                expired = deadline()
                while not expired():
                    async with http.get(
                        f"{dev_stack.attune_url}/lti/login",
                        params=probe,
                        headers={"Accept": "application/json"},
                        allow_redirects=False,
                    ) as resp:
                        if resp.status == 403:
                            break
                    await asyncio.sleep(0.2)
                assert resp.status == 403, "the login never refused the disabled deployment"
                await course(page, dev_stack, "student-c")
                refused = await frame_url(
                    page, "tool", lambda url: urlsplit(url).path in ("/lti/login", "/lti/launch")
                )
                await refused.get_by_text("deployment_disabled").wait_for(timeout=WAIT_MS)
                assert urlsplit(refused.url).path == "/lti/login", refused.url
                await page.screenshot(path=str(ARTIFACTS / "canvas-deployment-disabled.png"))
            finally:
                async with http.post(
                    f"{api}{base}/approve", json={"deployment_id": deployment}
                ) as resp:
                    assert resp.status == 200, await resp.text()


async def test_5_canvas_edits_after_registration_are_told_to_the_teacher(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await school_key(dev_stack, page)
        await edit_newest_key(page, dev_stack, roster=False, privacy="anonymous")
        try:
            await course(page, dev_stack, "teacher-1")
            await signed_in(page, "teacher", shot="canvas-edited-teacher")
            app = page.frame_locator("#tool")
            await app.locator("#lms-no-roster").wait_for(timeout=WAIT_MS)
            await app.locator("#lms-no-names").wait_for(timeout=WAIT_MS)
            await page.screenshot(path=str(ARTIFACTS / "canvas-edited-teacher-notice.png"))
            # In the teacher's own language (#18): Canvas's launch page carries the user's
            # locale, and the notice comes from the catalogue like every other string.
            spanish = BY_TAG["es"]
            words = emotions.catalogue(spanish)
            assert words["lms.heading"] != emotions.catalogue()["lms.heading"]
            await page.goto(f"{school(dev_stack)}/course?user=teacher-1&lang=es")
            await signed_in(page, "teacher", shot="canvas-edited-teacher-es", language=spanish)
            app = page.frame_locator("#tool")
            heading = app.locator("#lms-shares-heading")
            await heading.filter(has_text=str(words["lms.heading"])).wait_for(timeout=WAIT_MS)
            notice = app.locator("#lms-no-roster")
            await notice.filter(has_text=str(words["lms.no_roster"])).wait_for(timeout=WAIT_MS)
        finally:
            await edit_newest_key(page, dev_stack, roster=True, privacy="name_only")
        # Shared again: the next launch says nothing.
        await course(page, dev_stack, "teacher-1")
        await signed_in(page, "teacher", shot="canvas-restored-teacher")
        app = page.frame_locator("#tool")
        assert await app.locator("#lms-shares").is_hidden()


async def test_6_json_url_developer_key_with_default_redirect_uris(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    """The admin pastes the JSON URL and leaves Redirect URIs empty: Canvas takes them from
    the JSON (else the target_link_uri, which its auth endpoint would then refuse)."""
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        await record_key(dev_stack, page, redirect_uris="", frame_origins=[dev_stack.emulator_url])
        await course(page, dev_stack, "teacher-1")
        try:
            await signed_in(page, "teacher", shot="canvas-json-url-teacher")
        except AssertionError:
            tool = page.frame(name="tool")
            body = await tool.inner_text("body") if tool is not None else None
            raise AssertionError(f"JSON-URL launch failed: {body!r}") from None


async def test_7_an_unrecorded_school_page_is_learned(
    dev_stack: DevStack, chromium_context: Callable[..., Any]
) -> None:
    """A key recorded by client_id only names no school page: the first launch from the
    school's page goes without the storage page (the cookie binds it), proves the page's
    origin, and that origin is learned for the deployment."""
    async with chromium_context("third_party_blocked") as context:
        page = await context.new_page()
        key = await record_key(
            dev_stack, page, redirect_uris=launch_url(dev_stack), frame_origins=None
        )
        assert key["frame_origins"] == []
        await course(page, dev_stack, "student-a")
        await signed_in(page, "student", shot="canvas-learned-student")
        assert "lti.put_data" not in await page.evaluate("window.storageLog")
    learned = await platform(dev_stack, key["client_id"])
    [deployment] = learned["deployments"]
    assert deployment["learned_frame_origins"] == [dev_stack.emulator_url]
