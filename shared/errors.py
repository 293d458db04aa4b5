"""Domain errors with stable codes. Raised anywhere, turned into HTTP at one edge (shared.web).

A code is part of the public contract: LMS admins search for it, dashboards count it, tests
assert it. Never reuse a code for a different condition; add a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.i18n.catalogues import _

if TYPE_CHECKING:
    from aiohttp import web


class AttuneError(Exception):
    """An expected failure a person can act on.

    ``message`` says what happened in plain words; ``hint`` says what the user or the LMS admin
    can do about it. Neither may contain secrets or tokens. Mark them (and ``title``) with
    ``_()`` so the error edge shows them in the reader's language.
    """

    status: int = 400
    code: str = "bad_request"
    title: str = _("The request could not be completed")
    headers: dict[str, str] | None = None  # extra response headers (e.g. Retry-After)
    # A page of the raising handler's own for people in browsers (e.g. the install page's
    # "try another code" form), rendered by the error edge instead of the generic error page;
    # JSON clients still get the JSON error.
    page: Callable[[web.Request, AttuneError], web.Response] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        hint: str | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.hint = hint


class NotFound(AttuneError):
    status = 404
    code = "not_found"
    title = _("Not found")


class Unauthorized(AttuneError):
    status = 401
    code = "unauthorized"
    title = _("Sign-in required")


class Forbidden(AttuneError):
    status = 403
    code = "forbidden"
    title = _("Not allowed")


class Conflict(AttuneError):
    status = 409
    code = "conflict"
    title = _("Conflict")


class Unavailable(AttuneError):
    """A dependency is down; the request may succeed if retried later."""

    status = 503
    code = "unavailable"
    title = _("Temporarily unavailable")
