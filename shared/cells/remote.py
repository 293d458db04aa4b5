"""Reading the other cells' clusters from the home region ("read remote, write local")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from shared.db import POOL_KEY
from shared.events.consumer import EventConsumer, Handler
from shared.events.envelope import Event
from shared.tasks import stop_task
from shared.web import METRICS_KEY, SETTINGS_KEY

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def each_cell(
    name: str,
    topic: str,
    handler_for: Callable[[str], Handler],
    *,
    group_id: str,
    after_commit: Callable[[Event], None] | None = None,
) -> CleanupContext:
    """A cleanup context running one consumer of ``topic`` on every other cell's cluster
    (``ATTUNE_CELL_KAFKA``), each with ``handler_for(region)`` (what a cell sends is recorded
    under the region of the cluster it came from) and the consumer group ``group_id`` on that
    cluster. Handlers must be idempotent by themselves (no ``consumed_events`` rows)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        tasks = []
        for region in settings.cells():
            consumer = EventConsumer(
                name=f"{name}-{region}",
                topics=[topic],
                handler=handler_for(region),
                pool=app[POOL_KEY],
                settings=settings.cell_kafka_of(region),
                metrics=app[METRICS_KEY],
                group_id=group_id,
                dedupe=False,
                after_commit=after_commit,
            )
            tasks.append(asyncio.create_task(consumer.run(), name=f"{name}-{region}"))
        yield
        for task in tasks:
            await stop_task(task)

    return ctx
