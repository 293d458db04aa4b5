"""What Attune tells an LMS about itself, in each shape an LMS reads.

Pure functions of the tool's URLs and settings: the dynamic registration request (IMS, with
Canvas's extra keys for Canvas), the Canvas JSON configuration, the values a Moodle admin types
into "Configure a tool manually", and the comparison of what was asked with what was granted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.i18n.catalogues import Text, _, translate
from shared.i18n.languages import ENGLISH, LANGUAGES, Language
from shared.lti import claims as C
from shared.lti.urls import ToolUrls
from shared.settings import Settings

Product = Literal["canvas", "moodle", "generic"]

TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
CANVAS_PLACEMENTS_KEY = "https://canvas.instructure.com/lti/placements"
CANVAS_PRIVACY_KEY = "https://canvas.instructure.com/lti/privacy_level"
CANVAS_TOOL_ID_KEY = "https://canvas.instructure.com/lti/tool_id"
CANVAS_ACCOUNT_NAME_KEY = "https://canvas.instructure.com/lti/account_name"
CANVAS_ACCOUNT_DOMAIN_KEY = "https://canvas.instructure.com/lti/account_domain"

SCOPE_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
SCOPE_AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_AGS_RESULT = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"

TOOL_ID = "attune"
DESCRIPTION = _(
    "Student wellbeing check-ins: teachers ask how students feel, students answer with an "
    "emotion and a pleasantness scale, teachers see insights."
)
# What the LMS shows, per placement, in each language ({tool}: ATTUNE_TOOL_NAME, a name that
# is never translated). The tool's own label is its name with what it is.
TOOL_LABEL = _("{tool} check-ins")
PLACEMENT_LABELS: dict[str, Text] = {
    "course_navigation": _("{tool} check-ins"),
    "editor_button": _("Insert a {tool} check-in"),
    "link_selection": _("Add a {tool} check-in"),
}

# The AWS regions Canvas runs in (seed: "Anatomy of a JSON configuration", oidc_initiation_urls).
CANVAS_AWS_REGIONS = (
    "us-east-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
)

# Canvas variable substitutions sent as custom parameters with every Canvas launch.
CANVAS_CUSTOM_FIELDS = {
    "canvas_user_id": "$Canvas.user.id",
    "canvas_course_id": "$Canvas.course.id",
}

_PRIVACY_CLAIMS: dict[str, tuple[str, ...]] = {
    "anonymous": ("iss", "sub"),
    "name_only": ("iss", "sub", "name", "given_name", "family_name"),
    "email_only": ("iss", "sub", "email"),
    "public": ("iss", "sub", "name", "given_name", "family_name", "email", "picture"),
}


@dataclass(frozen=True)
class Placement:
    """One choice on the install page. ``platform_placement`` is what the LMS is told."""

    id: str
    label: Text
    message_type: str
    platform_placement: str | None
    required: bool = False


CANVAS_CHOICES = (
    Placement(
        "course_navigation",
        _("Course navigation (the Attune app in each course)"),
        C.RESOURCE_LINK_REQUEST,
        "course_navigation",
    ),
    Placement(
        "editor_button",
        _("Rich content editor button (insert a check-in link)"),
        C.DEEP_LINKING_REQUEST,
        "editor_button",
    ),
    Placement(
        "link_selection",
        _("Module item / link selection (add a check-in to a module)"),
        C.DEEP_LINKING_REQUEST,
        "link_selection",
    ),
)
MOODLE_CHOICES = (
    Placement(
        "activity_chooser",
        _("Activity chooser (Attune as an activity in a course)"),
        C.RESOURCE_LINK_REQUEST,
        None,
        required=True,
    ),
    Placement(
        "deep_linking",
        _("Deep linking (teachers pick a check-in when adding the activity)"),
        C.DEEP_LINKING_REQUEST,
        "ContentArea",
    ),
)


PLACEMENT_IDS = frozenset(p.id for p in CANVAS_CHOICES + MOODLE_CHOICES)


def choices(product: Product) -> tuple[Placement, ...]:
    return CANVAS_CHOICES if product == "canvas" else MOODLE_CHOICES


def domain_of(url: str) -> str:
    """host[:port] of ``url``, the way Moodle compares it with the tool's ``domain``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


