"""Every student and teacher in their own language (issue #18), through the real services.

The launch's ``launch_presentation.locale`` (in each LMS's spelling) picks the app's language,
carried in the launch redirect and the launch token; pages outside a launch follow the
browser's Accept-Language; the LMS is told the tool's labels in every language.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.registration.cli import create_install_code
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform, query_of
from tests.fakes.registration_platform import (
    RegistrationPlatform,
    form_value,
)
from tests.lti_support import (
    LtiStack,
    RegistrationEnv,
    browser,
    full_launch,
    login,
    registration_env,
    start_stack,
)

pytestmark = pytest.mark.integration
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[LtiStack]:
    s, exits = await start_stack(infra, pool)
    try:
        yield s
    finally:
        await exits.aclose()


def app_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="attune-data">(.*?)</script>', page)
    assert found is not None, page[:500]
    data: dict[str, Any] = json.loads(found.group(1))
    return data


async def launch(
    stack: LtiStack,
    platform: FakePlatform,
    locale: str,
    *,
    roles: list[str] | None = None,
    accept_language: str | None = None,
) -> tuple[str, str, str]:
    """A launch whose LMS user has ``locale``; returns the app URL, its page and the token."""
    client = platform.add_client(stack.redirect_uris())
    await stack.register(platform, client)
    hint: dict[str, Any] = {"locale": locale, "nonce": locale + str(id(client))}
    if roles:
        hint["roles"] = roles
    headers = {"Accept-Language": accept_language} if accept_language else None
    async with browser(headers) as b:
        resp = await full_launch(b, stack.url, platform, client, lti_message_hint=json.dumps(hint))
        assert resp.status == 303, await resp.text()
        location = resp.headers["Location"]
        url, _, fragment = location.partition("#lt=")
        page = await b.get(url)
        assert page.status == 200
        return url, await page.text(), fragment


@pytest.mark.parametrize(
    ("flavour", "locale", "tag", "direction", "loading"),
    [
        ("canvas", "es", "es", "ltr", "Cargando…"),
        ("canvas", "pt-BR", "pt-BR", "ltr", "Carregando…"),
        ("canvas", "zh-Hans", "zh-Hans", "ltr", "正在加载…"),
        ("canvas", "en-AU-x-unimelb", "en", "ltr", "Loading…"),
        ("moodle", "ar", "ar", "rtl", "جارٍ التحميل…"),
        ("moodle", "pt_br", "pt-BR", "ltr", "Carregando…"),
        ("moodle", "zh_cn", "zh-Hans", "ltr", "正在加载…"),
        ("moodle", "de_du", "de", "ltr", "Wird geladen …"),
    ],
)
async def test_the_launch_locale_picks_the_app_language(
    stack: LtiStack,
    canvas: FakePlatform,
    moodle: FakePlatform,
    flavour: str,
    locale: str,
    tag: str,
    direction: str,
    loading: str,
) -> None:
    platform = canvas if flavour == "canvas" else moodle
    url, page, _ = await launch(stack, platform, locale, accept_language="fr")
    assert f"lang={tag}" in url  # the redirect carries the launch's choice
    assert f'<html lang="{tag}" dir="{direction}">' in page
    data = app_data(page)
    assert data["strings"]["app.loading"] == loading
    assert f">{loading}</p>" in page  # the template's own strings too
    words = [w["label"] for band in data["vocabularies"]["full"] for w in band["words"]]
    assert len(words) == 50 and len(set(words)) == 50


async def test_an_unknown_launch_locale_falls_back_to_the_browser_then_english(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    _, page, _ = await launch(stack, canvas, "ja", accept_language="sv, nl;q=0.5")
    assert '<html lang="nl" dir="ltr">' in page
    _, page, _ = await launch(stack, canvas, "zh-Hant", accept_language="ja")
    assert '<html lang="en" dir="ltr">' in page


async def test_the_platform_storage_page_speaks_the_launchs_language(
    stack: LtiStack, canvas: FakePlatform
) -> None:
    """A launch in a browser without the login's cookie (Canvas in a frame with third-party
    cookies blocked) first shows the page that fetches the binding from Platform Storage. The
    token is verified before it, so it is in the launch's language, not the browser's."""
    client = canvas.add_client(stack.redirect_uris())
    await stack.register(canvas, client)
    async with browser() as a, browser({"Accept-Language": "en"}) as b:
        resp = await login(a, stack.url, canvas, client, lti_storage_target="_parent")
        page = await resp.text()
        assert resp.status == 200, page
        found = re.search(r'data-next="([^"]*)"', page)
        assert found is not None, page
        params = query_of(html.unescape(found.group(1)))
        token = canvas.id_token(client, nonce=params["nonce"], locale="ar")
        relaunch = await b.post(
            f"{stack.url}/lti/launch",
            data={"id_token": token, "state": params["state"]},
            allow_redirects=False,
        )
        page = await relaunch.text()
        assert relaunch.status == 200, page
        assert 'name="lti_storage_bind"' in page
        assert '<html lang="ar" dir="rtl">' in page
        assert "<title>جارٍ تشغيل Attune…</title>" in page


async def test_api_messages_speak_the_tokens_language(
    stack: LtiStack, moodle: FakePlatform
) -> None:
    """The token carries the language: an error the script shows is in it, whatever the
    browser sends."""
    _, _, token = await launch(stack, moodle, "ar", roles=[INSTRUCTOR], accept_language="en")
    async with aiohttp.ClientSession() as s:
        resp = await s.get(
            f"{stack.url}/api/checkins/checkins/987654",
            headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
        )
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["code"] == "checkin_not_found"  # codes never change
        assert error["message"] == "لا يوجد تسجيل مشاعر كهذا في هذا المقرر."
        created = await s.post(
            f"{stack.url}/api/checkins/checkins",
            json={"question": "¿Qué tal?", "vocabulary": "nope"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status == 422
        error = (await created.json())["error"]
        assert error["fields"]["vocabulary"] == "invalid_choice"  # the script words it
        assert error["message"] == "بعض الحقول ناقصة أو غير صالحة."


async def test_the_app_without_a_launch_follows_the_browser(stack: LtiStack) -> None:
    async with aiohttp.ClientSession() as s:
        resp = await s.get(f"{stack.url}/app/", headers={"Accept-Language": "de-AT, en;q=0.1"})
        page = await resp.text()
        assert '<html lang="de" dir="ltr">' in page
        assert app_data(page)["strings"]["app.no_token"].startswith("Öffne Attune")
        forged = await s.get(
            f"{stack.url}/app/?lang=%3Cscript%3E", headers={"Accept-Language": "x"}
        )
        assert '<html lang="en" dir="ltr">' in await forged.text()


@pytest.mark.parametrize(
    ("accept", "tag", "direction", "title"),
    [
        ("es-MX,es;q=0.9,en;q=0.8", "es", "ltr", "Attune no pudo iniciarse"),
        ("ar", "ar", "rtl", "تعذّر تشغيل Attune"),
        ("zh-CN,zh;q=0.9", "zh-Hans", "ltr", "Attune 无法启动"),
        ("ja, en;q=0.5", "en", "ltr", "Attune could not start"),
    ],
)
async def test_error_pages_outside_a_launch_follow_accept_language(
    stack: LtiStack, accept: str, tag: str, direction: str, title: str
) -> None:
    async with aiohttp.ClientSession() as s:
        resp = await s.get(f"{stack.url}/lti/login", headers={"Accept-Language": accept})
        page = await resp.text()
        assert resp.status == 400
        assert f'<html lang="{tag}" dir="{direction}">' in page
        assert f'<h1 id="error-title">{title}</h1>' in page
        assert "<code>login_missing_param</code>" in page  # the code stays as it is
        as_json = await s.get(
            f"{stack.url}/lti/login",
            headers={"Accept-Language": accept, "Accept": "application/json"},
        )
        assert (await as_json.json())["error"]["code"] == "login_missing_param"


# --- registration: the admin's language, and labels for the LMS ----------------------------


@pytest.fixture
async def env(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[RegistrationEnv]:
    async for e in registration_env(infra, pool, ("us-east-1",)):
        yield e


async def register_in(
    env: RegistrationEnv, platform: RegistrationPlatform, accept: str, placements: list[str]
) -> tuple[str, str, dict[str, Any]]:
    """The dynamic registration as an admin whose browser asks for ``accept``."""
    code, _ = await create_install_code(env.pool, label="i18n", ttl_s=3600)
    headers = {"Accept-Language": accept}
    page = await env.session.get(
        f"{env.url}/lti/register", params=platform.start_params(), headers=headers
    )
    install = await page.text()
    assert page.status == 200, install
    data = [("form", form_value(install)), ("install_code", code)]
    data += [("placement", p) for p in placements]
    done = await env.session.post(f"{env.url}/lti/register", data=data, headers=headers)
    assert done.status == 200, await done.text()
    return install, await done.text(), platform.registrations[-1]


async def test_moodle_registration_in_the_admins_language(
    env: RegistrationEnv, moodle_registration: RegistrationPlatform
) -> None:
    """Moodle keeps one name and one description (registration_helper::registration_to_config
    reads client_name and description): the description is in the admin's language."""
    install, done, body = await register_in(
        env, moodle_registration, "fr-FR,fr;q=0.9", ["activity_chooser"]
    )
    assert '<html lang="fr" dir="ltr">' in install and "Installer Attune dans" in install
    assert '<html lang="fr" dir="ltr">' in done and "Ensuite, dans Moodle" in done
    tool = body["https://purl.imsglobal.org/spec/lti-tool-configuration"]
    assert tool["description"].startswith("Points météo du bien-être")
    assert body["client_name"] == "Attune"
    assert body["client_name#fr"] == "Météo des émotions Attune"


