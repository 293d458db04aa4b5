"""TLS to Postgres: what ``DATABASE_URL``'s libpq parameters mean to Attune, in one place.

``DATABASE_URL`` carries libpq's own TLS parameters, the ones a managed Postgres documents:
``sslmode`` (disable, allow, prefer, require, verify-ca, verify-full) and, to verify the
server, ``sslrootcert``: the CA bundle file that signed its certificate, or ``system`` (libpq
16's spelling) for a certificate from a public CA in the system trust store. The services'
pools and ``attune migrate`` connect through asyncpg with the same URL and the same
``connect_args``, so the two can never read it differently (migrations once went through
SQLAlchemy's own URL handling, which refused ``sslmode``).

``check`` runs when settings load: an unknown mode, or verify-ca / verify-full without a CA
bundle (libpq would quietly look for ``~/.postgresql/root.crt``, which a container lacks), or a
bundle that cannot be read stops the process with one line naming the problem. Messages never
contain the URL (it holds the password).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")
SYSTEM = "system"


def _params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def check(url: str) -> None:
    """Raise ``ValueError`` with the reason when the URL's TLS parameters are unusable."""
    params = _params(url)
    mode = params.get("sslmode")
    if mode is not None and mode not in MODES:
        raise ValueError(f'sslmode "{mode}" is not one of {", ".join(MODES)}')
    root = params.get("sslrootcert")
    if mode in VERIFYING and not root:
        raise ValueError(
            f"sslmode={mode} needs the CA bundle that signed the server's certificate: add "
            "sslrootcert=/path/to/ca.pem (or sslrootcert=system for a public CA)"
        )
    if root == SYSTEM:
        if mode not in (None, "verify-full"):
            raise ValueError("sslrootcert=system goes with sslmode=verify-full (as in libpq)")
    elif root:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=root)
        except ssl.SSLError:  # an OSError too: first
            raise ValueError(f"sslrootcert {root} holds no PEM certificate") from None
        except OSError as exc:
            raise ValueError(f"sslrootcert {root} cannot be read ({exc.strerror})") from None


def connect_args(url: str) -> tuple[str, dict[str, Any]]:
    """The DSN and keyword arguments for ``asyncpg.connect`` / ``create_pool``.

    asyncpg understands libpq's parameters itself, except ``sslrootcert=system``: that one
    becomes an SSL context over the system trust store that checks the host name (libpq
    allows it only with verify-full).
    """
    params = _params(url)
    if params.get("sslrootcert") != SYSTEM:
        return url, {}
    context = ssl.create_default_context()  # the system trust store, hostname checked
    parts = urlsplit(url)
    rest = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "sslrootcert"]
    rest = [(k, v) for k, v in rest if k != "sslmode"]  # the context decides
    return urlunsplit(parts._replace(query=urlencode(rest))), {"ssl": context}
