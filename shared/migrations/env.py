"""Alembic environment: runs migrations over asyncpg under a Postgres advisory lock.

The lock makes concurrent ``attune migrate`` runs (a Kubernetes Job retried, two developers'
shells) wait for each other instead of racing; lock_timeout keeps a migration from queueing
behind long-running application transactions forever.
"""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared import pgtls

# Any constant shared by every Attune migration run; distinct from the outbox relay's lock.
MIGRATION_LOCK_ID = 0x417474756E65_01

config = context.config


def _run(connection: Connection) -> None:
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
    connection.exec_driver_sql("SET lock_timeout = '10s'")
    connection.exec_driver_sql("SET statement_timeout = '300s'")
    connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=None,
            transaction_per_migration=True,
            version_table="alembic_version",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
        connection.commit()


async def _connect() -> asyncpg.Connection:
    dsn, tls = pgtls.connect_args(config.attributes["database_url"])
    return await asyncpg.connect(dsn, **tls)


async def _main() -> None:
    # The URL names only the dialect: the connection comes from asyncpg with DATABASE_URL
    # itself (libpq's TLS parameters included), as in the services.
    engine = create_async_engine(
        "postgresql+asyncpg://", poolclass=pool.NullPool, async_creator=_connect
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `attune migrate`")
asyncio.run(_main())
