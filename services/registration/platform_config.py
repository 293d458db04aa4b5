"""The platform's OpenID configuration, validated before Attune trusts any of it.

Only ``validate`` builds a ``PlatformConfiguration``: the issuer shares scheme, host and port
with the URL the configuration came from — hosted Canvas included: Canvas serves it from the
issuer's host (``DynamicRegistrationController#oidc_configuration_url``), so only Instructure
can present a configuration of its shared issuer, and there the auth, JWKS and token endpoints
must also be exactly the ones Instructure documents for the issuer's environment and the
product Canvas. Every endpoint is an acceptable outbound URL, and the platform supports what
LTI 1.3 needs (id_token, RS256, private_key_jwt).

Where the LMS's own pages are (who may frame the install page and, later, every launch):
Canvas builds ``registration_endpoint`` on the account's domain
(``create_lti_registration_url(host: account_domain)`` in ``SecurityController``) and newer
Canvas also names it (``https://canvas.instructure.com/lti/account_domain``): for hosted Canvas
that is the school's host, never the issuer's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from services.registration import errors
from services.registration.toolconfig import (
    CANVAS_ACCOUNT_DOMAIN_KEY,
    CANVAS_ACCOUNT_NAME_KEY,
    PLATFORM_CONFIG,
    Product,
    product_of,
)
from shared.http import OutboundError
from shared.lti.canvas import DEFAULT_CLOUDS, CanvasClouds, HostedCanvas
from shared.lti.frame import normalize_origin, origin_of

MAX_URL = 2048
PRODUCT_LABELS = {"canvas": "Canvas", "moodle": "Moodle"}
ENDPOINTS = ("authorization_endpoint", "registration_endpoint", "jwks_uri", "token_endpoint")


@dataclass(frozen=True)
class PlatformConfiguration:
    url: str
    issuer: str
    authorization_endpoint: str
    registration_endpoint: str
    jwks_uri: str
    token_endpoint: str
    product: Product
    product_family_code: str
    version: str | None
    account_name: str | None
    messages_supported: list[dict[str, Any]] = field(default_factory=list)
    account_domain: str | None = None  # Canvas: the account's host[:port]
    hosted: HostedCanvas | None = None  # the hosted Canvas environment of the issuer

    @property
    def environment(self) -> str:
        return self.hosted.environment if self.hosted is not None else "production"

    @property
    def hosted_canvas(self) -> bool:
        return self.hosted is not None

    @property
    def page_origins(self) -> list[str]:
        """Where the LMS's pages are, as the configuration tells: the registration endpoint's
        origin and Canvas's account domain (its school host), the configuration's own origin
        (the site that opened the registration: Moodle's, a self-hosted Canvas's) and the
        issuer's — the last two never for hosted Canvas, whose issuer host serves no school."""
        urls = [self.registration_endpoint]
        if self.account_domain is not None:
            urls.append(f"{urlsplit(self.registration_endpoint).scheme}://{self.account_domain}")
        if self.hosted is None:
            urls += [self.url, self.issuer]
        found: list[str] = []
        for url in urls:
            page = origin_of(url)
            if page is not None and page not in found:
                found.append(page)
        return found

    @property
    def name(self) -> str:
        return self.account_name or (urlsplit(self.issuer).hostname or self.issuer)

    # --- the platform as its administrator knows it (install and done pages) ---

    @property
    def product_label(self) -> str:
        """``Canvas``, ``Moodle``, else the product family code the platform sent."""
        return PRODUCT_LABELS.get(self.product_family_code.lower(), self.product_family_code)

    @property
    def release(self) -> str | None:
        """The platform's version when it is one (Moodle's release, ``4.5.1+ (Build: …)``);
        Canvas sends a word (``cloud``, ``OpenSource``), which names no version."""
        version = self.version
        return version if version and any(c.isdigit() for c in version) else None

    @property
    def site(self) -> str | None:
        """The host the administrator opened the registration from (the school's Canvas or
        Moodle site), unless it is an address or ``localhost``, which names nothing. Hosted
        Canvas serves its configuration from the issuer's host, so there it is the school's
        host: the account domain, else the registration endpoint's."""
        if self.hosted is not None:
            school = (
                f"//{self.account_domain}" if self.account_domain else self.registration_endpoint
            )
            host = urlsplit(school).hostname or ""
        else:
            host = urlsplit(self.url).hostname or ""
        host = host.lower()
        if not host or host == "localhost" or host.endswith(".localhost"):
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return host
        return None

    def summary(self) -> dict[str, Any]:
        """What is kept in ``platforms.platform_config`` (no token, nothing secret)."""
        return {
            "openid_configuration": without_query(self.url),
            "registration_endpoint": self.registration_endpoint,
            "product_family_code": self.product_family_code,
            "version": self.version,
            "account_name": self.account_name,
            "messages_supported": self.messages_supported,
        }


def without_query(url: str) -> str:
    """``url`` without its query, for storing and auditing: Canvas puts the registration token
    in the openid configuration URL's query (``?registration_token=...``)."""
    return urlsplit(url)._replace(query="", fragment="").geturl()


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _url(doc: dict[str, Any], name: str, check_url: Callable[[str], None]) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise errors.openid_configuration_malformed(f"{name} is missing")
    if len(value) > MAX_URL:
        raise errors.openid_configuration_malformed(f"{name} is too long")
    parts = urlsplit(value)
    if parts.fragment or not parts.hostname:
        raise errors.openid_configuration_malformed(f"{name} is not an absolute URL")
    try:
        check_url(value)
    except OutboundError as exc:
        raise errors.openid_configuration_malformed(
            f"{name} is not an acceptable URL ({exc.reason})"
        ) from None
    return value


