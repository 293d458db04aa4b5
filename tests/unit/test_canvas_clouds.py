"""Hosted Canvas's environments (shared.lti.canvas) and how login and launch find a
registration for them (``RegistrationCache.resolve``): a beta or test issuer uses the
production registration of the same client_id with its own endpoints; nothing else does."""

from __future__ import annotations

import pytest

from shared.lti.canvas import DEFAULT_CLOUDS, CanvasClouds, development_cloud, hosted_canvas
from shared.lti.registry import Platform, RegistrationCache

PROD = "https://canvas.instructure.com"
BETA = "https://canvas.beta.instructure.com"
TEST = "https://canvas.test.instructure.com"


def platform(issuer: str, client_id: str = "1000", product: str = "canvas") -> Platform:
    canvas = hosted_canvas(issuer)
    return Platform(
        id=hash((issuer, client_id)) & 0xFFFF,
        issuer=issuer,
        client_id=client_id,
        auth_url=canvas.auth_url if canvas else f"{issuer}/auth",
        jwks_url=canvas.jwks_url if canvas else f"{issuer}/jwks",
        token_url=canvas.token_url if canvas else f"{issuer}/token",
        product=product,  # type: ignore[arg-type]
        deployment_policy="accept",
        hosted=canvas,
    )


def cache(*platforms: Platform, clouds: CanvasClouds = DEFAULT_CLOUDS) -> RegistrationCache:
    known = {(p.issuer, p.client_id): p for p in platforms}

    async def load(issuer: str, client_id: str) -> Platform | None:
        return known.get((issuer, client_id))

    return RegistrationCache(load, clouds=clouds)


def test_environments_and_their_documented_endpoints() -> None:
    beta = hosted_canvas(BETA + "/")
    assert beta is not None and beta.environment == "beta"
    assert beta.jwks_url == "https://sso.beta.canvaslms.com/api/lti/security/jwks"
    assert DEFAULT_CLOUDS.production_of(beta).issuer == PROD
    assert hosted_canvas("https://canvas.instructure.com.evil.example") is None
    dev = CanvasClouds(development_cloud("http://localhost:8001/"))
    test = dev.get("http://localhost:8001/canvas-test")
    assert (
        test is not None and test.token_url == "http://localhost:8001/sso-test/login/oauth2/token"
    )
    assert dev.production_of(test).issuer == "http://localhost:8001/canvas"
    assert dev.get(PROD) is not None  # Instructure's cloud stays known
    assert DEFAULT_CLOUDS.get("http://localhost:8001/canvas") is None


@pytest.mark.parametrize(("issuer", "environment"), [(BETA, "beta"), (TEST, "test")])
async def test_beta_and_test_use_the_production_registration(issuer: str, environment: str) -> None:
    prod = platform(PROD)
    resolved = await cache(prod).resolve(issuer, "1000")
    assert resolved is not None and resolved.platform is prod
    assert (resolved.issuer, resolved.environment) == (issuer, environment)
    sso = f"https://sso.{environment}.canvaslms.com"
    assert resolved.jwks_url == f"{sso}/api/lti/security/jwks"
    assert resolved.auth_origin == sso
    assert resolved.token_url == f"{sso}/login/oauth2/token"


async def test_production_is_never_found_through_another_environment() -> None:
    """Only beta and test fall back, only to production, only to a Canvas registration of the
    same client_id; an explicit registration of the environment wins."""
    beta_own = platform(BETA)
    resolved = await cache(platform(PROD), beta_own).resolve(BETA, "1000")
    assert resolved is not None and resolved.platform is beta_own
    assert resolved.jwks_url == beta_own.jwks_url
    assert await cache(platform(BETA)).resolve(PROD, "1000") is None
    assert await cache(platform(PROD)).resolve(BETA, "2000") is None
    assert await cache(platform(PROD, product="generic")).resolve(BETA, "1000") is None
    # A self-hosted Canvas has no environments.
    own = platform("https://canvas.school.edu")
    assert await cache(own).resolve("https://canvas.school.edu/beta", "1000") is None
    resolved = await cache(own).resolve("https://canvas.school.edu", "1000")
    assert resolved is not None and resolved.environment is None
    assert resolved.jwks_url == "https://canvas.school.edu/jwks"
