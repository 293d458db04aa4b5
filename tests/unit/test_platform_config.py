"""The openid-configuration issuer rule, including hosted Canvas's shared issuer: served from
the issuer's own host (as Canvas serves it), with endpoints exactly the ones Instructure
documents for the issuer's environment; and where the LMS's pages are (its school host)."""

from __future__ import annotations

from typing import Any

import pytest

from services.registration.platform_config import validate
from shared.errors import AttuneError
from shared.lti.canvas import CanvasClouds, development_cloud

PLATFORM = "https://purl.imsglobal.org/spec/lti-platform-configuration"


def config(issuer: str, host: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"https://{host}/api/lti/authorize_redirect",
        "registration_endpoint": "https://school.instructure.com/api/lti/registrations",
        "jwks_uri": f"https://{host}/api/lti/security/jwks",
        "token_endpoint": f"https://{host}/login/oauth2/token",
        "response_types_supported": ["id_token"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        PLATFORM: {"product_family_code": "canvas", "messages_supported": []},
    }


def accept_all(url: str) -> None:
    return None


def issuer_config(issuer: str) -> str:
    """Where Canvas serves the configuration: the issuer's host, with the registration token in
    the query (DynamicRegistrationController#oidc_configuration_url)."""
    return f"{issuer}/api/lti/security/openid-configuration?registration_token=abc"


def test_hosted_canvas_configuration_from_the_issuer_host_is_accepted() -> None:
    doc = config("https://canvas.instructure.com", "sso.canvaslms.com")
    result = validate(doc, issuer_config("https://canvas.instructure.com"), accept_all)
    assert result.issuer == "https://canvas.instructure.com"
    assert result.jwks_uri == "https://sso.canvaslms.com/api/lti/security/jwks"
    # The school's pages: the registration endpoint's host, never the issuer's.
    assert result.page_origins == ["https://school.instructure.com"]
    # The registration token in the URL is never stored.
    assert "registration_token" not in str(result.summary())


def test_hosted_canvas_configuration_from_any_other_host_is_refused() -> None:
    """Only Instructure serves a configuration of its shared issuer: one from a school's (or
    anybody's) host cannot register it (issue #15's residual risk: an install code holder
    could otherwise create a registration of a hosted client_id and frame Attune from his own
    origin)."""
    doc = config("https://canvas.instructure.com", "sso.canvaslms.com")
    for url in (
        "https://school.instructure.com/api/lti/security/openid-configuration",
        "https://attacker.example/api/lti/security/openid-configuration",
        "https://canvas.instructure.com:8443/api/lti/security/openid-configuration",
        "http://canvas.instructure.com/api/lti/security/openid-configuration",
    ):
        with pytest.raises(AttuneError) as err:
            validate(doc, url, accept_all)
        assert err.value.code == "openid_configuration_issuer_mismatch", url
    slash = {**doc, "issuer": "https://canvas.instructure.com/"}
    with pytest.raises(AttuneError) as err:
        validate(slash, issuer_config("https://canvas.instructure.com"), accept_all)
    assert err.value.code == "openid_configuration_canvas_mismatch"


def test_canvas_account_domain_names_another_page_origin() -> None:
    doc = config("https://canvas.instructure.com", "sso.canvaslms.com")
    doc[PLATFORM]["https://canvas.instructure.com/lti/account_domain"] = "canvas.school.edu"
    result = validate(doc, issuer_config("https://canvas.instructure.com"), accept_all)
    assert result.account_domain == "canvas.school.edu"
    assert result.page_origins == ["https://school.instructure.com", "https://canvas.school.edu"]
    for junk in ("", "https://x.example", "a b", "*.school.edu", 7, "x" * 300):
        doc[PLATFORM]["https://canvas.instructure.com/lti/account_domain"] = junk
        result = validate(doc, issuer_config("https://canvas.instructure.com"), accept_all)
        assert result.page_origins == ["https://school.instructure.com"], junk


def test_self_hosted_page_origins_include_the_configuration_site() -> None:
    doc = config("https://canvas.school.edu", "canvas.school.edu")
    doc["registration_endpoint"] = "https://courses.school.edu/api/lti/registrations"
    result = validate(doc, issuer_config("https://canvas.school.edu"), accept_all)
    assert result.page_origins == ["https://courses.school.edu", "https://canvas.school.edu"]


def test_shared_canvas_issuer_with_foreign_keys_is_refused() -> None:
    doc = config("https://canvas.instructure.com", "attacker.example")
    with pytest.raises(AttuneError) as err:
        validate(doc, issuer_config("https://canvas.instructure.com"), accept_all)
    assert err.value.code == "openid_configuration_canvas_mismatch"


def test_development_cloud_follows_the_same_rules() -> None:
    """attune dev's emulator cloud (ATTUNE_DEV_CANVAS_CLOUD) is hosted Canvas to the rules."""
    clouds = CanvasClouds(development_cloud("http://localhost:8001"))
    doc = {
        **config("http://localhost:8001/canvas", "x"),
        "authorization_endpoint": "http://localhost:8001/sso/api/lti/authorize_redirect",
        "jwks_uri": "http://localhost:8001/sso/api/lti/security/jwks",
        "token_endpoint": "http://localhost:8001/sso/login/oauth2/token",
        "registration_endpoint": "http://127.0.0.1:8001/canvas/api/lti/registrations",
    }
    result = validate(doc, issuer_config("http://localhost:8001/canvas"), accept_all, clouds)
    assert result.hosted is not None and result.environment == "production"
    assert result.page_origins == ["http://127.0.0.1:8001"]
    with pytest.raises(AttuneError) as err:  # without the cloud: self-hosted, must match
        validate(
            {**doc, "jwks_uri": "http://x.example/jwks"},
            issuer_config("http://localhost:8001/canvas"),
            accept_all,
            clouds,
        )
    assert err.value.code == "openid_configuration_canvas_mismatch"
    plain = validate(
        {**doc, "jwks_uri": "http://x.example/jwks"},
        issuer_config("http://localhost:8001/canvas"),
        accept_all,
    )
    assert plain.hosted is None


SCHOOL_CONFIG = issuer_config("https://canvas.instructure.com")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # any path on an Instructure host is not enough: each endpoint is one exact URL
        ("jwks_uri", "https://attacker.instructure.com/api/lti/security/jwks"),
        ("jwks_uri", "https://sso.canvaslms.com/api/lti/security/jwks?x=1"),
        ("jwks_uri", "https://sso.beta.canvaslms.com/api/lti/security/jwks"),
        ("authorization_endpoint", "https://school.instructure.com/api/lti/authorize_redirect"),
        ("authorization_endpoint", "https://evil.canvaslms.com/api/lti/authorize_redirect"),
        ("token_endpoint", "https://attacker.example/login/oauth2/token"),
        ("token_endpoint", "https://attacker.instructure.com/login/oauth2/token"),
    ],
)
def test_hosted_canvas_endpoints_are_checked_exactly(field: str, value: str) -> None:
    doc = config("https://canvas.instructure.com", "sso.canvaslms.com")
    doc[field] = value
    with pytest.raises(AttuneError) as err:
        validate(doc, SCHOOL_CONFIG, accept_all)
    assert err.value.code == "openid_configuration_canvas_mismatch"
    assert field in err.value.message


