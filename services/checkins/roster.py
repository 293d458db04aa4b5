"""The course roster projection, built from ``launch.completed`` events.

A work consumer (group ``attune.checkins-roster``): each launch upserts (course, subject) with
the latest name and role kinds. Duplicates stop at the consumer's dedupe; a late or replayed
older event never overwrites a newer one (``last_seen`` guard), so the effect is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from services.checkins import nrps, queries
from services.checkins.queries import Course
from shared.db import POOL_KEY
from shared.events import topics
from shared.events.consumer import EventConsumer
from shared.events.envelope import Event
from shared.logs import get_logger
from shared.lti.roles import KINDS
from shared.tasks import stop_task
from shared.web import METRICS_KEY, SETTINGS_KEY

log = get_logger(__name__)

CONSUMER_NAME = "checkins-roster"
GROUP_ID = "attune.checkins-roster"
ROLE_KINDS = frozenset(KINDS.values())


DEFAULT_NRPS_REFRESH_S = 3600


async def apply_launch(
    conn: asyncpg.Connection, event: Event, *, nrps_refresh_s: int = DEFAULT_NRPS_REFRESH_S
) -> None:
    if event.type != "launch.completed":
        return
    data = event.data
    platform = data.get("platform")
    context = data.get("context")
    user = data.get("user")
    if not (isinstance(platform, dict) and isinstance(context, dict) and isinstance(user, dict)):
        return
    platform_id, context_id, subject = platform.get("id"), context.get("id"), user.get("sub")
    if not (isinstance(platform_id, int) and isinstance(context_id, str) and context_id):
        return  # a launch outside a course (no context) adds nobody to a roster
    if not isinstance(subject, str) or not subject:
        return
    name = user.get("name")
    kinds = data.get("role_kinds")
    role_kinds = sorted({k for k in kinds if k in ROLE_KINDS}) if isinstance(kinds, list) else []
    await queries.upsert_roster(
        conn,
        Course(platform_id, context_id),
        subject,
        name=name[:200] if isinstance(name, str) else None,
        role_kinds=role_kinds,
        seen_at=event.occurred_at,
    )
    nrps_url = data.get("nrps_url")
    if isinstance(nrps_url, str) and nrps_url.startswith(("https://", "http://")):
        # The course has a memberships service: (re)fetch its roster, rate-limited per course,
        # with the token endpoint of the environment the launch came from (hosted Canvas beta
        # and test have their own; None: the platform's).
        token_url = data.get("token_url")
        await nrps.request_sync(
            conn,
            platform_id,
            context_id,
            nrps_url[:2000],
            nrps_refresh_s,
            token_url=token_url[:2000]
            if isinstance(token_url, str) and token_url.startswith(("https://", "http://"))
            else None,
        )


def roster_consumer(app: web.Application) -> EventConsumer:
    return EventConsumer(
        name=CONSUMER_NAME,
        topics=[topics.LAUNCH],
        handler=functools.partial(
            apply_launch, nrps_refresh_s=app[SETTINGS_KEY].checkin_nrps_refresh_s
        ),
        pool=app[POOL_KEY],
        settings=app[SETTINGS_KEY],
        metrics=app[METRICS_KEY],
        group_id=GROUP_ID,
    )


async def roster_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the roster consumer runs for the app's lifetime."""
    task = asyncio.create_task(roster_consumer(app).run(), name="checkins-roster-consumer")
    yield
    await stop_task(task)
