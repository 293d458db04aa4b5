"""App keys and page rendering shared by the registration service's handlers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from services.registration import errors
from shared.i18n.catalogues import Text, translate
from shared.i18n.jinja import environment, page_context
from shared.i18n.web import request_language
from shared.lti.frame import with_frame_ancestors
from shared.lti.wiring import URLS_KEY
from shared.signing import TokenSigner
from shared.web import HTML_SECURITY_HEADERS

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

REGISTER_STATIC = "/lti/register/static"
ADMIN_STATIC = "/admin/static"

PAGES_KEY = web.AppKey("registration_pages", jinja2.Environment)
FORM_SIGNER_KEY = web.AppKey("registration_form_signer", TokenSigner)

# Pages shown inside the LMS's iframe (install and done pages): framing by the LMS that started
# the registration must stay allowed (lms_page_csp), by anybody else not.
_LMS_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'"
)
# Admin pages: never framed; scripts and API calls to our own origin only.
ADMIN_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def lms_page_csp(page_origins: Sequence[str]) -> str:
    """The CSP of a dynamic-registration page: framed only by the LMS that opened it — the
    page origins its validated configuration names (``PlatformConfiguration.page_origins``:
    Canvas's school host, not hosted Canvas's issuer host; Moodle's site)."""
    return with_frame_ancestors(_LMS_PAGE_CSP, page_origins)


def pages() -> jinja2.Environment:
    return environment(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))


def render(
    request: web.Request, template: str, *, csp: str, status: int = 200, **context: Any
) -> web.Response:
    """A page in the reader's language (``Text`` values, such as an error's message, too)."""
    lang = request_language(request)
    values = {k: translate(v, lang) if isinstance(v, Text) else v for k, v in context.items()}
    html = request.app[PAGES_KEY].get_template(template).render(**values, **page_context(lang))
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={
            **HTML_SECURITY_HEADERS,
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
        },
    )


def region_of(request: web.Request, value: object = None) -> str | None:
    """The region a request names (``value``, else the ``region`` query parameter): one of
    ``ATTUNE_REGIONS`` (400 ``region_unknown`` otherwise), or None when it names none."""
    name = value if value is not None else request.query.get("region")
    if name is None or name == "":
        return None
    regions = request.app[URLS_KEY].regions
    if not isinstance(name, str) or name not in regions:
        raise errors.region_unknown(", ".join(regions))
    return name