def test_hosted_canvas_issuer_is_canvas() -> None:
    doc = config("https://canvas.instructure.com", "sso.canvaslms.com")
    doc[PLATFORM]["product_family_code"] = "generic-lms"
    with pytest.raises(AttuneError) as err:
        validate(doc, SCHOOL_CONFIG, accept_all)
    assert err.value.code == "openid_configuration_canvas_mismatch"


@pytest.mark.parametrize(
    ("issuer", "sso", "environment"),
    [
        ("https://canvas.instructure.com", "sso.canvaslms.com", "production"),
        ("https://canvas.beta.instructure.com", "sso.beta.canvaslms.com", "beta"),
        ("https://canvas.test.instructure.com", "sso.test.canvaslms.com", "test"),
    ],
)
def test_each_canvas_environment_has_its_own_endpoints(
    issuer: str, sso: str, environment: str
) -> None:
    result = validate(config(issuer, sso), issuer_config(issuer), accept_all)
    assert (result.environment, result.token_endpoint) == (
        environment,
        f"https://{sso}/login/oauth2/token",
    )
    other = "sso.canvaslms.com" if environment != "production" else "sso.test.canvaslms.com"
    with pytest.raises(AttuneError) as err:
        validate(config(issuer, other), issuer_config(issuer), accept_all)
    assert err.value.code == "openid_configuration_canvas_mismatch"


