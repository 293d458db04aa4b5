"""The launch service: id_token verification and the hand-off to the app."""

from __future__ import annotations

from aiohttp import web

from shared.app import service_app
from shared.settings import Settings

SERVICE = "launch"


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, service=SERVICE, relays_events=True)
