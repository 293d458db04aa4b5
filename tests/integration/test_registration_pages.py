"""The registration pages as the LMS administrator reads them: the platform named as they know
it, what Attune may see and do in plain words, the done page's deployment id and next steps
(Moodle's pending state, activity chooser and launch container, told truthfully after an
update), a refused install code answered with a field for another one, and error pages that
speak to the reader (no "contact your LMS administrator", no Markdown)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from services.registration.app import create_app
from services.registration.cli import create_install_code
from tests.conftest import Infra
from tests.fakes.registration_platform import (
    RegistrationPlatform,
    form_value,
    open_install_page,
    outbox_settled,
    registration_platform,
    serve_app,
    submit_install,
)

pytestmark = pytest.mark.integration


@dataclass
class Env:
    url: str
    pool: asyncpg.Pool
    session: aiohttp.ClientSession

    async def code(self, for_platform_id: int | None = None) -> str:
        return (
            await create_install_code(
                self.pool, label="pages", ttl_s=3600, for_platform_id=for_platform_id
            )
        )[0]


async def _env(infra: Infra, pool: asyncpg.Pool, **overrides: object) -> AsyncIterator[Env]:
    runner: web.AppRunner | None = None
    try:
        runner, url = await serve_app(create_app(infra.settings(**overrides)))
        async with aiohttp.ClientSession() as session:
            yield Env(url, pool, session)
    finally:
        await outbox_settled(pool)
        if runner is not None:
            await runner.cleanup()


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[Env]:
    async for e in _env(infra, pool):
        yield e


@pytest.fixture
async def moodle() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("moodle"):
        yield p


@pytest.fixture
async def canvas() -> AsyncIterator[RegistrationPlatform]:
    async for p in registration_platform("canvas"):
        yield p


BLOCKS = frozenset(
    "title main h1 h2 p ul ol li dl dt dd fieldset legend label section form button".split()
)


class _Page(HTMLParser):
    """The text a person reads (no markup, no script) and the page's first form."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.title = ""
        self.inputs: list[dict[str, str]] = []
        self.form_action: str | None = None
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCKS:
            self.text.append(" ")
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form_action is None:
            self.form_action = values.get("action", "")
        if tag == "input":
            self.inputs.append(values)
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCKS:
            self.text.append(" ")
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if "script" in self._in:
            return
        if "title" in self._in:
            self.title += data
        self.text.append(data)


