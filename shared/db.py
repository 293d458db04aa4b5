"""The asyncpg pool as an aiohttp cleanup context, and its readiness check.

The pool opens no connection at start-up, so a service starts (and reports not-ready) while
Postgres is down and becomes ready by itself once Postgres answers; broken connections are
replaced by asyncpg on the next acquire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from shared import pgtls
from shared.dberrors import DATABASE_UNAVAILABLE
from shared.settings import Settings
from shared.web import SERVICE_KEY, SETTINGS_KEY, ReadinessCheck, add_readiness_check

POOL_KEY = web.AppKey("pool", asyncpg.Pool)

# What a background loop survives (and retries next round): Postgres unavailable, and any
# error a statement of its own may meet (a lock timeout, a deadlock).
DB_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncpg.PostgresError, *DATABASE_UNAVAILABLE)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that skips asyncpg's per-release reset query.

    asyncpg resets every connection it takes back (``RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()``): one extra round trip per request on the hot path. Attune never
    leaves session state on a pooled connection — settings are fixed at connect time, advisory
    locks are transaction-scoped, LISTEN uses dedicated connections — and asyncpg still rolls
    back any open transaction on release, so the reset is pure cost.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(settings: Settings, *, application_name: str) -> asyncpg.Pool:
    """A pool whose every connection carries the statement timeout and an application name."""
    dsn, tls = pgtls.connect_args(settings.database_url.get_secret_value())
    pool = await asyncpg.create_pool(
        dsn=dsn,
        **tls,
        min_size=0,
        max_size=settings.db_pool_max,
        max_inactive_connection_lifetime=60.0,
        connection_class=PooledConnection,
        command_timeout=settings.db_statement_timeout_ms / 1000 + 1,
        timeout=5.0,
        server_settings={
            "application_name": f"attune-{application_name}",
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "idle_in_transaction_session_timeout": "60000",
        },
    )
    assert pool is not None
    return pool


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[POOL_KEY]`` for the app's lifetime, plus a ``postgres`` check."""
    pool = await create_pool(app[SETTINGS_KEY], application_name=app[SERVICE_KEY])
    app[POOL_KEY] = pool

    async def check() -> None:
        async with pool.acquire(timeout=1.5) as conn:
            await conn.fetchval("SELECT 1", timeout=1.5)

    add_readiness_check(app, ReadinessCheck("postgres", check))
    yield
    try:
        # close() waits for every connection to be released; a stuck one must not hang the
        # shutdown past the grace period.
        await asyncio.wait_for(pool.close(), 10)
    except TimeoutError:
        pool.terminate()
