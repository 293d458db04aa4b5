"""Disabled deployments make their courses read-only.

A work consumer of ``attune.registration.v1`` (group ``attune.checkins-deployments``) keeps
``checkin_deployment_status``: ``deployment.disabled`` and ``registration.deleted`` mark
deployments read-only, ``deployment.approved`` lifts it. Every state-changing API request of a
launch from such a deployment is refused with 403 ``deployment_read_only``; reading and
exporting keep working, so a school can still take its data with it.

Order-tolerant: a row holds the time of the event that set it (``updated_at``), and an older
event (a replay after a broker loss, ``attune events replay``, delivered after a newer one the
consumer had already applied) never overwrites a newer state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiohttp import web

from services.checkins.auth import identity
from services.checkins.keys import TOKENS_KEY
from services.checkins.queries import read_only_sql
from shared.db import POOL_KEY
from shared.errors import AttuneError, Forbidden
from shared.events import topics
from shared.events.consumer import EventConsumer
from shared.events.envelope import Event
from shared.i18n.catalogues import _
from shared.tasks import stop_task
from shared.web import METRICS_KEY, SETTINGS_KEY

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UPSERT = """
INSERT INTO checkin_deployment_status AS s (platform_id, deployment_id, read_only, updated_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (platform_id, deployment_id)
DO UPDATE SET read_only = excluded.read_only, updated_at = excluded.updated_at
    WHERE s.updated_at <= excluded.updated_at
"""


async def apply_registration(conn: asyncpg.Connection, event: Event) -> None:
    data = event.data
    platform_id = data.get("platform_id")
    if not isinstance(platform_id, int):
        return
    if event.type in ("deployment.disabled", "deployment.approved"):
        deployment = data.get("deployment_id")
        if isinstance(deployment, str) and deployment:
            read_only = event.type == "deployment.disabled"
            await conn.execute(_UPSERT, platform_id, deployment, read_only, event.occurred_at)
    elif event.type == "registration.deleted":
        deployments = data.get("deployment_ids")
        for deployment in deployments if isinstance(deployments, list) else []:
            if isinstance(deployment, str) and deployment:
                await conn.execute(_UPSERT, platform_id, deployment, True, event.occurred_at)


async def is_read_only(pool: asyncpg.Pool, platform_id: int, deployment_id: str) -> bool:
    return bool(
        await pool.fetchval(f"SELECT {read_only_sql('$1', '$2')}", platform_id, deployment_id)
    )


def deployment_read_only() -> Forbidden:
    return Forbidden(
        _(
            "This installation of Attune has been disabled by an administrator, so "
            "check-ins can be viewed and exported but not changed."
        ),
        code="deployment_read_only",
        hint=_("Ask your LMS administrator to re-enable Attune for this course."),
    )


_CHECKS_ITSELF = "_attune_checks_read_only_itself"
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


def checks_read_only_itself(handler: H) -> H:
    """Mark a write handler whose own statement re-checks the read-only state (answering, the
    hot write path): the middleware then spends no query on it."""
    setattr(handler, _CHECKS_ITSELF, True)
    return handler


@web.middleware
async def read_only_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if (
        request.method in WRITE_METHODS
        and (request.path.startswith("/api/checkins/") or request.path == "/app/deep-link")
        and not getattr(request.match_info.handler, _CHECKS_ITSELF, False)
    ):
        try:
            who = identity(request, request.app[TOKENS_KEY])
        except AttuneError:  # no or bad launch token: the handler refuses it with its code
            return await handler(request)
        if await is_read_only(request.app[POOL_KEY], who.platform_id, who.deployment_id):
            raise deployment_read_only()
    return await handler(request)


async def deployments_ctx(app: web.Application) -> AsyncIterator[None]:
    consumer = EventConsumer(
        name="checkins-deployments",
        topics=[topics.REGISTRATION],
        handler=apply_registration,
        pool=app[POOL_KEY],
        settings=app[SETTINGS_KEY],
        metrics=app[METRICS_KEY],
        group_id="attune.checkins-deployments",
    )
    task = asyncio.create_task(consumer.run(), name="checkins-deployments")
    yield
    await stop_task(task)
