"""The common wiring of a service: base app, Postgres pool, Kafka probe, outbox relay."""

from __future__ import annotations

from aiohttp import web

from shared.db import pool_ctx
from shared.events.relay import relay_ctx
from shared.kafka import kafka_probe_ctx
from shared.settings import Settings
from shared.web import base_app


def service_app(settings: Settings, *, service: str, relays_events: bool) -> web.Application:
    """A service app with its resources as cleanup contexts, in dependency order.

    ``relays_events``: the service writes events to the outbox, so it also runs a relay (any
    number of relays may run; they take turns under an advisory lock).
    """
    app = base_app(settings, service=service)
    app.cleanup_ctx.append(pool_ctx)
    app.cleanup_ctx.append(kafka_probe_ctx)
    if relays_events:
        app.cleanup_ctx.append(relay_ctx)
    return app
