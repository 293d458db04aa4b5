"""The registration service: dynamic and manual registration, Canvas JSON config, admin."""

from __future__ import annotations

from aiohttp import web

from shared.app import service_app
from shared.settings import Settings

SERVICE = "registration"


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, service=SERVICE, relays_events=True)
