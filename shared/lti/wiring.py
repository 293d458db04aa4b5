"""aiohttp wiring shared by the login and launch services: secrets, tool URLs, the
registration cache (invalidated by registration events) and the platform-storage script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from shared.db import POOL_KEY
from shared.events import topics
from shared.events.consumer import EventListener
from shared.events.envelope import Event
from shared.lti.registry import RegistrationCache, db_loader
from shared.lti.urls import ToolUrls
from shared.signing import parse_secrets
from shared.tasks import stop_task
from shared.web import SETTINGS_KEY

ASSETS_DIR = Path(__file__).parent / "assets"

URLS_KEY = web.AppKey("tool_urls", ToolUrls)
SECRETS_KEY = web.AppKey("secret_keys", list[bytes])
REGISTRATIONS_KEY = web.AppKey("registrations", RegistrationCache)


def configure_lti(app: web.Application) -> None:
    """Validate LTI settings now, so a bad value stops start-up (SettingsError) by name."""
    settings = app[SETTINGS_KEY]
    app[URLS_KEY] = ToolUrls.from_settings(settings)
    app[SECRETS_KEY] = parse_secrets(settings.secret_keys)


async def registrations_ctx(app: web.Application) -> AsyncIterator[None]:
    """The registration cache plus a broadcast listener that drops entries on change."""
    cache = RegistrationCache(db_loader(app[POOL_KEY]))
    app[REGISTRATIONS_KEY] = cache

    async def on_event(event: Event) -> None:
        issuer = event.data.get("issuer")
        client_id = event.data.get("client_id")
        if isinstance(issuer, str):
            cache.invalidate(issuer, client_id if isinstance(client_id, str) else None)
        else:
            cache.invalidate()

    listener = EventListener(
        name="registration-cache",
        topics=[topics.REGISTRATION],
        handler=on_event,
        settings=app[SETTINGS_KEY],
    )
    task = asyncio.create_task(listener.run(), name="registration-cache-listener")
    yield
    await stop_task(task)
