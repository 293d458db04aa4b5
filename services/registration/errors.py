"""Every way a registration or an admin request can be refused, each with a stable code.

Messages speak to the LMS administrator installing Attune (or, for the admin API, to whoever
runs Attune); hints say what that reader can do next, in plain text (they are shown in HTML
pages and JSON alike: no Markdown). Neither ever contains a registration token, an install
code or an admin token.
"""

from __future__ import annotations

from shared.errors import AttuneError
from shared.i18n.catalogues import Text, _

RETRY = _("Start the registration again from the LMS.")


class RegistrationError(AttuneError):
    status = 400
    code = "registration_error"
    title = _("Attune could not be registered")


def err(
    code: str, message: Text, hint: Text | None = RETRY, status: int = 400
) -> RegistrationError:
    return RegistrationError(message, code=code, hint=hint, status=status)


# --- the registration request --------------------------------------------------------------------


def openid_configuration_missing() -> RegistrationError:
    return err(
        "openid_configuration_missing",
        _("The LMS did not send the openid_configuration parameter."),
        _(
            "Open this address from the LMS's dynamic registration screen (Canvas: Developer Keys "
            "→ + LTI Registration; Moodle: Manage tools → Tool URL → Add LTI Advantage)."
        ),
    )


def registration_token_missing() -> RegistrationError:
    return err(
        "registration_token_missing",
        _("The LMS did not send a registration token."),
        _("Open this address from the LMS's dynamic registration screen; it adds the token."),
    )


def registration_token_invalid() -> RegistrationError:
    return err(
        "registration_token_invalid",
        _("The LMS did not accept the registration token (it may have expired or been used)."),
    )


def openid_configuration_url_invalid(detail: str) -> RegistrationError:
    return err(
        "openid_configuration_url_invalid",
        _("The LMS's configuration address is not usable: {detail}.", detail=detail),
        _("The LMS must be reachable over https at a public address."),
    )


def openid_configuration_private_address() -> RegistrationError:
    return err(
        "openid_configuration_private_address",
        _(
            "The LMS's configuration address points at a private or loopback network address, "
            "which Attune never contacts."
        ),
        _("The LMS must be reachable at a public address."),
    )


def openid_configuration_unreachable(reason: str) -> RegistrationError:
    return err(
        "openid_configuration_unreachable",
        _("Attune could not fetch the LMS's configuration ({reason}).", reason=reason),
        _("Check that the LMS is reachable from the internet, then try again."),
        status=502,
    )


def openid_configuration_too_large() -> RegistrationError:
    return err(
        "openid_configuration_too_large",
        _("The LMS's configuration is larger than Attune accepts."),
        _("Ask the LMS vendor; an openid configuration is normally a few kilobytes."),
    )


def openid_configuration_malformed(detail: str) -> RegistrationError:
    return err(
        "openid_configuration_malformed",
        _("The LMS's configuration is not usable: {detail}.", detail=detail),
        _("The LMS must publish an LTI 1.3 dynamic registration configuration."),
    )


def openid_configuration_issuer_mismatch() -> RegistrationError:
    return err(
        "openid_configuration_issuer_mismatch",
        _(
            "The LMS's configuration names an issuer on another site than the configuration "
            "address itself, so Attune cannot trust it."
        ),
        _("The issuer must share scheme, host and port with the openid_configuration address."),
    )


def openid_configuration_canvas_mismatch(detail: str) -> RegistrationError:
    return err(
        "openid_configuration_canvas_mismatch",
        _("The LMS's configuration claims hosted Canvas's issuer, but {detail}.", detail=detail),
        _(
            "Hosted Canvas registrations use exactly the endpoints Instructure documents for the "
            "issuer's environment. A self-hosted Canvas uses its own issuer."
        ),
    )


def registration_form_invalid() -> RegistrationError:
    return err(
        "registration_form_invalid",
        _("This registration form was not issued by Attune or has been altered."),
    )


def registration_form_expired() -> RegistrationError:
    return err(
        "registration_form_expired",
        _("This registration form has expired."),
    )


def placements_invalid(detail: str) -> RegistrationError:
    return err(
        "placements_invalid",
        _("The chosen placements are not usable: {detail}.", detail=detail),
        None,
    )


def registration_rejected(detail: str) -> RegistrationError:
    return err(
        "registration_rejected",
        _("The LMS refused the registration: {detail}", detail=detail),
        _(
            "Nothing was stored in Attune. Fix the problem the LMS reports, then start the "
            "registration again from the LMS."
        ),
    )


