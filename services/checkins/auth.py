"""Authentication of app requests by the launch token (``Authorization: Bearer``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from services.checkins.keys import TOKENS_KEY
from shared.errors import Unauthorized
from shared.i18n.catalogues import _
from shared.i18n.web import set_language
from shared.lti.launch_token import LaunchIdentity, LaunchTokens
from shared.signing import InvalidToken
from shared.web import SETTINGS_KEY

RELAUNCH = _("Open Attune again from your course in the LMS to continue.")


_IDENTITY_KEY = web.RequestKey("launch_identity", LaunchIdentity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def identity(request: web.Request, tokens: LaunchTokens) -> LaunchIdentity:
    """The request's verified launch identity (verified once per request, then remembered)."""
    known: LaunchIdentity | None = request.get(_IDENTITY_KEY)
    if known is not None:
        return known
    header = request.headers.get("Authorization", "")
    scheme, __, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            _("This request has no launch token."), code="launch_token_missing", hint=RELAUNCH
        )
    who = verify(request, tokens, token)
    request[_IDENTITY_KEY] = who
    return who


def verify(request: web.Request, tokens: LaunchTokens, token: str) -> LaunchIdentity:
    """A launch token (from the ``Authorization`` header or a form) verified for this region's
    app; the request's language becomes the launch's."""
    try:
        who = tokens.read(token.strip())
    except InvalidToken as exc:
        if exc.reason == "expired":
            raise Unauthorized(
                _("Your Attune session has expired."), code="launch_token_expired", hint=RELAUNCH
            ) from None
        raise Unauthorized(
            _("This launch token is not valid."), code="launch_token_invalid", hint=RELAUNCH
        ) from None
    set_language(request, who.language)  # the API's messages speak the launch's language
    if who.region != request.app[SETTINGS_KEY].region:
        # Issued by another region's cell: the launch and everything of it are kept there, and
        # only that region's app serves it (docs/architecture.md, "Regions").
        raise Unauthorized(
            _("This launch belongs to another region of Attune."),
            code="launch_token_other_region",
            hint=RELAUNCH,
        )
    return who


@web.middleware
async def language_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request with a valid launch token speaks the launch's language from the start, so
    that even a refusal before the handler reads the token (a body that fails validation)
    is worded in it. A missing or invalid token changes nothing here: the handler refuses
    it."""
    if request.headers.get("Authorization"):
        try:
            identity(request, request.app[TOKENS_KEY])
        except Unauthorized:
            pass
    return await handler(request)