def scopes(settings: Settings) -> list[str]:
    wanted = [SCOPE_NRPS]
    if settings.ags_enabled:
        wanted += [SCOPE_AGS_LINEITEM, SCOPE_AGS_RESULT, SCOPE_AGS_SCORE]
    return wanted


# What each scope lets Attune do, as the keys the install page describes in words.
SCOPE_SERVICES = {
    SCOPE_NRPS: "roster",
    SCOPE_AGS_LINEITEM: "grades",
    SCOPE_AGS_RESULT: "grades",
    SCOPE_AGS_SCORE: "grades",
}


def services_of(scope_list: Sequence[str]) -> list[str]:
    """``roster``, ``grades``: what the scopes in ``scope_list`` allow (install page)."""
    return sorted({SCOPE_SERVICES[s] for s in scope_list if s in SCOPE_SERVICES})


def claims_for(privacy_level: str) -> list[str]:
    return list(_PRIVACY_CLAIMS[privacy_level])


def _messages(
    urls: ToolUrls, settings: Settings, product: Product, chosen: Sequence[str]
) -> list[dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for placement in choices(product):
        if placement.id in chosen or placement.required:
            names = by_type.setdefault(placement.message_type, [])
            if placement.platform_placement is not None:
                names.append(placement.platform_placement)
    messages: list[dict[str, Any]] = []
    for message_type in (C.RESOURCE_LINK_REQUEST, C.DEEP_LINKING_REQUEST):
        if message_type not in by_type:
            continue
        message: dict[str, Any] = {
            "type": message_type,
            "target_link_uri": urls.target_link_uri,
            "label": settings.tool_name,
            # IMS LTI-DR 1.0: a label in other languages is ``label#<BCP 47 tag>``.
            **{f"label#{tag}": text for tag, text in labels(TOOL_LABEL, settings).items()},
        }
        placements = by_type[message_type]
        if placements:
            message["placements"] = placements
            if product == "canvas":
                message[CANVAS_PLACEMENTS_KEY] = placements
        messages.append(message)
    return messages


def validate_choice(product: Product, chosen: Sequence[str]) -> list[str]:
    """The chosen placement ids, checked; raises ``ValueError`` with a reason."""
    known = {p.id for p in choices(product)}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise ValueError(f"unknown placement {unknown[0]!r}")
    picked = [p.id for p in choices(product) if p.id in chosen or p.required]
    if not picked:
        raise ValueError("choose at least one placement")
    return picked


def login_and_redirects(urls: ToolUrls, region: str | None) -> tuple[str, list[str]]:
    """The login URL and redirect URIs an LMS is given: those of ``region``'s cell when the
    registration is served by one (Moodle, manual), else the home region's login URL and
    every region's launch URL (Canvas sends each school to its own region)."""
    if region is None:
        return urls.login_url(), urls.redirect_uris
    return urls.login_url(region), [urls.launch_url(region)]


def labels(text: Text, settings: Settings) -> dict[str, str]:
    """``text`` in every language, by BCP 47 language tag."""
    tool = settings.tool_name
    return {lang.tag: translate(_(text.msgid, tool=tool), lang) for lang in LANGUAGES}


def registration_request(
    urls: ToolUrls,
    settings: Settings,
    product: Product,
    chosen: Sequence[str],
    region: str | None = None,
    lang: Language = ENGLISH,
) -> dict[str, Any]:
    """The client registration Attune POSTs to the platform's ``registration_endpoint``.

    IMS LTI Dynamic Registration 1.0 with Moodle's required fields; Canvas additionally gets
    its placements, privacy level and tool id keys. Login URL and redirect URIs: those of the
    region whose cell serves the registration (``login_and_redirects``). The description is in
    ``lang`` (the installing admin's: Moodle keeps one name and one description), the labels
    in every language (``label#<tag>``, ``client_name#<tag>``: RFC 7591 language tags).
    """
    login_url, redirect_uris = login_and_redirects(urls, region)
    privacy = settings.canvas_privacy_level
    tool: dict[str, Any] = {
        "domain": domain_of(urls.target_link_uri),
        "target_link_uri": urls.target_link_uri,
        "description": translate(DESCRIPTION, lang),
        "claims": claims_for(privacy),
        "messages": _messages(urls, settings, product, chosen),
    }
    if product == "canvas":
        tool["custom_parameters"] = dict(CANVAS_CUSTOM_FIELDS)
        tool[CANVAS_PRIVACY_KEY] = privacy
        tool[CANVAS_TOOL_ID_KEY] = TOOL_ID
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": login_url,
        "redirect_uris": redirect_uris,
        "client_name": settings.tool_name,
        **{f"client_name#{tag}": text for tag, text in labels(TOOL_LABEL, settings).items()},
        "client_uri": urls.public_url,
        "jwks_uri": urls.jwks_url,
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": " ".join(scopes(settings)),
        TOOL_CONFIG: tool,
    }


