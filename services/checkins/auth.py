"""Authentication of app requests by the launch token (``Authorization: Bearer``)."""

from __future__ import annotations

from aiohttp import web

from shared.errors import Unauthorized
from shared.lti.launch_token import LaunchIdentity, LaunchTokens
from shared.signing import InvalidToken
from shared.web import SETTINGS_KEY

RELAUNCH = "Open Attune again from your course in the LMS to continue."


_IDENTITY_KEY = web.RequestKey("launch_identity", LaunchIdentity)


def identity(request: web.Request, tokens: LaunchTokens) -> LaunchIdentity:
    """The request's verified launch identity (verified once per request, then remembered)."""
    known: LaunchIdentity | None = request.get(_IDENTITY_KEY)
    if known is not None:
        return known
    who = _verify(request, tokens)
    request[_IDENTITY_KEY] = who
    return who


def _verify(request: web.Request, tokens: LaunchTokens) -> LaunchIdentity:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "This request has no launch token.", code="launch_token_missing", hint=RELAUNCH
        )
    try:
        who = tokens.read(token.strip())
    except InvalidToken as exc:
        if exc.reason == "expired":
            raise Unauthorized(
                "Your Attune session has expired.", code="launch_token_expired", hint=RELAUNCH
            ) from None
        raise Unauthorized(
            "This launch token is not valid.", code="launch_token_invalid", hint=RELAUNCH
        ) from None
    if who.region != request.app[SETTINGS_KEY].region:
        # Issued by another region's cell: the launch and everything of it are kept there, and
        # only that region's app serves it (docs/architecture.md, "Regions").
        raise Unauthorized(
            "This launch belongs to another region of Attune.",
            code="launch_token_other_region",
            hint=RELAUNCH,
        )
    return who
