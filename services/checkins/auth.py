"""Authentication of app requests by the launch token (``Authorization: Bearer``)."""

from __future__ import annotations

from aiohttp import web

from shared.errors import Unauthorized
from shared.i18n.catalogues import _
from shared.i18n.web import set_language
from shared.lti.launch_token import LaunchIdentity, LaunchTokens
from shared.signing import InvalidToken

RELAUNCH = _("Open Attune again from your course in the LMS to continue.")


_IDENTITY_KEY = web.RequestKey("launch_identity", LaunchIdentity)


def identity(request: web.Request, tokens: LaunchTokens) -> LaunchIdentity:
    """The request's verified launch identity (verified once per request, then remembered)."""
    known: LaunchIdentity | None = request.get(_IDENTITY_KEY)
    if known is not None:
        return known
    who = _verify(request, tokens)
    request[_IDENTITY_KEY] = who
    set_language(request, who.language)  # the API's messages speak the launch's language
    return who


def _verify(request: web.Request, tokens: LaunchTokens) -> LaunchIdentity:
    header = request.headers.get("Authorization", "")
    scheme, __, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            _("This request has no launch token."), code="launch_token_missing", hint=RELAUNCH
        )
    try:
        return tokens.read(token.strip())
    except InvalidToken as exc:
        if exc.reason == "expired":
            raise Unauthorized(
                _("Your Attune session has expired."), code="launch_token_expired", hint=RELAUNCH
            ) from None
        raise Unauthorized(
            _("This launch token is not valid."), code="launch_token_invalid", hint=RELAUNCH
        ) from None
