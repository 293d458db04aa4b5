"""The emulated Canvas as Instructure hosts it (development only; ``docs/emulator.md``).

Hosted Canvas splits one platform over several origins, and so does the emulator:

- **the Instructure side** (``cloud``, ``http://localhost:<port>`` for ``attune dev``): the
  issuers ``/canvas``, ``/canvas-beta``, ``/canvas-test`` (they serve only the OpenID
  configuration: Canvas builds its URL on the issuer's host,
  ``Lti::IMS::DynamicRegistrationController#oidc_configuration_url``) and their OIDC auth
  domains ``/sso``, ``/sso-beta``, ``/sso-test`` (auth endpoint, JWKS, token endpoint and the
  ``post_message_forwarding`` frame, ``Lti::Oidc.auth_domain``,
  ``Lti::PlatformStorageController``) — laid out like ``canvas.instructure.com`` and
  ``sso.canvaslms.com``, the cloud ``attune dev`` tells Attune about
  (``ATTUNE_DEV_CANVAS_CLOUD``);
- **the school** (``http://127.0.0.1:<port>/canvas``): every page people see (admin, course,
  the launch form), the registration endpoint (``create_lti_registration_url(host:
  account_domain)`` in ``SecurityController#openid_configuration``), NRPS and the deep-linking
  return. ``127.0.0.1`` is another site than the tool (``localhost``), so the tool's iframe is
  cross-site as under a real school's Canvas.

Beta and test are copies of production with their own issuer, keys and endpoints but the same
client_ids and deployments; the course page switches environment. What a Canvas admin changes
after the registration answer (scopes, placements, privacy level: the registration overlay,
``Lti::IMS::Registration#registration_overlay``) is applied to launches and tokens only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from devstack.emulator.lti import CANVAS_PLACEMENTS, CANVAS_PRIVACY, TOOL_CONFIG, Client

NRPS_SCOPE: Final = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
FORWARDING_TARGET: Final = "post_message_forwarding"  # Lti::PlatformStorage::FORWARDING_TARGET
PRIVACY_LEVELS: Final = ("public", "name_only", "email_only", "anonymous")


@dataclass(frozen=True)
class CanvasEnvironment:
    name: str  # production | beta | test
    issuer_path: str  # /canvas: the issuer is cloud + issuer_path
    sso_path: str  # /sso: the OIDC auth domain
    login_value: str  # canvas_environment at login (ApplicationController.test_cluster_name)


ENVIRONMENTS: Final = {
    e.name: e
    for e in (
        CanvasEnvironment("production", "/canvas", "/sso", "prod"),
        CanvasEnvironment("beta", "/canvas-beta", "/sso-beta", "beta"),
        CanvasEnvironment("test", "/canvas-test", "/sso-test", "test"),
    )
}


def environment(name: str | None) -> CanvasEnvironment:
    return ENVIRONMENTS.get(name or "", ENVIRONMENTS["production"])


@dataclass(frozen=True)
class Grants:
    """What a tool really gets: what it asked for, less the admin's overlay."""

    scopes: tuple[str, ...]
    privacy_level: str
    placements: tuple[str, ...]

    @property
    def names(self) -> bool:  # Lti::Messages::JwtMessage: add_include_name_claims!
        return self.privacy_level in ("public", "name_only")

    @property
    def email(self) -> bool:
        return self.privacy_level in ("public", "email_only")

    @property
    def roster(self) -> bool:  # JwtMessage#include_names_and_roles_service_claims?
        return NRPS_SCOPE in self.scopes


def requested(body: dict[str, Any]) -> dict[str, Any]:
    """What a registration request asks Canvas for (kept with the client)."""
    tool = body.get(TOOL_CONFIG) or {}
    placements: list[str] = []
    for message in tool.get("messages") or []:
        for p in message.get(CANVAS_PLACEMENTS) or message.get("placements") or []:
            if p not in placements:
                placements.append(p)
    return {
        "scopes": str(body.get("scope", "")).split(),
        "privacy_level": tool.get(CANVAS_PRIVACY) or "anonymous",
        "placements": placements,
    }


def grants(client: Client) -> Grants:
    asked = client.extra.get("requested") or {
        "scopes": [NRPS_SCOPE],
        "privacy_level": "public",
        "placements": ["course_navigation", "editor_button", "link_selection"],
    }
    overlay = client.extra.get("overlay") or {}
    disabled_scopes = set(overlay.get("disabledScopes") or [])
    disabled_placements = set(overlay.get("disabledPlacements") or [])
    return Grants(
        scopes=tuple(s for s in asked["scopes"] if s not in disabled_scopes),
        privacy_level=overlay.get("privacy_level") or asked["privacy_level"],
        placements=tuple(p for p in asked["placements"] if p not in disabled_placements),
    )


# ui/features/post_message_forwarding/index.ts: the frame on the OIDC auth domain that
# forwards a tool's postMessages to the Canvas page (PARENT_ORIGIN) with sourceToolInfo, and
# the page's answers back to the tool.
FORWARDING_JS: Final = """
const parentOrigin = PARENT_ORIGIN;
const windows = [];
window.addEventListener("message", (e) => {
  const message = e.data || {};
  if (e.origin === parentOrigin) {
    const {sourceToolInfo, ...rest} = message;
    if (!sourceToolInfo) return;
    const target = windows[sourceToolInfo.windowId];
    if (target) target.postMessage(rest, sourceToolInfo.origin);
  } else {
    let windowId = windows.indexOf(e.source);
    if (windowId === -1) { windows.push(e.source); windowId = windows.length - 1; }
    window.top.postMessage({...message, sourceToolInfo: {origin: e.origin, windowId}},
                           parentOrigin);
  }
});
"""


def forwarding_page_js(parent_origin: str) -> str:
    return FORWARDING_JS.replace("PARENT_ORIGIN", json.dumps(parent_origin))


def forwarded_storage_js(forwarder_origin: str) -> str:
    """The Canvas page's side of LTI Platform Storage through the forwarding frame: answers
    only messages the frame forwarded (its origin), keeping values per tool origin; logs each
    subject in ``window.storageLog``."""
    return f"""
window.storageLog = [];
const ltiStore = new Map();
window.addEventListener("message", (event) => {{
  if (event.origin !== {json.dumps(forwarder_origin)}) return;
  const m = event.data || {{}};
  const info = m.sourceToolInfo;
  if (!info) return;
  window.storageLog.push(m.subject);
  const key = info.origin + " " + m.key;
  let reply = null;
  if (m.subject === "lti.put_data") {{
    ltiStore.set(key, m.value);
    reply = {{subject: "lti.put_data.response", key: m.key, value: m.value}};
  }} else if (m.subject === "lti.get_data") {{
    reply = {{subject: "lti.get_data.response", key: m.key, value: ltiStore.get(key)}};
  }}
  if (reply) {{
    reply.message_id = m.message_id;
    reply.sourceToolInfo = info;
    event.source.postMessage(reply, event.origin);
  }}
}});
"""
