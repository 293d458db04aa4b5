"""The language of a request: the launch's (set on the request by whoever read the launch
token or the signed launch reference), else the browser's ``Accept-Language``, else English."""

from __future__ import annotations

from aiohttp import web

from shared.i18n.languages import Language, accept_language, negotiate

LANGUAGE_KEY = web.RequestKey("language", Language)


def request_language(request: web.Request) -> Language:
    """The reader's language for this request (remembered on the request once chosen)."""
    known: Language | None = request.get(LANGUAGE_KEY)
    if known is None:
        known = negotiate(accept_language(request.headers.get("Accept-Language")))
        request[LANGUAGE_KEY] = known
    return known


def set_language(request: web.Request, *preferences: str | None) -> Language:
    """Choose the request's language from known preferences (a launch's locale) before the
    browser's; returns the choice."""
    chosen = negotiate(*preferences, accept_language(request.headers.get("Accept-Language")))
    request[LANGUAGE_KEY] = chosen
    return chosen