# --- what was asked, what was granted ------------------------------------------------------------


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def summarize(registration: Mapping[str, Any], product: Product) -> dict[str, Any]:
    """The parts of a registration (asked or granted) an admin cares about, normalised."""
    tool = registration.get(TOOL_CONFIG)
    tool = tool if isinstance(tool, dict) else {}
    scope = registration.get("scope")
    messages: dict[str, list[str]] = {}
    raw_messages = tool.get("messages")
    for message in raw_messages if isinstance(raw_messages, list) else []:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            continue
        placements = _strings(message.get(CANVAS_PLACEMENTS_KEY)) or _strings(
            message.get("placements")
        )
        messages.setdefault(message["type"], [])
        messages[message["type"]] += [p for p in placements if p not in messages[message["type"]]]
    if product != "canvas":
        # Moodle echoes only the deep linking message; resource link launches always work.
        messages.setdefault(C.RESOURCE_LINK_REQUEST, [])
    privacy = tool.get(CANVAS_PRIVACY_KEY)
    return {
        "scopes": sorted(set(scope.split())) if isinstance(scope, str) else [],
        "messages": {k: sorted(v) for k, v in sorted(messages.items())},
        "privacy_level": privacy if isinstance(privacy, str) else None,
        "claims": sorted(set(_strings(tool.get("claims")))),
    }


def compare(requested: Mapping[str, Any], granted: Mapping[str, Any]) -> dict[str, Any]:
    """What the platform did not grant (empty dict: everything asked for was granted).

    Extra scopes or claims a platform grants are not a problem (Moodle reports more than
    asked) and are not listed.
    """
    diff: dict[str, Any] = {}
    missing_scopes = sorted(set(requested.get("scopes", [])) - set(granted.get("scopes", [])))
    if missing_scopes:
        diff["scopes_missing"] = missing_scopes
    asked_messages: dict[str, list[str]] = requested.get("messages", {})
    got_messages: dict[str, list[str]] = granted.get("messages", {})
    missing_messages = sorted(set(asked_messages) - set(got_messages))
    if missing_messages:
        diff["messages_missing"] = missing_messages
    # A message the platform kept with none of the asked placements lost them all.
    missing_placements = sorted(
        {
            p
            for message_type, placements in asked_messages.items()
            for p in placements
            if p not in got_messages.get(message_type, [])
        }
    )
    if missing_placements:
        diff["placements_missing"] = missing_placements
    asked_privacy = requested.get("privacy_level")
    got_privacy = granted.get("privacy_level")
    if asked_privacy and got_privacy and asked_privacy != got_privacy:
        diff["privacy_level"] = {"requested": asked_privacy, "granted": got_privacy}
    return diff