async def test_canvas_registration_messages_carry_every_languages_label(
    env: RegistrationEnv, canvas_registration: RegistrationPlatform
) -> None:
    install, _, body = await register_in(
        env, canvas_registration, "ar", ["course_navigation", "editor_button"]
    )
    assert '<html lang="ar" dir="rtl">' in install
    for message in body["https://purl.imsglobal.org/spec/lti-tool-configuration"]["messages"]:
        assert message["label"] == "Attune"
        assert message["label#es"] == "Check-ins de Attune"
        assert message["label#ar"] == "تسجيلات المشاعر من Attune"
        assert message["label#zh-Hans"] == "Attune 心情打卡"
        assert message["label#pt-BR"] == "Check-ins do Attune"


async def test_canvas_json_labels_every_placement_in_every_language(
    env: RegistrationEnv,
) -> None:
    """Canvas shows ``labels[locale]``, then ``labels[language]``, then ``text``
    (ContextExternalTool#label_for): keys are Canvas's own locale codes."""
    async with aiohttp.ClientSession() as s:
        doc = await (await s.get(f"{env.url}/lti/config/canvas.json")).json()
    settings = doc["extensions"][0]["settings"]
    assert settings["text"] == "Attune"
    assert set(settings["labels"]) == {"en", "es", "fr", "de", "pt-BR", "pt", "nl", "ar", "zh-Hans"}
    assert settings["labels"]["zh-Hans"] == "Attune 心情打卡"
    by_placement = {p["placement"]: p for p in settings["placements"]}
    assert by_placement["course_navigation"]["labels"]["es"] == "Check-ins de Attune"
    assert by_placement["editor_button"]["labels"]["de"] == "Attune-Check-in einfügen"
    assert by_placement["link_selection"]["labels"]["ar"] == "إضافة تسجيل مشاعر من Attune"
    assert by_placement["link_selection"]["labels"]["pt"] == "Adicionar um check-in do Attune"
    assert "zh" not in settings["labels"]  # Traditional Chinese readers keep the English text
    # One document with #20's redirect_uris: every region's launch URL (Canvas's default,
    # the target_link_uri, would refuse every launch).
    assert doc["redirect_uris"] == env.stack.redirect_uris()
