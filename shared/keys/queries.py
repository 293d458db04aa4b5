"""SQL on ``tool_keys``, one small function per statement, connection first.

Times are always passed in by the caller (the key store's clock), never taken from the
database's ``now()``, so rotation can be driven by an injected clock and replicas agree on
what they wrote.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.keys.crypto import WrappedKey

# Any constant of the Attune lock space; distinct from migrations (01) and the relay (02).
KEYS_LOCK_ID = 0x417474756E65_03


async def lock(conn: asyncpg.Connection) -> None:
    """Serialise key-state changes across replicas until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", KEYS_LOCK_ID)


async def live_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every key that is not removed, oldest first; no key material."""
    return list(
        await conn.fetch(
            """
            SELECT kid, state, created_at, activated_at, retired_at, removed_at FROM tool_keys
            WHERE state <> 'removed' ORDER BY created_at, kid
            """
        )
    )


async def all_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every key including removed ones, oldest first; no key material."""
    return list(
        await conn.fetch(
            """
            SELECT kid, state, created_at, activated_at, retired_at, removed_at FROM tool_keys
            ORDER BY created_at, kid
            """
        )
    )


async def published_public_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """kid, state, created_at and public key of every key the JWKS publishes: this cell's
    own, then (home region) the other cells' (``cell_keys``, shared/cells/keys.py)."""
    return list(
        await conn.fetch(
            """
            SELECT kid, state, created_at, public_key, 0 AS cell FROM tool_keys
            WHERE state IN ('next', 'current', 'retired')
            UNION ALL
            SELECT kid, state, created_at, public_key, 1 AS cell FROM cell_keys
            WHERE state IN ('next', 'current', 'retired')
            ORDER BY cell, created_at, kid
            """
        )
    )


async def public_key(conn: asyncpg.Connection, kid: str) -> bytes | None:
    """The stored public half of a key (SubjectPublicKeyInfo DER)."""
    value: bytes | None = await conn.fetchval(
        "SELECT public_key FROM tool_keys WHERE kid = $1", kid
    )
    return value


async def current_private(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The current key's kid and wrapped private key, if there is a current key."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT kid, private_key, kek_id, nonce FROM tool_keys WHERE state = 'current'"
    )
    return row


async def wrapped_private_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """kid and wrapped private key of every key that still has one."""
    return list(
        await conn.fetch(
            "SELECT kid, private_key, kek_id, nonce FROM tool_keys "
            "WHERE private_key IS NOT NULL ORDER BY created_at, kid"
        )
    )


async def insert_key(
    conn: asyncpg.Connection,
    *,
    kid: str,
    state: str,
    public_key: bytes,
    wrapped: WrappedKey,
    created_at: datetime,
    activated_at: datetime | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO tool_keys
            (kid, state, public_key, private_key, kek_id, nonce, created_at, activated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        kid,
        state,
        public_key,
        wrapped.ciphertext,
        wrapped.kek_id,
        wrapped.nonce,
        created_at,
        activated_at,
    )


async def activate(conn: asyncpg.Connection, kid: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE tool_keys SET state = 'current', activated_at = $2 WHERE kid = $1", kid, at
    )


async def retire(conn: asyncpg.Connection, kid: str, at: datetime) -> None:
    await conn.execute(
        "UPDATE tool_keys SET state = 'retired', retired_at = $2 WHERE kid = $1", kid, at
    )


async def remove(conn: asyncpg.Connection, kid: str, at: datetime) -> None:
    """Unpublish a key for good and wipe its private part; the row stays as history."""
    await conn.execute(
        """
        UPDATE tool_keys
        SET state = 'removed', removed_at = $2, private_key = NULL, kek_id = NULL, nonce = NULL
        WHERE kid = $1
        """,
        kid,
        at,
    )


async def rewrap(conn: asyncpg.Connection, kid: str, wrapped: WrappedKey) -> None:
    await conn.execute(
        "UPDATE tool_keys SET private_key = $2, kek_id = $3, nonce = $4 WHERE kid = $1",
        kid,
        wrapped.ciphertext,
        wrapped.kek_id,
        wrapped.nonce,
    )