PRIVACY_LABELS = {
    "anonymous": _("Anonymous"),
    "name_only": _("Name only"),
    "email_only": _("Email only"),
    "public": _("Public"),
}
_SCOPE_NAMES = {
    SCOPE_NRPS: _("reading the list of people in a course (Names and Role Provisioning)"),
    SCOPE_AGS_LINEITEM: _("adding gradebook columns (Assignment and Grade Services)"),
    SCOPE_AGS_RESULT: _("reading gradebook results (Assignment and Grade Services)"),
    SCOPE_AGS_SCORE: _("sending grade scores (Assignment and Grade Services)"),
}
_MESSAGE_NAMES = {
    C.RESOURCE_LINK_REQUEST: _("opening Attune from a course (resource links)"),
    C.DEEP_LINKING_REQUEST: _("adding check-ins to course content (deep linking)"),
}
_PLACEMENT_NAMES = {
    p.platform_placement: p.label
    for p in CANVAS_CHOICES + MOODLE_CHOICES
    if p.platform_placement is not None
}


def describe_diff(diff: Mapping[str, Any], lang: Language = ENGLISH) -> list[str]:
    """One plain sentence per difference, for the admin (no identifiers or URLs), in
    ``lang``."""

    def names(table: Mapping[str, Text], keys: Sequence[str]) -> str:
        return "; ".join(translate(table[k], lang) if k in table else k for k in keys)

    lines = []
    if diff.get("scopes_missing"):
        text = names(_SCOPE_NAMES, diff["scopes_missing"])
        lines.append(translate(_("Not granted: {names}", names=text), lang))
    if diff.get("messages_missing"):
        text = names(_MESSAGE_NAMES, diff["messages_missing"])
        lines.append(translate(_("Not granted: {names}", names=text), lang))
    if diff.get("placements_missing"):
        text = names(_PLACEMENT_NAMES, diff["placements_missing"])
        lines.append(translate(_("Not shown in: {names}", names=text), lang))
    if diff.get("privacy_level"):
        p = diff["privacy_level"]
        granted = names(PRIVACY_LABELS, [p["granted"]])
        requested = names(PRIVACY_LABELS, [p["requested"]])
        lines.append(
            translate(
                _(
                    "Privacy level: {granted} instead of {requested}",
                    granted=granted,
                    requested=requested,
                ),
                lang,
            )
        )
    return lines


# --- Canvas JSON configuration -------------------------------------------------------------------


def canvas_regions(urls: ToolUrls) -> dict[str, str]:
    """Login URL per configured region whose name is a Canvas AWS region."""
    return {r: urls.login_url(r) for r in urls.regions if r in CANVAS_AWS_REGIONS}


def canvas_labels(text: Text, settings: Settings) -> dict[str, str]:
    """Labels by Canvas locale (Canvas picks ``labels[locale]``, then ``labels[the locale's
    language]``, then ``text``: ContextExternalTool#label_for). Canvas's locales are BCP 47
    tags like Attune's. Portuguese is European ("pt") and Brazilian ("pt-BR"): both read
    Attune's pt-BR. Its Chinese are "zh-Hans" and "zh-Hant": no "zh" key, so Traditional
    readers are not given Simplified."""
    found = labels(text, settings)
    found["pt"] = found["pt-BR"]
    return found


