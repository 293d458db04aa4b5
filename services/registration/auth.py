"""Who may change the registration store: holders of an unrevoked admin API token."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.registration import credentials, errors, queries
from shared.db import POOL_KEY


@dataclass(frozen=True)
class Admin:
    token_id: int
    name: str

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"


async def authenticate(pool: asyncpg.Pool, token: str | None) -> Admin:
    """The admin holding ``token``; raises ``AdminAuthError`` (401) otherwise."""
    if token is None or not token:
        raise errors.admin_token_missing()
    if not credentials.well_formed(token):
        raise errors.admin_token_invalid()
    async with pool.acquire() as conn:
        row = await queries.admin_token(conn, credentials.digest(token))
        if row is None or not credentials.same_digest(row["token_hash"], token):
            raise errors.admin_token_invalid()
        if row["revoked_at"] is not None:
            raise errors.admin_token_revoked()
        if row["stale"]:  # last_used_at is kept to the minute, not written per request
            await queries.touch_admin_token(conn, row["id"])
    return Admin(int(row["id"]), str(row["name"]))


async def require_admin(request: web.Request) -> Admin:
    return await authenticate(
        request.app[POOL_KEY], credentials.bearer(request.headers.get("Authorization"))
    )