def read(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def words(page: str) -> str:
    return " ".join("".join(read(page).text).split())


def assert_written_for_the_admin(page: str) -> None:
    text = words(page)
    assert "LMS administrator" not in text, text
    assert "`" not in text, text  # Markdown shown literally
    assert "**" not in text, text


# --- the install page ----------------------------------------------------------------------------


async def test_install_page_names_moodle_and_says_in_words_what_attune_may_do(
    env: Env, moodle: RegistrationPlatform
) -> None:
    resp, page = await open_install_page(env.session, env.url, moodle)
    assert resp.status == 200, page
    parsed = read(page)
    text = words(page)
    # Moodle's openid-configuration names no site; its address here is 127.0.0.1, which names
    # nothing an administrator knows: the product and its release instead.
    assert parsed.title.startswith("Install Attune in Moodle"), parsed.title
    assert "127.0.0.1" not in parsed.title
    assert "Install Attune in Moodle" in text and "Moodle 4.5.1+ (Build: 20250110)" in text
    # Plain words, not scope URLs or claim names.
    assert "purl.imsglobal.org" not in text
    assert not re.search(r"\biss\b|\bsub\b|given_name", text), text
    assert "their name, but not their email address" in text
    assert "Read the list of people in those courses and their roles" in text
    assert "gradebook" not in text  # grades are not asked for by default
    assert_written_for_the_admin(page)


async def test_install_page_names_the_canvas_account_not_its_version_word(
    infra: Infra, pool: asyncpg.Pool, canvas: RegistrationPlatform
) -> None:
    async for env in _env(infra, pool, ags_enabled=True, canvas_privacy_level="anonymous"):
        resp, page = await open_install_page(env.session, env.url, canvas)
        assert resp.status == 200, page
        parsed = read(page)
        text = words(page)
        assert parsed.title.startswith("Install Attune in Test University"), parsed.title
        assert "cloud" not in text.lower()  # Canvas's "version" is a word, not a version
        assert "an identifier for them, but not their name or email address" in text
        assert "Add columns to the course gradebook and send scores to them" in text
        assert "shows this as the privacy level \N{LEFT DOUBLE QUOTATION MARK}Anonymous" in text
        assert "purl.imsglobal.org" not in text


# --- the done page -------------------------------------------------------------------------------


async def register(
    env: Env, platform: RegistrationPlatform, placements: list[str], *, code: str | None = None
) -> tuple[aiohttp.ClientResponse, str]:
    _, page = await open_install_page(env.session, env.url, platform)
    done = await submit_install(
        env.session,
        env.url,
        form_value(page),
        placements=placements,
        credential=("install_code", code or await env.code()),
    )
    return done, await done.text()


async def test_moodle_done_page_shows_the_deployment_id_and_what_to_switch_on(
    env: Env, moodle: RegistrationPlatform
) -> None:
    moodle.fixed_client_id = "moodle-client-pages"
    done, page = await register(env, moodle, ["deep_linking"])
    assert done.status == 200, page
    text = words(page)
    deployment = moodle.client.deployment_id
    assert f"Deployment ID {deployment}" in text, text  # an id, not "Deployments 1"
    assert re.search(rf'<code class="deployment">{deployment}</code>', page)
    assert "Attune is registered with Moodle" in text
    assert "Moodle lists the new tool as Pending: press Activate" in text
    assert "Tool configuration usage" in text
    assert "Show in activity chooser and as a preconfigured tool" in text
    assert "Embed, without blocks" in text
    assert_written_for_the_admin(page)

    # Moodle's registration update (same client id, with the re-registration code an admin
    # issued for it): Moodle keeps the tool's state, so the page must not send the
    # administrator looking for a pending tool; it resets the usage setting.
    platform_id = await env.pool.fetchval(
        "SELECT id FROM platforms WHERE client_id = 'moodle-client-pages'"
    )
    moodle.new_token()
    again, page = await register(env, moodle, [], code=await env.code(platform_id))
    assert again.status == 200, page
    text = words(page)
    assert "Attune's registration with Moodle is updated" in text
    assert "Pending" not in text
    assert "kept its state, so an active tool stays active" in text
    assert "an update like this one included" in text
    # Moodle answered with the tool's deployment id; Attune lists every one it knows.
    assert f"Deployment IDs {deployment}, {moodle.client.deployment_id}" in text, text


async def test_canvas_done_page_without_deployment_and_with_trimmed_grants(
    infra: Infra, pool: asyncpg.Pool, canvas: RegistrationPlatform
) -> None:
    canvas.admin_edits = {"drop_placements": ["link_selection"], "privacy_level": "anonymous"}
    async for env in _env(infra, pool):
        done, page = await register(env, canvas, ["course_navigation", "link_selection"])
        assert done.status == 200, page
        text = words(page)
        assert "Attune is registered with Test University" in text
        assert "Deployment ID none yet" in text
        assert "Not shown in: Module item / link selection" in text, text
        assert "Privacy level: Anonymous instead of Name only" in text
        assert "'" not in " ".join(re.findall(r"Privacy level:[^<]*", page))  # no Python repr
        assert_written_for_the_admin(page)


# --- a refused install code ----------------------------------------------------------------------


async def test_refused_install_code_offers_a_field_for_another_code(
    env: Env, moodle: RegistrationPlatform
) -> None:
    _, page = await open_install_page(env.session, env.url, moodle)
    signed = form_value(page)
    used = await env.code()
    await env.pool.execute("UPDATE install_codes SET used_at = now() WHERE label = 'pages'")
    refused = await env.session.post(
        f"{env.url}/lti/register",
        data=[
            ("form", signed),
            ("placement", "deep_linking"),
            ("placement", "<script>x</script>"),
            ("install_code", used),
        ],
    )
    page = await refused.text()
    assert refused.status == 403, page
    assert refused.headers["X-Request-Id"] in page
    csp = refused.headers["Content-Security-Policy"]
    assert "form-action 'self'" in csp and csp.endswith(f"frame-ancestors 'self' {moodle.base_url}")
    parsed = read(page)
    text = words(page)
    assert parsed.title.startswith("That install code was not accepted")
    assert "This install code has already been used" in text
    assert "install_code_used" in text
    assert "attune admin create-install-code" in text
    assert_written_for_the_admin(page)
    assert "<script>x</script>" not in page and "&lt;script&gt;" not in page  # never echoed
    fields = {i.get("name"): i for i in parsed.inputs}
    assert fields["form"]["value"] == signed  # the LMS's registration is still open
    assert fields["install_code"].get("aria-invalid") == "true"
    assert [i["value"] for i in parsed.inputs if i.get("name") == "placement"] == ["deep_linking"]
    assert moodle.registrations == []

    # The administrator types a new code into that field: registered, without restarting the
    # LMS's flow.
    data = [(i["name"], i.get("value", "")) for i in parsed.inputs if i.get("type") == "hidden"]
    data.append(("install_code", await env.code()))
    assert parsed.form_action == "/lti/register"
    done = await env.session.post(f"{env.url}{parsed.form_action}", data=data)
    page = await done.text()
    assert done.status == 200, page
    assert "Attune is registered with Moodle" in words(page)
    assert len(moodle.registrations) == 1
    sent = moodle.registrations[0]["https://purl.imsglobal.org/spec/lti-tool-configuration"]
    assert [m["type"] for m in sent["messages"]] == [
        "LtiResourceLinkRequest",
        "LtiDeepLinkingRequest",
    ]


async def test_refused_admin_token_offers_a_field_for_another_token(
    infra: Infra, pool: asyncpg.Pool, moodle: RegistrationPlatform
) -> None:
    async for env in _env(infra, pool, registration_auth="admin_token"):
        _, page = await open_install_page(env.session, env.url, moodle)
        refused = await submit_install(
            env.session,
            env.url,
            form_value(page),
            placements=[],
            credential=("admin_token", "attune_at_" + "A" * 43),
        )
        page = await refused.text()
        assert refused.status == 401, page
        parsed = read(page)
        assert {i.get("name") for i in parsed.inputs} >= {"form", "admin_token"}
        assert "attune admin create-token NAME" in words(page)
        assert_written_for_the_admin(page)


# --- error pages ---------------------------------------------------------------------------------


async def test_registration_error_pages_speak_to_the_reader(
    env: Env, moodle: RegistrationPlatform
) -> None:
    resp = await env.session.get(f"{env.url}/lti/register")
    page = await resp.text()
    assert resp.status == 400 and "openid_configuration_missing" in page
    assert_written_for_the_admin(page)
    assert "whoever runs Attune finds this request in its logs" in words(page)
    resp = await env.session.get(f"{env.url}/admin/nothing-here")
    page = await resp.text()
    assert resp.status == 404
    assert_written_for_the_admin(page)
