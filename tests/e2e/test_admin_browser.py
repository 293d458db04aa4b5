"""The admin page in a real headless Chromium: an operator signs in with an admin token and
issues a re-registration code for one registered LMS (the only install code that may update
that registration), and moves a registration to another region, on a 375 px wide screen."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from services.registration.app import create_app
from services.registration.cli import create_token
from tests.conftest import Infra
from tests.e2e.a11y import audit, no_horizontal_scroll
from tests.e2e.conftest import ARTIFACTS
from tests.fakes.platform import FakePlatform
from tests.fakes.registration_platform import outbox_settled, serve_app
from tests.lti_support import LtiStack, start_stack

pytestmark = pytest.mark.integration


async def test_admin_issues_a_reregistration_code_for_one_platform(
    stack: LtiStack, canvas: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    other = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, other)
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client)
    token = await create_token(stack.pool, f"e2e-{secrets.token_hex(4)}")
    runner, url = await serve_app(create_app(stack.settings["us-east-1"]))
    try:
        async with chromium_context("third_party_blocked") as context:
            page = await context.new_page()
            await page.set_viewport_size({"width": 375, "height": 812})
            await page.goto(f"{url}/admin/")
            await page.get_by_label("Admin token").wait_for()
            await audit(page, "admin page, signed out (375 px)")
            await page.get_by_label("Admin token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            box = page.locator("section.platform", has_text=f"client ID {client.client_id} ")
            await box.get_by_role("button", name="Create re-registration code").click()
            shown = box.get_by_role("status")
            await shown.filter(has_text="Re-registration code for this LMS").wait_for()
            text = await shown.text_content()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "admin-reregistration-code.png"))
            width = await page.evaluate("document.documentElement.scrollWidth")
            await audit(page, "admin page, signed in (375 px)")
            await page.set_viewport_size({"width": 1280, "height": 900})
            await audit(page, "admin page, signed in (1280 px)")
            for size in (1280, 375):
                await page.set_viewport_size({"width": size, "height": 900})
                await page.goto(f"{url}/admin/register/manual")
                await page.get_by_role("heading").first.wait_for()
                await audit(page, f"manual registration page ({size} px)")
                await no_horizontal_scroll(page)
    finally:
        await outbox_settled(stack.pool)
        await runner.cleanup()
    assert text is not None
    code = text.rsplit(": ", 1)[1]
    row = await stack.pool.fetchrow(
        "SELECT for_platform_id, label, used_at FROM install_codes "
        "WHERE code_hash = sha256($1::text::bytea)",
        code,
    )
    assert row["for_platform_id"] == platform_id and row["used_at"] is None
    assert row["label"].startswith("Re-register ")
    assert width <= 375  # readable without scrolling sideways on a phone


async def test_admin_moves_a_registration_to_another_region(
    infra: Infra, pool: asyncpg.Pool, moodle: FakePlatform, chromium_context: Callable[..., Any]
) -> None:
    """With several regions the admin page shows where each LMS's data is kept and changes it
    (the cell that serves it); one region has no such control."""
    stack, exits = await start_stack(infra, pool, ("us-east-1", "eu-west-1"), host="localhost")
    try:
        client = moodle.add_client(stack.redirect_uris())
        platform_id = await stack.register(moodle, client)
        token = await create_token(stack.pool, f"e2e-{secrets.token_hex(4)}")
        runner, url = await serve_app(create_app(stack.settings["us-east-1"]))
        try:
            async with chromium_context("third_party_blocked") as context:
                page = await context.new_page()
                await page.set_viewport_size({"width": 375, "height": 812})
                await page.goto(f"{url}/admin/")
                await page.get_by_label("Admin token").fill(token)
                await page.get_by_role("button", name="Sign in").click()
                box = page.locator("section.platform", has_text=f"client ID {client.client_id} ")
                await box.filter(has_text="region: any").wait_for()
                await audit(page, "admin page with regions (375 px)")
                await box.get_by_label("Region where its data is kept").select_option("eu-west-1")
                await box.get_by_role("button", name="Save region").click()
                await box.filter(has_text="region: eu-west-1").wait_for()
                await audit(page, "admin page, region saved (375 px)")
                await no_horizontal_scroll(page)
        finally:
            await outbox_settled(stack.pool)
            await runner.cleanup()
    finally:
        await exits.aclose()
    region = await pool.fetchval("SELECT region FROM platforms WHERE id = $1", platform_id)
    assert region == "eu-west-1"