def canvas_json(urls: ToolUrls, settings: Settings) -> dict[str, Any]:
    """The document of "Anatomy of a JSON configuration" (Canvas developer key, JSON URL), with
    the tool's and each placement's label in every language (``labels``)."""
    target = urls.target_link_uri
    placements: list[dict[str, Any]] = [
        {
            "placement": "course_navigation",
            "labels": canvas_labels(PLACEMENT_LABELS["course_navigation"], settings),
            "message_type": C.RESOURCE_LINK_REQUEST,
            "text": settings.tool_name,
            "target_link_uri": target,
            "default": "enabled",
        },
        {
            "placement": "editor_button",
            "labels": canvas_labels(PLACEMENT_LABELS["editor_button"], settings),
            "message_type": C.DEEP_LINKING_REQUEST,
            "text": settings.tool_name,
            "target_link_uri": target,
            "selection_height": 600,
            "selection_width": 800,
        },
        {
            "placement": "link_selection",
            "labels": canvas_labels(PLACEMENT_LABELS["link_selection"], settings),
            "message_type": C.DEEP_LINKING_REQUEST,
            "text": settings.tool_name,
            "target_link_uri": target,
            "selection_height": 600,
            "selection_width": 800,
        },
    ]
    return {
        "title": settings.tool_name,
        "description": str(DESCRIPTION),
        "oidc_initiation_url": urls.login_url(),
        "oidc_initiation_urls": canvas_regions(urls),
        "target_link_uri": target,
        "scopes": scopes(settings),
        "extensions": [
            {
                "domain": domain_of(target),
                "tool_id": TOOL_ID,
                "platform": "canvas.instructure.com",
                "privacy_level": settings.canvas_privacy_level,
                "settings": {
                    "text": settings.tool_name,
                    "labels": canvas_labels(TOOL_LABEL, settings),
                    "placements": placements,
                },
            }
        ],
        "public_jwk_url": urls.jwks_url,
        # Every region's launch URL. Newer Canvas takes the developer key's redirect URIs from
        # here and otherwise defaults them to [target_link_uri] (Lti::CreateRegistrationService),
        # which is the app, not the launch: its auth endpoint then refuses every launch.
        "redirect_uris": urls.redirect_uris,
        "custom_fields": dict(CANVAS_CUSTOM_FIELDS),
    }


# --- Moodle manual configuration -----------------------------------------------------------------


def moodle_manual_values(
    urls: ToolUrls, settings: Settings, region: str | None = None
) -> list[tuple[str, str]]:
    """(Moodle field label, value) in the order of Moodle's "Configure a tool manually" form;
    login URL and redirection URIs of ``region``'s cell (default: the home region's login)."""
    login_url, redirect_uris = login_and_redirects(urls, region)
    names = settings.canvas_privacy_level in ("name_only", "public")
    emails = settings.canvas_privacy_level in ("email_only", "public")
    return [
        ("Tool name", settings.tool_name),
        ("Tool URL", urls.target_link_uri),
        ("LTI version", "LTI 1.3"),
        ("Public key type", "Keyset URL"),
        ("Public keyset", urls.jwks_url),
        ("Initiate login URL", login_url),
        ("Redirection URI(s)", "\n".join(redirect_uris)),
        ("Supports Deep Linking (Content-Item Message)", "Yes"),
        ("Content Selection URL", urls.target_link_uri),
        (
            "IMS LTI Names and Role Provisioning",
            "Use this service to retrieve members' information as per privacy settings",
        ),
        (
            "IMS LTI Assignment and Grade Services",
            "Use this service for grade sync and column management"
            if settings.ags_enabled
            else "Do not use this service",
        ),
        ("Share launcher's name with tool", "Always" if names else "Never"),
        ("Share launcher's email with tool", "Always" if emails else "Never"),
    ]


def moodle_manual_json(
    urls: ToolUrls, settings: Settings, region: str | None = None
) -> dict[str, Any]:
    login_url, redirect_uris = login_and_redirects(urls, region)
    return {
        "tool_url": urls.target_link_uri,
        "lti_version": "LTI 1.3",
        "public_key_type": "Keyset URL",
        "public_keyset_url": urls.jwks_url,
        "initiate_login_url": login_url,
        "redirection_uris": redirect_uris,
        "deep_linking_url": urls.target_link_uri,
        "fields": [
            {"label": k, "value": v} for k, v in moodle_manual_values(urls, settings, region)
        ],
        "region": region,
    }


def product_of(product_family_code: object) -> Product:
    code = str(product_family_code or "").lower()
    if code == "canvas":
        return "canvas"
    if code == "moodle":
        return "moodle"
    return "generic"
