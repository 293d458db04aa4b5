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
from shared.lti.canvas import CanvasClouds, clouds_from
from shared.lti.frame import FrameRefs, PlatformFrames, db_origins_loader
from shared.lti.registry import RegistrationCache, db_loader
from shared.lti.urls import ToolUrls
from shared.signing import parse_secrets
from shared.tasks import stop_task
from shared.web import SETTINGS_KEY

ASSETS_DIR = Path(__file__).parent / "assets"

URLS_KEY = web.AppKey("tool_urls", ToolUrls)
SECRETS_KEY = web.AppKey("secret_keys", list[bytes])
REGISTRATIONS_KEY = web.AppKey("registrations", RegistrationCache)
FRAME_REFS_KEY = web.AppKey("frame_refs", FrameRefs)
FRAMES_KEY = web.AppKey("platform_frames", PlatformFrames)
CLOUDS_KEY = web.AppKey("canvas_clouds", CanvasClouds)


def configure_lti(app: web.Application) -> None:
    """Validate LTI settings now, so a bad value stops start-up (SettingsError) by name."""
    settings = app[SETTINGS_KEY]
    app[URLS_KEY] = ToolUrls.from_settings(settings)
    secrets = parse_secrets(settings.secret_keys)
    app[SECRETS_KEY] = secrets
    app[FRAME_REFS_KEY] = FrameRefs(secrets)
    app[CLOUDS_KEY] = clouds_from(settings)


async def registrations_ctx(app: web.Application) -> AsyncIterator[None]:
    """The registration cache plus a broadcast listener that drops entries on change."""
    clouds = app[CLOUDS_KEY]
    cache = RegistrationCache(db_loader(app[POOL_KEY], clouds), clouds=clouds)
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


async def framed_by(
    app: web.Application, platform_id: int | None, page_origin: str | None = None
) -> tuple[str, ...]:
    """The origins allowed to frame a page of this platform's launch (``platform_frames_ctx``):
    the platform's, plus the LMS page origin the launch itself proved (its signed return URL,
    carried in the frame reference or the launch token). None at all ('self' only) when the
    platform is unknown or deleted."""
    if platform_id is None:
        return ()
    origins = await app[FRAMES_KEY].get(platform_id)
    if origins is None:
        return ()
    if page_origin is not None and page_origin not in origins:
        return (*origins, page_origin)
    return origins


async def platform_frames_ctx(app: web.Application) -> AsyncIterator[None]:
    """Frame ancestors by platform id (pages framed by the LMS after the launch), cached and
    dropped on registration events seen by this replica (every replica reads every event)."""
    frames = PlatformFrames(db_origins_loader(app[POOL_KEY], app[CLOUDS_KEY]))
    app[FRAMES_KEY] = frames

    async def on_event(event: Event) -> None:
        platform_id = event.data.get("platform_id")
        frames.invalidate(platform_id if isinstance(platform_id, int) else None)

    listener = EventListener(
        name="platform-frames",
        topics=[topics.REGISTRATION],
        handler=on_event,
        settings=app[SETTINGS_KEY],
    )
    task = asyncio.create_task(listener.run(), name="platform-frames-listener")
    yield
    await stop_task(task)
