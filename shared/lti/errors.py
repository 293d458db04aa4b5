"""Every way an LTI login or launch can be refused, each with a stable code.

Messages speak to the person in front of the LMS; hints speak to whoever can fix it (often
the LMS administrator). Codes appear in logs, metrics and the JSON error body.
"""

from __future__ import annotations

from shared.errors import AttuneError
from shared.i18n.catalogues import Text, _

RELAUNCH = _("Open Attune again from your course in the LMS.")
ADMIN = _("If this keeps happening, ask your LMS administrator to check the Attune registration.")


CLOCK = _(
    "Check that the LMS server's clock is correct. If this keeps happening, ask your LMS "
    "administrator to check the Attune registration."
)


class LtiError(AttuneError):
    status = 400
    code = "lti_error"
    title = _("Attune could not start")


def err(code: str, message: Text, hint: Text = RELAUNCH, status: int = 400) -> LtiError:
    return LtiError(message, code=code, hint=hint, status=status)


# Login initiation
def login_missing_param(name: str) -> LtiError:
    return err(
        "login_missing_param",
        _("The LMS did not send the required parameter {name}.", name=repr(name)),
        ADMIN,
    )


def login_bad_param(name: str) -> LtiError:
    return err(
        "login_bad_param", _("The LMS sent an unusable value for {name}.", name=repr(name)), ADMIN
    )


def platform_unknown() -> LtiError:
    return err(
        "platform_unknown",
        _("This LMS (issuer and client ID) is not registered with Attune."),
        _(
            "An LMS administrator needs to register Attune (dynamic registration or the manual "
            "form) before it can be launched."
        ),
        status=403,
    )


def platform_other_region(region: str, login_url: str | None) -> LtiError:
    """A registration served by another cell: its data lives in that region."""
    return err(
        "platform_other_region",
        _(
            "This LMS is registered with Attune in the {region} region, where its data is "
            "kept, and signs in there.",
            region=region,
        ),
        _(
            "An LMS administrator needs to set Attune's login URL in the LMS to the login URL "
            "of that region, {login_url}.",
            login_url=login_url,
        )
        if login_url
        else _(
            "An LMS administrator needs to set Attune's login URL in the LMS to that region's URL."
        ),
        status=403,
    )


def target_link_uri_foreign() -> LtiError:
    return err(
        "target_link_uri_foreign", _("The launch points at an address that is not Attune's."), ADMIN
    )


# Launch: state and browser binding
def state_missing() -> LtiError:
    return err("state_missing", _("The launch arrived without its login state."))


def state_invalid() -> LtiError:
    return err("state_invalid", _("The launch's login state is not one Attune issued."))


def state_expired() -> LtiError:
    return err("state_expired", _("The launch took too long and its login state expired."))


def state_not_bound() -> LtiError:
    return err(
        "state_not_bound",
        _(
            "This launch was started in a different browser or tab, or the browser blocked the "
            "data Attune needs to recognise it."
        ),
        _(
            "Open Attune again from your course in the LMS. If it fails again, allow cookies "
            "for this site or try another browser."
        ),
        status=401,
    )


# Launch: the id_token
def jwt_malformed() -> LtiError:
    return err("jwt_malformed", _("The LMS sent a launch token Attune cannot read."), ADMIN)


def registration_unknown() -> LtiError:
    return err(
        "registration_unknown",
        _("The launch comes from an LMS registration Attune does not know."),
        ADMIN,
        status=403,
    )


def registration_mismatch() -> LtiError:
    return err(
        "registration_mismatch",
        _("The launch token was issued for a different LMS registration than the login."),
        ADMIN,
        status=403,
    )


def jwt_alg_not_allowed() -> LtiError:
    return err("jwt_alg_not_allowed", _("The launch token is not signed with RS256."), ADMIN)


def jwt_kid_unknown() -> LtiError:
    return err(
        "jwt_kid_unknown",
        _("The launch token is signed with a key the LMS does not publish."),
        ADMIN,
    )


def jwt_signature_invalid() -> LtiError:
    return err("jwt_signature_invalid", _("The launch token's signature is not valid."), ADMIN)


def jwt_crit_unsupported() -> LtiError:
    return err(
        "jwt_crit_unsupported",
        _("The launch token requires a JOSE extension (crit header) that Attune does not support."),
        ADMIN,
    )


def platform_key_too_weak() -> LtiError:
    return err(
        "platform_key_too_weak",
        _(
            "The launch token is signed with an RSA key shorter than 2048 bits, which Attune "
            "does not accept."
        ),
        _(
            "The LMS administrator needs to give the LMS a signing key of at least 2048 bits. "
            "If this keeps happening, ask your LMS administrator to check the Attune "
            "registration."
        ),
    )


def platform_jwks_unavailable() -> LtiError:
    return err(
        "platform_jwks_unavailable",
        _("Attune could not fetch the LMS's public keys to check the launch."),
        _(
            "Try again in a minute. If this keeps happening, ask your LMS administrator to "
            "check the Attune registration."
        ),
        status=502,
    )


def jwt_expired() -> LtiError:
    return err("jwt_expired", _("The launch token has expired."))


def jwt_iat_future() -> LtiError:
    return err(
        "jwt_iat_future",
        _("The launch token claims to be issued in the future."),
        CLOCK,
    )


def jwt_not_yet_valid() -> LtiError:
    return err(
        "jwt_not_yet_valid",
        _("The launch token is not valid yet (its nbf time is in the future)."),
        CLOCK,
    )


def jwt_too_old() -> LtiError:
    return err("jwt_too_old", _("The launch token was issued too long ago."))


def jwt_aud_invalid() -> LtiError:
    return err("jwt_aud_invalid", _("The launch token is not addressed to Attune."), ADMIN)


def jwt_azp_invalid() -> LtiError:
    return err(
        "jwt_azp_invalid", _("The launch token's authorized party is missing or wrong."), ADMIN
    )


def nonce_mismatch() -> LtiError:
    return err("nonce_mismatch", _("The launch token does not belong to this login."))


def nonce_replayed() -> LtiError:
    return err("nonce_replayed", _("This launch was already used."), RELAUNCH, status=409)


def lti_version_unsupported() -> LtiError:
    return err(
        "lti_version_unsupported",
        _("The LMS uses an LTI version Attune does not support (1.3.0 is required)."),
        ADMIN,
    )


def deployment_missing() -> LtiError:
    return err(
        "deployment_missing", _("The launch does not say which deployment it is for."), ADMIN
    )


def deployment_pending() -> LtiError:
    return err(
        "deployment_pending",
        _("This installation of Attune is waiting for approval."),
        _("An Attune administrator needs to approve this deployment."),
        status=403,
    )


def deployment_disabled() -> LtiError:
    return err(
        "deployment_disabled",
        _("This installation of Attune has been disabled."),
        _("Ask your LMS administrator."),
        status=403,
    )


def message_type_unsupported() -> LtiError:
    return err(
        "message_type_unsupported", _("Attune does not handle this kind of LTI launch."), ADMIN
    )


def claim_missing(claim: str) -> LtiError:
    short = claim.rsplit("/", 1)[-1]
    return err(
        "claim_missing",
        _("The launch token lacks the required claim {claim}.", claim=repr(short)),
        ADMIN,
    )
