"""Hosted Canvas (Instructure's cloud): its issuers and the endpoints Instructure documents.

Every hosted Canvas shares one issuer per environment, so nothing about a registration that
claims one of these issuers can be checked against the issuer's own site. What makes such a
registration trustworthy is that its keys, its auth endpoint and its token endpoint are
Instructure's: a registration claiming a hosted Canvas issuer gets exactly these endpoints
(``docs/registration.md``), never ones named by a configuration or a request.

Canvas picks the environment per launch (``canvas_environment``); the login's
``canvas_endpoint`` then switches the ``sso`` host accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostedCanvas:
    issuer: str
    environment: str  # production | beta | test (platforms.environment)
    sso_host: str

    @property
    def auth_url(self) -> str:
        return f"https://{self.sso_host}/api/lti/authorize_redirect"

    @property
    def jwks_url(self) -> str:
        return f"https://{self.sso_host}/api/lti/security/jwks"

    @property
    def token_url(self) -> str:
        return f"https://{self.sso_host}/login/oauth2/token"

    def endpoints(self) -> dict[str, str]:
        """The documented endpoints by registration field name."""
        return {"auth_url": self.auth_url, "jwks_url": self.jwks_url, "token_url": self.token_url}


HOSTED_CANVAS = {
    c.issuer: c
    for c in (
        HostedCanvas("https://canvas.instructure.com", "production", "sso.canvaslms.com"),
        HostedCanvas("https://canvas.beta.instructure.com", "beta", "sso.beta.canvaslms.com"),
        HostedCanvas("https://canvas.test.instructure.com", "test", "sso.test.canvaslms.com"),
    )
}


def hosted_canvas(issuer: str) -> HostedCanvas | None:
    """The hosted Canvas environment an issuer names (a trailing slash ignored), else None."""
    return HOSTED_CANVAS.get(issuer.strip().rstrip("/"))
