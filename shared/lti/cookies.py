"""The state-binding cookie, written by hand: Python's ``http.cookies`` (before 3.14) rejects
the ``Partitioned`` attribute that keeps the cookie alive in a third-party iframe (CHIPS)."""

from __future__ import annotations

import re

from aiohttp import web

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def set_partitioned_cookie(
    response: web.StreamResponse, name: str, value: str, *, max_age: int, path: str
) -> None:
    """``Secure; HttpOnly; SameSite=None; Partitioned`` cookie (value may be empty to delete)."""
    if not _TOKEN.match(name) or (value and not _TOKEN.match(value)):
        raise ValueError("cookie names and values must be URL-safe tokens")
    response.headers.add(
        "Set-Cookie",
        f"{name}={value}; Max-Age={max_age}; Path={path}; Secure; HttpOnly; SameSite=None; "
        "Partitioned",
    )
