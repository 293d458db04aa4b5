"""The login service: OIDC third-party login initiation (per region)."""

from __future__ import annotations

from aiohttp import web

from shared.app import service_app
from shared.settings import Settings

SERVICE = "login"


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, service=SERVICE, relays_events=False)
