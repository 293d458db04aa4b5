"""Deep linking: a teacher's ``LtiDeepLinkingRequest`` ends with a signed response.

The page (in "choose a check-in" mode) posts the launch token and the chosen check-in to
``POST /app/deep-link`` (a same-origin form, so ``form-action 'self'`` allows it); the answer
is a page whose own script (``static/autosubmit.js``) posts the ``LtiDeepLinkingResponse`` as
``JWT`` to the platform's return URL, with a CSP whose ``form-action`` allows that origin only.

Everything the response asserts comes from the launch token, which the launch service filled
from the verified request (issuer, client_id, deployment_id, return URL, data); the client
only chooses a check-in, and only one of its own course. Signed with the tool key
(``ToolSigner``), exp short, nonce fresh.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.checkins import emotions, queries
from services.checkins.auth import RELAUNCH, verify
from services.checkins.keys import PAGES_KEY, TOKENS_KEY
from services.checkins.queries import Course
from shared.db import POOL_KEY
from shared.errors import AttuneError, Forbidden, NotFound, Unauthorized, Unavailable
from shared.forms import read_form
from shared.i18n.catalogues import _
from shared.i18n.jinja import page_context
from shared.i18n.web import request_language
from shared.identifiers import row_id
from shared.keys.signer import SIGNER_KEY
from shared.logs import get_logger
from shared.lti import claims as C
from shared.lti.frame import frame_ancestors
from shared.lti.launch_token import LaunchIdentity
from shared.lti.wiring import URLS_KEY, framed_by
from shared.web import HTML_SECURITY_HEADERS, SETTINGS_KEY

log = get_logger(__name__)

RESPONSE_MESSAGE_TYPE = "LtiDeepLinkingResponse"
CONTENT_ITEMS = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"
DL_DATA = "https://purl.imsglobal.org/spec/lti-dl/claim/data"
RESPONSE_LIFETIME_S = 300
TITLE_MAX = 255


async def response_claims(
    request: web.Request, who: LaunchIdentity, checkin: dict[str, Any]
) -> dict[str, Any]:
    dl = who.deep_link
    assert dl is not None
    now = int(time.time())
    lifetime = min(RESPONSE_LIFETIME_S, request.app[SETTINGS_KEY].key_token_lifetime_s)
    claims: dict[str, Any] = {
        "iss": dl.client_id,
        "aud": dl.issuer,
        "iat": now,
        "exp": now + lifetime,
        "nonce": secrets.token_urlsafe(24),
        C.DEPLOYMENT_ID: who.deployment_id,
        C.MESSAGE_TYPE: RESPONSE_MESSAGE_TYPE,
        C.VERSION: C.LTI_VERSION,
        CONTENT_ITEMS: [
            {
                "type": "ltiResourceLink",
                "title": checkin["question"][:TITLE_MAX],
                "url": request.app[URLS_KEY].target_link_uri,
                "custom": {"checkin_id": str(checkin["id"])},
            }
        ],
    }
    if dl.data is not None:
        claims[DL_DATA] = dl.data
    return claims


async def deep_link_return(request: web.Request) -> web.Response:
    """``POST /app/deep-link`` (form: ``lt``, ``checkin_id``) → the auto-posting return page."""
    form = await read_form(request)
    token, raw_id = form.get("lt"), form.get("checkin_id")
    if not isinstance(token, str) or not token:
        raise Unauthorized(
            _("This request has no launch token."), code="launch_token_missing", hint=RELAUNCH
        )
    who = verify(request, request.app[TOKENS_KEY], token)
    lang = request_language(request)
    if who.deep_link is None:
        raise Forbidden(
            _("This launch was not a request to add content."), code="deep_linking_not_requested"
        )
    if not who.is_teacher or not who.context_id:
        raise Forbidden(_("Only the course's teachers can do this."), code="teacher_only")
    checkin_id = row_id(raw_id)
    if checkin_id is None:
        raise NotFound(_("There is no such check-in in this course."), code="checkin_not_found")
    course = Course(who.platform_id, who.context_id)
    async with request.app[POOL_KEY].acquire() as conn:
        row = await queries.get_checkin(conn, course, checkin_id)
    if row is None:
        raise NotFound(_("There is no such check-in in this course."), code="checkin_not_found")
    if SIGNER_KEY not in request.app:
        raise Unavailable(
            _("Attune cannot sign responses here (no tool key configured)."),
            code="signing_key_unavailable",
        )
    claims = await response_claims(request, who, {"id": row["id"], "question": row["question"]})
    jwt = await request.app[SIGNER_KEY].sign(claims)
    return_url = who.deep_link.return_url
    parts = urlsplit(return_url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise AttuneError(_("The LMS gave no usable return address."), code="deep_link_return_bad")
    origin = f"{parts.scheme}://{parts.netloc}"
    log.info("deep_link_response", checkin_id=row["id"], platform_id=who.platform_id)
    strings = emotions.catalogue(lang)
    # Shown in the LMS's frame: that platform's page origins may frame it, nobody else.
    ancestors = frame_ancestors(await framed_by(request.app, who.platform_id, who.page_origin))
    html = (
        request.app[PAGES_KEY]
        .get_template("deep_link_return.html")
        .render(t=strings, action=return_url, jwt=jwt, **page_context(lang))
    )
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            **HTML_SECURITY_HEADERS,
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'self'; style-src 'self'; base-uri 'none'; "
                f"form-action {origin}; {ancestors}"
            ),
            "Cache-Control": "no-store",
        },
    )
