"""The checkins service: The check-in product: UI, API, insights."""

from __future__ import annotations

from aiohttp import web

from shared.app import service_app
from shared.settings import Settings

SERVICE = "checkins"


def create_app(settings: Settings) -> web.Application:
    return service_app(settings, service=SERVICE, relays_events=True)