def test_other_issuers_must_share_the_configuration_origin() -> None:
    doc = config("https://moodle.school.edu", "moodle.school.edu")
    with pytest.raises(AttuneError) as err:
        validate(doc, "https://other.example/mod/lti/openid-configuration.php", accept_all)
    assert err.value.code == "openid_configuration_issuer_mismatch"
    ok = validate(doc, "https://moodle.school.edu/mod/lti/openid-configuration.php", accept_all)
    assert ok.issuer == "https://moodle.school.edu"


# --- the platform as its administrator knows it --------------------------------------------------


def moodle_config(url: str, release: str | None) -> dict[str, Any]:
    origin = url.split("/mod/")[0]
    doc = config(origin, origin.split("//")[1])
    doc[PLATFORM] = {"product_family_code": "moodle", "version": release}
    return doc


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://moodle.school.edu/mod/lti/openid-configuration.php", "moodle.school.edu"),
        ("https://127.0.0.1:8443/mod/lti/openid-configuration.php", None),
        ("https://[::1]/mod/lti/openid-configuration.php", None),
        ("https://localhost/mod/lti/openid-configuration.php", None),
    ],
)
def test_the_site_is_a_host_name_never_an_address(url: str, site: str | None) -> None:
    result = validate(moodle_config(url, "4.5.1+ (Build: 20250110)"), url, accept_all)
    assert result.site == site
    assert result.product_label == "Moodle"
    assert result.release == "4.5.1+ (Build: 20250110)"


def test_a_version_word_is_no_release() -> None:
    for word in ("cloud", "OpenSource", "vCloud", None):
        doc = config("https://canvas.instructure.com", "sso.canvaslms.com")
        doc[PLATFORM]["version"] = word
        # Hosted Canvas: the configuration is on the issuer's host, the school's pages (and its
        # registration endpoint) on its own.
        url = "https://canvas.instructure.com/api/lti/security/openid-configuration"
        result = validate(doc, url, accept_all)
        assert result.release is None
        assert (result.product_label, result.site) == ("Canvas", "school.instructure.com")


def test_pages_name_the_site_or_the_product_alone() -> None:
    from services.registration.wiring import pages
    from shared.i18n.jinja import page_context
    from shared.i18n.languages import ENGLISH

    macros = pages().get_template("_platform.html").make_module(page_context(ENGLISH))
    for host, name in (
        ("moodle.school.edu", "Moodle at moodle.school.edu"),
        ("127.0.0.1", "Moodle"),
    ):
        url = f"https://{host}/mod/lti/openid-configuration.php"
        result = validate(moodle_config(url, "4.5"), url, accept_all)
        assert str(macros.platform_name(result)) == name  # type: ignore[attr-defined]


def test_moodles_message_types_as_plain_strings_are_kept() -> None:
    """Moodle's mod/lti/openid-configuration.php sends ``messages_supported`` as strings with
    ``placements`` beside them, not the spec's objects; both shapes are understood."""
    doc = config("https://moodle.school.edu", "moodle.school.edu")
    doc["registration_endpoint"] = "https://moodle.school.edu/mod/lti/openid-registration.php"
    doc[PLATFORM] = {
        "product_family_code": "moodle",
        "version": "4.5.1+ (Build: 20250110)",
        "messages_supported": ["LtiResourceLinkRequest", "LtiDeepLinkingRequest", 7],
        "placements": ["AddContentMenu"],
    }
    url = "https://moodle.school.edu/mod/lti/openid-configuration.php"
    result = validate(doc, url, accept_all)
    assert result.messages_supported == [
        {"type": "LtiResourceLinkRequest", "placements": ["AddContentMenu"]},
        {"type": "LtiDeepLinkingRequest", "placements": ["AddContentMenu"]},
    ]
    doc[PLATFORM]["messages_supported"] = [
        {"type": "LtiDeepLinkingRequest", "placements": ["ContentArea"]}
    ]
    assert validate(doc, url, accept_all).messages_supported == [
        {"type": "LtiDeepLinkingRequest", "placements": ["ContentArea"]}
    ]
