"""Which database errors mean "Postgres is unavailable right now", in one place.

The error edge answers them with 503 ``database_unavailable``; background loops, the outbox
relay and consumers retry them. Imports nothing of the project's, so every layer can use it.
"""

from __future__ import annotations

import socket
import ssl

import asyncpg

# Postgres unreachable, starting up, shutting down or gone in the middle of a request (asyncpg
# then also reports a closed connection, or one left mid-protocol, as Interface/InternalClient
# errors; a failed connect as a bare refused or reset connection), or up but not answering in
# time (the server's statement timeout cancels the query; the client's connect, pool or command
# timeout raises TimeoutError — outbound HTTP timeouts never get here, shared/http.py turns them
# into their own errors), or not to be trusted or found (a server certificate the CA bundle does
# not vouch for, e.g. after the database's certificate moved to another CA; a host name that
# does not resolve). Not a bug: the request may succeed when retried, and /readyz reports the
# outage.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,  # refused, reset, aborted, broken pipe
    ssl.SSLError,  # TLS refused or the certificate not verified (sslmode=verify-*)
    socket.gaierror,  # the host name does not resolve
    TimeoutError,
)
