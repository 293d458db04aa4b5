"""What the admin pages' script (static/admin.js) shows, by key: sent to it in the page's
JSON data block (``<script type="application/json" id="admin-data">``), in the reader's
language, so the script holds no sentence of its own."""

from __future__ import annotations

import json

from shared.i18n.catalogues import Text, _, translate
from shared.i18n.languages import Language

ADMIN_STRINGS: dict[str, Text] = {
    "request_failed": _("Request failed (HTTP {status})"),
    "deployment_approved": _("Deployment {deployment}: approved."),
    "deployment_disabled": _("Deployment {deployment}: disabled."),
    "delete_confirm": _(
        "Delete the registration of {name} (client ID {client_id})? Launches from it stop "
        "within seconds."
    ),
    "deleted": _("Deleted. {retention}"),
    "reregister_label": _("Re-register {name}"),
    "reregistration_code": _(
        "Re-registration code for this LMS (shown once, valid until {expires}; it can only "
        "update this registration): {code}"
    ),
    "facts": _(
        "Issuer {issuer} · client ID {client_id} · {method} registration · new deployments: "
        "{policy} · {environment}"
    ),
    # Regions (issue #19): where a registration's launches and check-ins are kept.
    "region_fact": _("region: {region}"),
    "region_any": _("any region"),
    "region_label": _("Region where its data is kept"),
    "region_any_option": _("Any region (each school's own, as Canvas sends it)"),
    "region_save": _("Save region"),
    "region_saved": _(
        "Region saved: {region}. If it changed, set the LMS's login URL to that region's."
    ),
    "not_granted": _("The LMS did not grant everything Attune asked for:"),
    "col_deployment": _("Deployment"),
    "col_status": _("Status"),
    "col_seen_via": _("Seen via"),
    "approve": _("Approve"),
    "disable": _("Disable"),
    "no_deployment": _("No deployment yet: one is recorded at its first launch."),
    "create_reregistration": _("Create re-registration code"),
    "delete_registration": _("Delete registration"),
    "no_platform": _("No LMS is registered yet."),
    "install_code": _("Install code (shown once, valid until {expires}): {code}"),
    "sign_in_first": _("Sign in on the admin page first."),
    "registered": _("Registered: platform {id}."),
    "updated": _("Updated: platform {id}."),
    "warnings": _("Warnings: {warnings}"),
}


def admin_data(lang: Language) -> str:
    """The admin script's strings as a JSON data block's text ("<" escaped: no string can
    end the block)."""
    strings = {key: translate(text, lang) for key, text in ADMIN_STRINGS.items()}
    return json.dumps({"strings": strings}, ensure_ascii=False).replace("<", "\\u003c")
