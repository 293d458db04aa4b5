"""What an LTI 1.3 platform does, as Canvas and Moodle do it: shared by the development
emulator (``devstack.emulator.app``) and the test fakes (``tests/fakes``).

- ``moodle_registration`` follows ``mod/lti/classes/local/ltiopenid/registration_helper.php``:
  required fields, ``private_key_jwt``, ``domain`` equal to host[:port] of ``target_link_uri``;
  errors are plain text (400); the answer carries ``client_id``, the deployment and the scopes
  it granted.
- ``canvas_problems``/``canvas_answer`` follow ``Lti::IMS::DynamicRegistrationController``:
  schema and placements checked, 422 ``{"errors": [...]}``, a numeric-string ``client_id``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.lti import claims as C

Flavour = Literal["canvas", "moodle"]
CANVAS_ISSUER = "https://canvas.instructure.com"

TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
CANVAS_PLACEMENTS = "https://canvas.instructure.com/lti/placements"
CANVAS_PRIVACY = "https://canvas.instructure.com/lti/privacy_level"
CANVAS_TOOL_ID = "https://canvas.instructure.com/lti/tool_id"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
AGS_SCOPES = (
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
)
CANVAS_SCOPES = (*AGS_SCOPES, NRPS, "https://canvas.instructure.com/lti/public_jwk/scope/update")
CANVAS_KNOWN_PLACEMENTS = frozenset(
    {
        "course_navigation",
        "account_navigation",
        "user_navigation",
        "global_navigation",
        "editor_button",
        "link_selection",
        "assignment_selection",
        "homework_submission",
        "module_menu",
        "file_menu",
    }
)
MESSAGE_TYPES = frozenset({"LtiResourceLinkRequest", "LtiDeepLinkingRequest"})
FIXED_AUTH_PARAMS = {
    "scope": "openid",
    "response_type": "id_token",
    "response_mode": "form_post",
    "prompt": "none",
}
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"


@dataclass
class Client:
    client_id: str
    redirect_uris: list[str]
    deployment_id: str
    # Emulator only: what the tool registered, and whether the admin has activated it.
    target_link_uri: str = ""
    initiate_login_uri: str = ""
    jwks_uri: str = ""
    name: str = ""
    active: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def new_client_id(flavour: Flavour) -> str:
    if flavour == "canvas":
        return str(10000000000000 + secrets.randbelow(10**9))
    return secrets.token_urlsafe(10)


def new_deployment_id(flavour: Flavour) -> str:
    if flavour == "canvas":
        return f"{secrets.randbelow(999)}:{secrets.token_hex(20)}"
    return str(secrets.randbelow(900) + 10)


def auth_request_problem(params: dict[str, str], clients: dict[str, Client]) -> str | None:
    """Why an OIDC authentication request is refused (as the platform's 400 text), else None."""
    for name, value in FIXED_AUTH_PARAMS.items():
        if params.get(name) != value:
            return f"invalid_request: {name}"
    client = clients.get(params.get("client_id", ""))
    if client is None:
        return "invalid_client"
    if params.get("redirect_uri") not in client.redirect_uris:
        return "invalid redirect_uri"
    for name in ("state", "nonce", "login_hint"):
        if not params.get(name):
            return f"missing {name}"
    return None


def launch_claims(
    *,
    flavour: Flavour,
    issuer: str,
    platform_url: str,
    client: Client,
    nonce: str,
    sub: str,
    name: str,
    roles: list[str],
    target_link_uri: str,
    message_type: str = C.RESOURCE_LINK_REQUEST,
    context_id: str = "course-1",
    context_title: str = "Wellbeing 101",
    resource_link_id: str | None = None,
    lifetime_s: int = 3600,
    extra: dict[str, Any] | None = None,
    locale: str = "en",
    return_url: str | None = None,
    names: bool = True,
) -> dict[str, Any]:
    """The id_token claims of a launch. Moodle's id_tokens live 60 seconds. ``return_url``:
    the page the launch came from (Canvas builds it on that page's host); ``names``: whether
    the platform shares the user's name (Canvas: privacy level public or name_only).

    ``locale`` is the user's LMS language, spelt as that LMS spells it (``LOCALES``): both
    send it as ``launch_presentation.locale`` (Moodle: ``current_language()``, mod/lti
    locallib.php; Canvas: ``I18n.locale``, lib/lti/messages/jwt_message.rb, which also sends
    the top-level OIDC ``locale`` claim)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client.client_id,
        "azp": client.client_id,
        "sub": sub,
        "exp": now + (60 if flavour == "moodle" else lifetime_s),
        "iat": now,
        "nonce": nonce,
        C.VERSION: "1.3.0",
        C.MESSAGE_TYPE: message_type,
        C.DEPLOYMENT_ID: client.deployment_id,
        C.TARGET_LINK_URI: target_link_uri,
        C.ROLES: roles,
        C.CONTEXT: {"id": context_id, "title": context_title},
        C.TOOL_PLATFORM: {"guid": platform_url, "product_family_code": flavour},
        C.LAUNCH_PRESENTATION: {"document_target": "iframe", "locale": locale},
    }
    if flavour == "canvas":
        claims["locale"] = locale
    if names:
        first, _, last = name.partition(" ")
        claims.update({"name": name, "given_name": first, "family_name": last or first})
    if return_url is not None:
        claims[C.LAUNCH_PRESENTATION]["return_url"] = return_url
    if message_type == C.RESOURCE_LINK_REQUEST:
        claims[C.RESOURCE_LINK] = {
            "id": resource_link_id or f"rl-{uuid.uuid4().hex[:8]}",
            "title": "Check-in",
        }
    if message_type == C.DEEP_LINKING_REQUEST:
        claims[C.DEEP_LINKING_SETTINGS] = {
            "deep_link_return_url": f"{platform_url}/deep_linking_return",
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe", "window"],
            "data": "opaque-data",
        }
    claims.update(extra or {})
    return claims


# The languages a user can pick in the emulated LMS, as each LMS spells its locale codes
# (Canvas: config/locales; Moodle: its language packs' codes) -> the language's own name.
LOCALES: dict[Flavour, dict[str, str]] = {
    "canvas": {
        "en": "English",
        "es": "Español",
        "fr": "Français",
        "de": "Deutsch",
        "pt-BR": "Português (Brasil)",
        "nl": "Nederlands",
        "ar": "العربية",
        "zh-Hans": "简体中文",
        "zh-Hant": "繁體中文",
        "ja": "日本語",
    },
    "moodle": {
        "en": "English",
        "es_mx": "Español - México",
        "fr": "Français",
        "de_du": "Deutsch - Du",
        "pt_br": "Português - Brasil",
        "nl": "Nederlands",
        "ar": "عربي",
        "zh_cn": "简体中文",
        "zh_tw": "正體中文",
        "ja": "日本語",
    },
}


def openid_configuration(
    flavour: Flavour,
    *,
    issuer: str,
    auth_url: str,
    registration_endpoint: str,
    jwks_url: str,
    token_url: str,
    account_name: str = "Test University",
    account_domain: str | None = None,
) -> dict[str, Any]:
    """The platform's OpenID configuration for dynamic registration. Canvas
    (``SecurityController#openid_configuration``): the auth, JWKS and token endpoints on the
    OIDC auth domain, the registration endpoint on the account's domain (``account_domain``,
    host[:port], also named in the platform configuration)."""
    doc: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": auth_url,
        "registration_endpoint": registration_endpoint,
        "jwks_uri": jwks_url,
        "token_endpoint": token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", NRPS, *AGS_SCOPES],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "iss", "name", "given_name", "family_name", "email"],
    }
    if flavour == "canvas":
        doc["authorization_server"] = urlsplit(auth_url).netloc
        doc[PLATFORM_CONFIG] = {
            "product_family_code": "canvas",
            "version": "cloud",  # hosted Canvas: a word, not a version
            "messages_supported": [
                {"type": "LtiResourceLinkRequest", "placements": ["course_navigation"]},
                {
                    "type": "LtiDeepLinkingRequest",
                    "placements": ["editor_button", "link_selection"],
                },
            ],
            "variables": ["Canvas.user.id", "Canvas.course.id"],
            "https://canvas.instructure.com/lti/account_name": account_name,
            "https://canvas.instructure.com/lti/account_lti_guid": secrets.token_hex(8),
        }
        if account_domain is not None:
            doc[PLATFORM_CONFIG]["https://canvas.instructure.com/lti/account_domain"] = (
                account_domain
            )
    else:
        doc[PLATFORM_CONFIG] = {
            "product_family_code": "moodle",
            "version": "4.5.1+ (Build: 20250110)",  # Moodle: $CFG->release
            # As mod/lti/openid-configuration.php sends them: message types as plain strings
            # (not the spec's objects), the placements beside them.
            "messages_supported": ["LtiResourceLinkRequest", "LtiDeepLinkingRequest"],
            "placements": ["AddContentMenu"],
            "variables": ["basic-lti-launch-request", "ContentItemSelectionRequest"],
        }
    return doc


def moodle_problem(body: dict[str, Any]) -> str | None:
    """Moodle's refusal text for a registration request, else None."""
    for key in (
        "response_types",
        "initiate_login_uri",
        "redirect_uris",
        "client_name",
        "jwks_uri",
        "token_endpoint_auth_method",
        TOOL_CONFIG,
    ):
        if not body.get(key):
            return f"missing required attribute {key}"
    tool = body[TOOL_CONFIG]
    for key in ("domain", "target_link_uri"):
        if not tool.get(key):
            return f"missing required attribute {key}"
    if "id_token" not in body["response_types"]:
        return "invalid_response_types"
    if not isinstance(body["redirect_uris"], list):
        return "invalid_redirect_uris"
    if body["token_endpoint_auth_method"] != "private_key_jwt":  # noqa: S105 - a method name
        return "invalid_token_endpoint_auth_method"
    if body.get("application_type") not in (None, "web"):
        return "invalid_application_type"
    target = urlsplit(tool["target_link_uri"])
    host = f"{target.hostname}:{target.port}" if target.port else str(target.hostname)
    if tool["domain"] != host:
        return "domain_targetlinkuri_mismatch"
    return None


def moodle_answer(
    body: dict[str, Any], client: Client, *, return_deployment: bool = True
) -> dict[str, Any]:
    """Moodle's answer to an accepted registration (``moodle_problem`` returned None)."""
    tool = body[TOOL_CONFIG]
    scopes = body.get("scope", "").split()
    granted_scopes = [s for s in scopes if s == NRPS]
    if any(s in AGS_SCOPES for s in scopes):
        granted_scopes = [
            "https://purl.imsglobal.org/spec/lti-ags/scope/score",
            "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
            "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
            "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
            *granted_scopes,
        ]
    messages = [
        {"type": m["type"], "target_link_uri": m.get("target_link_uri", "")}
        for m in tool.get("messages", [])
        if m.get("type") == "LtiDeepLinkingRequest"
    ]
    tool_response: dict[str, Any] = {
        "target_link_uri": tool["target_link_uri"],
        "domain": tool["domain"],
        "description": tool.get("description", ""),
        "claims": ["sub", "iss", "name", "family_name", "middle_name", "email"],
    }
    if return_deployment:
        tool_response["deployment_id"] = client.deployment_id
    if messages:
        tool_response["messages"] = messages
    return {
        "client_id": client.client_id,
        "token_endpoint_auth_method": "private_key_jwt",
        "response_types": ["id_token"],
        "jwks_uri": body["jwks_uri"],
        "initiate_login_uri": body["initiate_login_uri"],
        "grant_types": ["client_credentials", "implicit"],
        "redirect_uris": body["redirect_uris"],
        "application_type": ["web"],
        "client_name": body["client_name"],
        "logo_uri": "",
        "scope": " ".join(granted_scopes),
        TOOL_CONFIG: tool_response,
    }


def canvas_problems(body: dict[str, Any]) -> list[str]:
    """Canvas's validation errors for a registration request (empty when acceptable)."""
    problems: list[str] = []
    if body.get("application_type") != "web":
        problems.append("application_type must be web")
    if not {"client_credentials", "implicit"} <= set(body.get("grant_types") or []):
        problems.append("grant_types must include client_credentials and implicit")
    for key in ("initiate_login_uri", "redirect_uris", "response_types", "client_name", "jwks_uri"):
        if not body.get(key):
            problems.append(f"{key} is required")
    if body.get("token_endpoint_auth_method") != "private_key_jwt":
        problems.append("token_endpoint_auth_method must be private_key_jwt")
    if not isinstance(body.get("scope"), str):
        problems.append("scope must be a string")
    else:
        unknown = [s for s in body["scope"].split() if s not in CANVAS_SCOPES]
        if unknown:
            problems.append(f"invalid scope {unknown[0]}")
    tool = body.get(TOOL_CONFIG)
    if not isinstance(tool, dict):
        problems.append(f"{TOOL_CONFIG} is required")
        tool = {}
    for key in ("domain", "target_link_uri"):
        if not isinstance(tool.get(key), str) or not tool[key]:
            problems.append(f"{key} is required")
    if not isinstance(tool.get("claims"), list):
        problems.append("claims must be an array")
    if tool.get(CANVAS_PRIVACY) not in (None, "public", "name_only", "email_only", "anonymous"):
        problems.append("privacy_level is invalid")
    messages = tool.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages must be a non-empty array")
        messages = []
    for message in messages:
        if message.get("type") not in MESSAGE_TYPES:
            problems.append(f"message type {message.get('type')!r} is not supported")
        placements = message.get(CANVAS_PLACEMENTS) or message.get("placements")
        if not isinstance(placements, list) or not placements:
            problems.append("each message needs placements")
            continue
        for placement in placements:
            if placement not in CANVAS_KNOWN_PLACEMENTS:
                problems.append(f"placement {placement!r} is not supported")
    return problems


def canvas_answer(
    body: dict[str, Any],
    client: Client,
    *,
    edits: dict[str, Any] | None = None,
    return_deployment: bool = False,
    registration_client_uri: str | None = None,
) -> dict[str, Any]:
    """Canvas's answer to an accepted registration: the request, with client_id
    (``DynamicRegistrationController#render_registration``: Canvas answers before the admin
    reviews anything, so the answer echoes the request). ``edits`` plays a platform that
    answers with less than asked (drop_scopes, drop_placements, privacy_level)."""
    edits = edits or {}
    granted: dict[str, Any] = json.loads(json.dumps(body))
    granted["client_id"] = client.client_id
    if edits.get("drop_scopes"):
        granted["scope"] = " ".join(
            s for s in granted["scope"].split() if s not in edits["drop_scopes"]
        )
    granted_tool = granted[TOOL_CONFIG]
    for message in granted_tool["messages"]:
        for key in (CANVAS_PLACEMENTS, "placements"):
            if key in message:
                message[key] = [
                    p for p in message[key] if p not in edits.get("drop_placements", [])
                ]
    if edits.get("privacy_level"):
        granted_tool[CANVAS_PRIVACY] = edits["privacy_level"]
    if return_deployment:
        granted_tool["deployment_id"] = client.deployment_id
    if registration_client_uri is not None:
        granted["registration_client_uri"] = registration_client_uri
        granted_tool["https://canvas.instructure.com/lti/registration_config_url"] = (
            registration_client_uri + "/view"
        )
    return granted


def storage_responder_js(tool_origin: str) -> str:
    """The LMS page's LTI Platform Storage responder (lti.put_data / lti.get_data), answering
    only the tool's origin; it logs each storage subject in ``window.storageLog`` (the tool's
    other messages, such as ``lti.frameResize``, are not storage)."""
    return f"""
window.storageLog = [];
const ltiStore = new Map();
window.addEventListener("message", (event) => {{
  if (event.origin !== {json.dumps(tool_origin)}) return;
  const m = event.data || {{}};
  if (["lti.put_data", "lti.get_data"].includes(m.subject)) window.storageLog.push(m.subject);
  if (m.subject === "lti.put_data") {{
    ltiStore.set(m.key, m.value);
    event.source.postMessage({{subject: "lti.put_data.response", message_id: m.message_id,
                              key: m.key, value: m.value}}, event.origin);
  }} else if (m.subject === "lti.get_data") {{
    event.source.postMessage({{subject: "lti.get_data.response", message_id: m.message_id,
                              key: m.key, value: ltiStore.get(m.key)}}, event.origin);
  }}
}});
"""


def frame_resize_js(tool_origin: str, flavour: str) -> str:
    """How the LMS page sizes the tool's iframe (``#tool``). Canvas listens for the tool's
    ``lti.frameResize`` postMessage (an object or its JSON string; ``height`` in px or a CSS
    length) and sets the iframe's height to it (ui/shared/lti/jquery/subjects/lti.frameResize);
    it answers subjects it does not support (``org.imsglobal.lti.frameResize`` among them) with
    an error response, which changes nothing. Moodle 4.5 listens for no message: mod/lti/view.php
    makes the iframe as tall as the window below it (minus 15 px) on load and on every window
    resize, and the tool scrolls inside it. Each resize is logged in ``window.frameResizes``."""
    if flavour == "moodle":
        return """
window.frameResizes = [];
(() => {
  const frame = document.getElementById("tool");
  if (!frame) return;
  const fit = () => {
    const top = frame.getBoundingClientRect().top + window.scrollY;
    frame.style.height = Math.max(window.innerHeight - top - 15, 150) + "px";
  };
  fit();
  window.addEventListener("resize", fit);
})();
"""
    return f"""
window.frameResizes = [];
window.addEventListener("message", (event) => {{
  if (event.origin !== {json.dumps(tool_origin)}) return;
  let m = event.data;
  if (typeof m === "string") {{ try {{ m = JSON.parse(m); }} catch (e) {{ return; }} }}
  if (!m || m.subject !== "lti.frameResize") return;
  const frame = document.getElementById("tool");
  const h = Number(m.height) > 0 ? m.height + "px" : String(m.height || "1px");
  frame.height = h;
  frame.style.height = h;
  window.frameResizes.push(m.height);
}});
"""
