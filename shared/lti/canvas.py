"""Hosted Canvas (Instructure's cloud): its issuers, their environments and endpoints.

Every hosted Canvas shares one issuer per environment (production, beta, test), so nothing about
a registration that claims one of these issuers can be checked against a school's own site.
What makes such a registration trustworthy:

- its keys, its auth endpoint and its token endpoint are exactly the ones Instructure documents
  for the issuer's environment (``sso{.beta|.test}.canvaslms.com``), never ones named by a
  configuration or a request (``docs/registration.md``);
- its dynamic-registration configuration comes from the issuer's own host
  (``https://canvas.instructure.com/api/lti/security/openid-configuration``: Canvas's
  ``DynamicRegistrationController#oidc_configuration_url`` builds it on the issuer's host),
  so only Instructure can name the school's domain (the ``registration_endpoint``, built on the
  account's domain) and the client_id (a developer key Canvas just created for that account).

Beta and test are copies of production refreshed from it: the same client_id and the same
deployment ids, under the environment's own issuer, keys and endpoints. A launch from
``https://canvas.beta.instructure.com`` for a client_id registered under the production issuer
is that registration's beta environment (``CanvasClouds.production_of``).

``attune dev`` adds a development cloud (``ATTUNE_DEV_CANVAS_CLOUD``, only with
``ATTUNE_ALLOW_INSECURE_URLS``) laid out the same way under one loopback base URL, so the LMS
emulator exercises exactly these rules (``docs/emulator.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.settings import Settings

ENVIRONMENTS = ("production", "beta", "test")


@dataclass(frozen=True)
class HostedCanvas:
    """One environment of a Canvas cloud."""

    issuer: str
    environment: str  # production | beta | test (platforms.environment)
    sso: str  # base URL of the OIDC auth domain (https://sso.canvaslms.com)
    cloud: str  # which cloud: "instructure", or "development" (attune dev)
    # Page origins assumed when a registration records none (a client_id recorded by hand
    # names no school): hosted Canvas serves schools from Instructure's domains.
    fallback_origins: tuple[str, ...] = ()

    @property
    def auth_url(self) -> str:
        return f"{self.sso}/api/lti/authorize_redirect"

    @property
    def jwks_url(self) -> str:
        return f"{self.sso}/api/lti/security/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.sso}/login/oauth2/token"

    def endpoints(self) -> dict[str, str]:
        """The documented endpoints by registration field name."""
        return {"auth_url": self.auth_url, "jwks_url": self.jwks_url, "token_url": self.token_url}


INSTRUCTURE_FALLBACK = ("https://*.instructure.com",)
INSTRUCTURE = (
    HostedCanvas(
        "https://canvas.instructure.com",
        "production",
        "https://sso.canvaslms.com",
        "instructure",
        INSTRUCTURE_FALLBACK,
    ),
    HostedCanvas(
        "https://canvas.beta.instructure.com",
        "beta",
        "https://sso.beta.canvaslms.com",
        "instructure",
        INSTRUCTURE_FALLBACK,
    ),
    HostedCanvas(
        "https://canvas.test.instructure.com",
        "test",
        "https://sso.test.canvaslms.com",
        "instructure",
        INSTRUCTURE_FALLBACK,
    ),
)


def development_cloud(base_url: str) -> tuple[HostedCanvas, ...]:
    """The development cloud of ``attune dev``'s emulator, laid out like Instructure's under
    one base URL: issuers ``{base}/canvas``, ``{base}/canvas-beta``, ``{base}/canvas-test`` and
    their auth domains ``{base}/sso``, ``{base}/sso-beta``, ``{base}/sso-test``."""
    base = base_url.rstrip("/")
    suffix = {"production": "", "beta": "-beta", "test": "-test"}
    return tuple(
        HostedCanvas(f"{base}/canvas{suffix[e]}", e, f"{base}/sso{suffix[e]}", "development")
        for e in ENVIRONMENTS
    )


def _key(issuer: str) -> str:
    return issuer.strip().rstrip("/")


class CanvasClouds:
    """The hosted Canvas environments Attune knows: Instructure's, plus (development only)
    the emulator's."""

    def __init__(self, extra: Iterable[HostedCanvas] = ()) -> None:
        self._by_issuer = {_key(c.issuer): c for c in (*INSTRUCTURE, *extra)}

    def get(self, issuer: str) -> HostedCanvas | None:
        """The hosted Canvas environment an issuer names (a trailing slash ignored), else None."""
        return self._by_issuer.get(_key(issuer))

    def production_of(self, canvas: HostedCanvas) -> HostedCanvas:
        """The production environment of the cloud ``canvas`` belongs to."""
        for other in self._by_issuer.values():
            if other.cloud == canvas.cloud and other.environment == "production":
                return other
        return canvas


DEFAULT_CLOUDS = CanvasClouds()


def hosted_canvas(issuer: str) -> HostedCanvas | None:
    """The Instructure-hosted Canvas environment an issuer names, else None."""
    return DEFAULT_CLOUDS.get(issuer)


def clouds_from(settings: Settings) -> CanvasClouds:
    """Instructure's cloud, plus the emulator's when ``ATTUNE_DEV_CANVAS_CLOUD`` is set (the
    settings refuse it without ``ATTUNE_ALLOW_INSECURE_URLS``)."""
    if settings.dev_canvas_cloud and settings.allow_insecure_urls:
        return CanvasClouds(development_cloud(settings.dev_canvas_cloud))
    return DEFAULT_CLOUDS
