"""Request bodies read safely: a body that cannot be decoded is the client's error, not ours.

aiohttp's ``request.post()`` and ``request.text()`` raise whatever the decoding hits — an
unknown ``charset`` (``LookupError``), bytes that are not in that charset
(``UnicodeDecodeError``), a multipart body without or with a wrong boundary (``ValueError``),
an unknown part encoding (``RuntimeError``) — and JSON nested deeper than the interpreter's
recursion limit raises ``RecursionError``. None of these is a server fault; here they become a
4xx with a stable code (``form_invalid``) or, for JSON, one ``ValueError`` the caller maps to
its own code. Body size limits (413) pass through untouched.

A JSON endpoint reads its body with ``read_json``, which first refuses a body that is not
declared ``application/json`` (415 ``json_required``): every JSON endpoint of every service
answers the same way to a form, ``text/plain`` or a missing content type.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from multidict import MultiDictProxy

from shared.errors import AttuneError
from shared.i18n.catalogues import _

_UNREADABLE = (ValueError, LookupError, RuntimeError, BadHttpMessage)


class FormInvalid(AttuneError):
    status = 400
    code = "form_invalid"
    title = _("The form could not be read")


class JsonRequired(AttuneError):
    status = 415
    code = "json_required"
    title = _("Wrong format")


JSON_CONTENT_TYPE = "application/json"


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """``request.post()``, or ``FormInvalid`` when the body cannot be decoded."""
    try:
        return await request.post()
    except _UNREADABLE:
        raise FormInvalid(
            _("The submitted form could not be decoded (its encoding or format is not valid).")
        ) from None


def parse_json(raw: bytes, charset: str | None = None) -> Any:
    """``raw`` parsed as JSON; ``ValueError`` for anything that is not decodable JSON
    (unknown charset, invalid bytes, nesting too deep, integers too long)."""
    try:
        return json.loads(raw.decode(charset or "utf-8"))
    except (ValueError, LookupError, RecursionError) as exc:
        raise ValueError("the body is not decodable JSON") from exc


def require_json(request: web.Request) -> None:
    """``JsonRequired`` (415) for a request whose body is not declared ``application/json``."""
    if request.content_type != JSON_CONTENT_TYPE:
        raise JsonRequired(_("Send the request as JSON (Content-Type: application/json)."))


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON (:func:`parse_json`); ``JsonRequired`` (415) unless
    the request declares it is JSON, whatever the body holds."""
    require_json(request)
    return parse_json(await request.read(), request.charset)