def _supports(doc: dict[str, Any], name: str, value: str) -> None:
    if name not in doc:
        return
    listed = doc[name]
    if not isinstance(listed, list) or value not in listed:
        raise errors.openid_configuration_malformed(f"{name} does not include {value}")


def _messages(platform: dict[str, Any]) -> list[dict[str, Any]]:
    """The message types the platform supports, as the spec's objects. Moodle sends plain
    strings (mod/lti/openid-configuration.php) with its placements beside them."""
    result: list[dict[str, Any]] = []
    raw = platform.get("messages_supported")
    shared = platform.get("placements")
    for message in raw[:20] if isinstance(raw, list) else []:
        if isinstance(message, str):
            message = {"type": message, "placements": shared}
        if isinstance(message, dict) and isinstance(message.get("type"), str):
            placements = message.get("placements")
            result.append(
                {
                    "type": message["type"][:100],
                    "placements": [p[:100] for p in placements[:50] if isinstance(p, str)]
                    if isinstance(placements, list)
                    else [],
                }
            )
    return result


def _check_hosted_canvas(canvas: HostedCanvas, endpoints: dict[str, str], family: str) -> None:
    """On top of the origin rule (the configuration comes from Instructure's issuer host): the
    keys, the auth endpoint and the token endpoint must be exactly Instructure's, so a
    registration of the shared issuer never trusts other keys nor sends the tool's signed
    assertions elsewhere, whatever a configuration says."""
    expected = {
        "authorization_endpoint": canvas.auth_url,
        "jwks_uri": canvas.jwks_url,
        "token_endpoint": canvas.token_url,
    }
    for name, url in expected.items():
        if endpoints[name] != url:
            raise errors.openid_configuration_canvas_mismatch(f"its {name} is not {url}")
    if product_of(family) != "canvas":
        raise errors.openid_configuration_canvas_mismatch("its product_family_code is not canvas")


def validate(
    doc: object,
    url: str,
    check_url: Callable[[str], None],
    clouds: CanvasClouds = DEFAULT_CLOUDS,
) -> PlatformConfiguration:
    """Check a fetched configuration; raises a ``RegistrationError`` naming the problem."""
    if not isinstance(doc, dict):
        raise errors.openid_configuration_malformed("it is not a JSON object")
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise errors.openid_configuration_malformed("issuer is missing")
    issuer_parts = urlsplit(issuer)
    if (
        len(issuer) > MAX_URL
        or issuer_parts.scheme not in ("https", "http")
        or not issuer_parts.hostname
        or issuer_parts.query
        or issuer_parts.fragment
    ):
        raise errors.openid_configuration_malformed("issuer is not an https URL without query")
    canvas = clouds.get(issuer)
    if canvas is not None and issuer != canvas.issuer:
        raise errors.openid_configuration_canvas_mismatch(f"its issuer is not {canvas.issuer}")
    # Hosted Canvas too: Canvas serves the configuration of its shared issuer from the
    # issuer's own host, so no other server can present one.
    if origin(issuer) != origin(url):
        raise errors.openid_configuration_issuer_mismatch()
    try:
        check_url(issuer)
    except OutboundError as exc:
        raise errors.openid_configuration_malformed(
            f"issuer is not an acceptable URL ({exc.reason})"
        ) from None
    endpoints = {name: _url(doc, name, check_url) for name in ENDPOINTS}
    _supports(doc, "response_types_supported", "id_token")
    _supports(doc, "id_token_signing_alg_values_supported", "RS256")
    _supports(doc, "token_endpoint_auth_methods_supported", "private_key_jwt")
    platform = doc.get(PLATFORM_CONFIG)
    if not isinstance(platform, dict):
        raise errors.openid_configuration_malformed(f"{PLATFORM_CONFIG} is missing")
    family = platform.get("product_family_code")
    if not isinstance(family, str) or not family or len(family) > 100:
        raise errors.openid_configuration_malformed("product_family_code is missing")
    if canvas is not None:
        _check_hosted_canvas(canvas, endpoints, family)
    version = platform.get("version")
    account = platform.get(CANVAS_ACCOUNT_NAME_KEY)
    account_domain = (
        _account_domain(platform.get(CANVAS_ACCOUNT_DOMAIN_KEY), endpoints["registration_endpoint"])
        if product_of(family) == "canvas"
        else None
    )
    return PlatformConfiguration(
        url=url,
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        registration_endpoint=endpoints["registration_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        token_endpoint=endpoints["token_endpoint"],
        product=product_of(family),
        product_family_code=family,
        version=version[:100] if isinstance(version, str) else None,
        account_name=account[:200] if isinstance(account, str) and account.strip() else None,
        messages_supported=_messages(platform),
        account_domain=account_domain,
        hosted=canvas,
    )


def _account_domain(value: object, registration_endpoint: str) -> str | None:
    """Canvas's ``…/lti/account_domain`` (host[:port] of the account, no scheme), if it is a
    host name; anything else is ignored (it only adds a page origin)."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return None
    scheme = urlsplit(registration_endpoint).scheme
    try:
        page = normalize_origin(f"{scheme}://{value}", allow_insecure=True)
    except ValueError:
        return None
    if "*" in page:
        return None
    return page.partition("://")[2]