def registration_response_invalid(detail: str) -> RegistrationError:
    return err(
        "registration_response_invalid",
        _(
            "The LMS answered the registration with something Attune cannot use: {detail}.",
            detail=detail,
        ),
        _("Nothing was stored in Attune. Try again; if it persists, register manually."),
    )


def registration_collision() -> RegistrationError:
    return err(
        "registration_collision",
        _(
            "The LMS answered with an issuer and client ID that are already registered in Attune "
            "as another registration. An install code can only create a registration, so nothing "
            "was changed and the install code was not used."
        ),
        _(
            "To re-register an LMS that is already registered, ask whoever runs Attune for a "
            "re-registration code for it (Create re-registration code on Attune's admin page)."
        ),
        409,
    )


def reregistration_mismatch(detail: str) -> RegistrationError:
    return err(
        "reregistration_mismatch",
        _(
            "This re-registration code was issued for another registration: {detail}. Nothing "
            "was changed and the code was not used.",
            detail=detail,
        ),
        _(
            "Use the re-registration code issued for this LMS, or an install code to register a "
            "new one."
        ),
        409,
    )


def platform_key_too_weak() -> RegistrationError:
    return err(
        "platform_key_too_weak",
        _("The LMS signs with RSA keys shorter than 2048 bits, which Attune does not accept."),
        _("Give the LMS a signing key of at least 2048 bits, then start the registration again."),
    )


def platform_jwks_unusable(detail: str) -> RegistrationError:
    return err(
        "platform_jwks_unusable",
        _("The LMS's public keys (jwks_uri) are not usable: {detail}.", detail=detail),
        _("The LMS must publish at least one RS256 signing key."),
    )


def registration_endpoint_unreachable(reason: str) -> RegistrationError:
    return err(
        "registration_endpoint_unreachable",
        _("Attune could not reach the LMS's registration endpoint ({reason}).", reason=reason),
        _("Nothing was stored in Attune. Try again in a moment."),
        status=502,
    )


# --- install codes and admin tokens --------------------------------------------------------------

INSTALL_HINT = _(
    "Ask whoever runs Attune for your school for a new install code: they create one on "
    "Attune's admin page or with the command attune admin create-install-code."
)


def install_code_missing() -> RegistrationError:
    return err(
        "install_code_missing",
        _("An install code is required to register Attune."),
        INSTALL_HINT,
        401,
    )


def install_code_invalid() -> RegistrationError:
    return err("install_code_invalid", _("This install code is not valid."), INSTALL_HINT, 403)


def install_code_used() -> RegistrationError:
    return err(
        "install_code_used",
        _("This install code has already been used; each code registers one LMS once."),
        INSTALL_HINT,
        403,
    )


def install_code_expired() -> RegistrationError:
    return err("install_code_expired", _("This install code has expired."), INSTALL_HINT, 403)


ADMIN_HINT = _(
    "Whoever runs Attune creates admin tokens with the command attune admin create-token NAME; "
    "a request sends one in its Authorization header as Bearer followed by the token."
)


class AdminAuthError(AttuneError):
    status = 401
    code = "admin_unauthorized"
    title = _("Sign-in required")


def admin_token_missing() -> AdminAuthError:
    return AdminAuthError(
        _("This needs an admin token (Authorization: Bearer <token>)."),
        code="admin_token_missing",
        hint=ADMIN_HINT,
    )


def admin_token_invalid() -> AdminAuthError:
    return AdminAuthError(
        _("This admin token is not valid."), code="admin_token_invalid", hint=ADMIN_HINT
    )


def admin_token_revoked() -> AdminAuthError:
    return AdminAuthError(
        _("This admin token has been revoked."), code="admin_token_revoked", hint=ADMIN_HINT
    )


# --- admin API -----------------------------------------------------------------------------------


def platform_not_found() -> AttuneError:
    return AttuneError(
        _("There is no registered platform with this id."),
        code="platform_not_found",
        status=404,
        title=_("Not found"),
    )


def bad_json(detail: str) -> AttuneError:
    return AttuneError(
        _("The request body is not usable: {detail}.", detail=detail), code="bad_json", status=400
    )


def region_unknown(regions: str) -> AttuneError:
    return AttuneError(
        _("There is no such region in this installation of Attune."),
        code="region_unknown",
        status=400,
        hint=_("Choose one of: {regions}.", regions=regions),
    )
