"""The emulated Canvas and Moodle that ``attune dev`` runs next to Attune (development only).

One aiohttp app serves both flavours; each is an LTI 1.3 platform with its own RS256 keys
(JWKS), OIDC authentication endpoint, dynamic registration (OpenID configuration + registration
endpoint behind a single-use registration token), an admin page that registers a tool in an
iframe, and a course page with a user switcher (a teacher and three students) that launches
the tool in an iframe and answers LTI Platform Storage messages. Moodle specifics: a single-use
``lti_message_hint``, 60-second id_tokens and tools pending until the emulated admin activates
them; its site is one origin (``/moodle`` on the emulator's address). Canvas is laid out as
Instructure hosts it (``devstack.emulator.canvas_cloud``): issuers and OIDC auth domains on one
origin, the school's pages on another, beta and test environments, the admin's edits applied
after the registration answer, and the login parameters Canvas sends.

State (keys, registered tools, settings) is kept in a JSON file so a restart keeps
registrations. Every page says "DEVELOPMENT EMULATOR — not a real LMS". It listens on
127.0.0.1 only.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from devstack.emulator.advantage import (
    MEMBERSHIP_MEDIA,
    PlatformRefusal,
    check_deep_link_response,
    grant_token,
    membership_page,
    nrps_claim,
    verify_tool_jwt,
)
from devstack.emulator.canvas_cloud import (
    ENVIRONMENTS,
    FORWARDING_TARGET,
    NRPS_SCOPE,
    PRIVACY_LEVELS,
    environment,
    forwarded_storage_js,
    forwarding_page_js,
    grants,
    requested,
)
from devstack.emulator.keys import SigningKey, load_key, new_key
from devstack.emulator.lti import (
    INSTRUCTOR,
    LEARNER,
    LOCALES,
    Client,
    Flavour,
    auth_request_problem,
    canvas_answer,
    canvas_problems,
    frame_resize_js,
    launch_claims,
    moodle_answer,
    moodle_problem,
    new_client_id,
    new_deployment_id,
    openid_configuration,
    storage_responder_js,
)
from shared.jose import TokenShapeError, peek
from shared.logs import get_logger
from shared.lti import claims as C

log = get_logger(__name__)

BANNER: Final = "DEVELOPMENT EMULATOR — not a real LMS"
FLAVOURS: Final[tuple[Flavour, ...]] = ("canvas", "moodle")
TITLES: Final = {"canvas": "Canvas", "moodle": "Moodle"}
PATHS: Final = {
    # Canvas: on the school's host (SecurityController builds the registration endpoint on the
    # account's domain; the API and deep-linking return are the school's); the issuer and
    # OIDC auth domain paths are in canvas_cloud.ENVIRONMENTS.
    "canvas": {
        "register": "/api/lti/registrations",
        "nrps": "/api/lti/courses/{context}/names_and_roles",
        "deep_linking_return": "/deep_linking_return",
    },
    "moodle": {
        "auth": "/mod/lti/auth.php",
        "jwks": "/mod/lti/certs.php",
        "token": "/mod/lti/token.php",
        "config": "/mod/lti/openid-configuration.php",
        "register": "/mod/lti/openid-registration.php",
        "nrps": "/mod/lti/services.php/{context}/bindings/memberships",
        "deep_linking_return": "/deep_linking_return",
    },
}
CANVAS_SSO_PATHS: Final = {
    "auth": "/api/lti/authorize_redirect",
    "jwks": "/api/lti/security/jwks",
    "token": "/login/oauth2/token",
    "forwarding": "/post_message_forwarding",
}
CANVAS_CONFIG_PATH: Final = "/api/lti/security/openid-configuration"
REGISTRATION_SCOPES: Final = frozenset(
    {
        "https://canvas.instructure.com/lti-ims/registration",
        "https://canvas.instructure.com/lti-ims/registration.readonly",
    }
)


def cloud_url_for(base_url: str) -> str:
    """The Instructure side of the emulated Canvas: the emulator's address under the other
    loopback name (127.0.0.1 <-> localhost), another origin than the school's pages."""
    parts = urlsplit(base_url)
    other = "localhost" if parts.hostname == "127.0.0.1" else "127.0.0.1"
    return f"{parts.scheme}://{other}:{parts.port}"


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    role: str

    @property
    def roles(self) -> list[str]:
        return [INSTRUCTOR if self.role == "teacher" else LEARNER]


ROSTER: Final = (
    Person("teacher-1", "Tess Teacher", "teacher"),
    Person("student-a", "Ada Student", "student"),
    Person("student-b", "Ben Student", "student"),
    Person("student-c", "Cleo Student", "student"),
)
PEOPLE: Final = {p.id: p for p in ROSTER}
COURSE_ID: Final = "course-1"
COURSE_TITLE: Final = "Wellbeing 101"


@dataclass
class EmulatedLms:
    """One emulated platform (a flavour) of the emulator."""

    flavour: Flavour
    base_url: str  # the emulator's origin, http://127.0.0.1:<port>: the school's / Moodle's
    cloud_url: str = ""  # Canvas: the Instructure side (issuers, OIDC auth domains)
    install_code: str | None = None
    keys: list[SigningKey] = field(default_factory=lambda: [new_key()])
    # Canvas beta and test sign with keys of their own (their own JWKS).
    env_keys: dict[str, list[SigningKey]] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    registration_tokens: set[str] = field(default_factory=set)
    message_hints: dict[str, dict[str, Any]] = field(default_factory=dict)  # hint -> launch
    used_jtis: set[str] = field(default_factory=set)
    access_tokens: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    # Content items the tool returned by deep linking: links on the course page.
    links: list[dict[str, Any]] = field(default_factory=list)
    # Canvas: self-hosted sends canvas_region=not_configured (LtiAdvantageAdapter).
    self_hosted: bool = False

    @property
    def prefix(self) -> str:
        return f"/{self.flavour}"

    @property
    def site_url(self) -> str:
        """Moodle's wwwroot; the school's Canvas (its pages, API, registration endpoint)."""
        return self.base_url + self.prefix

    def issuer_of(self, env: str = "production") -> str:
        if self.flavour == "canvas":
            return self.cloud_url + environment(env).issuer_path
        return self.site_url

    @property
    def issuer(self) -> str:
        # Moodle's wwwroot. Canvas: the production issuer on the Instructure side (another
        # origin than the school's pages, as canvas.instructure.com is).
        return self.issuer_of("production")

    def url(self, name: str, env: str = "production", **params: str) -> str:
        if self.flavour == "canvas":
            if name == "config":
                return self.issuer_of(env) + CANVAS_CONFIG_PATH
            if name in CANVAS_SSO_PATHS:
                return self.cloud_url + environment(env).sso_path + CANVAS_SSO_PATHS[name]
        return self.site_url + PATHS[self.flavour][name].format(**params)

    def keys_for(self, env: str = "production") -> list[SigningKey]:
        if self.flavour != "canvas" or environment(env).name == "production":
            return self.keys
        return self.env_keys.setdefault(environment(env).name, [new_key()])

    @property
    def title(self) -> str:
        return f"Emulated {TITLES[self.flavour]}"

    def launchable(self) -> Client | None:
        active = [c for c in self.clients.values() if c.active]
        return active[-1] if active else None

    def to_json(self) -> dict[str, Any]:
        def pems(keys: list[SigningKey]) -> list[dict[str, str]]:
            return [{"kid": k.kid, "pem": k.private_pem.decode()} for k in keys]

        return {
            "keys": pems(self.keys),
            "env_keys": {env: pems(keys) for env, keys in self.env_keys.items()},
            "clients": [asdict(c) for c in self.clients.values()],
            "links": self.links,
            "self_hosted": self.self_hosted,
        }

    def load_json(self, data: dict[str, Any]) -> None:
        def keys(saved: list[dict[str, str]]) -> list[SigningKey]:
            return [load_key(k["kid"], k["pem"]) for k in saved]

        self.keys = keys(data.get("keys", [])) or self.keys
        self.env_keys = {env: keys(k) for env, k in (data.get("env_keys") or {}).items()}
        self.clients = {c["client_id"]: Client(**c) for c in data.get("clients", [])}
        self.links = list(data.get("links", []))
        self.self_hosted = bool(data.get("self_hosted", False))


@dataclass
class Emulator:
    base_url: str
    tool_url: str
    state_path: Path | None = None
    cloud_url: str = ""
    lms: dict[str, EmulatedLms] = field(default_factory=dict)

    def __post_init__(self) -> None:
        saved: dict[str, Any] = {}
        if self.state_path is not None and self.state_path.exists():
            try:
                saved = json.loads(self.state_path.read_text())
            except (OSError, ValueError):
                log.warning("emulator_state_unreadable", path=str(self.state_path))
        self.cloud_url = self.cloud_url or cloud_url_for(self.base_url)
        for flavour in FLAVOURS:
            lms = EmulatedLms(flavour, self.base_url, self.cloud_url)
            if flavour in saved:
                lms.load_json(saved[flavour])
            self.lms[flavour] = lms

    def save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps({f: lms.to_json() for f, lms in self.lms.items()}))
        tmp.chmod(0o600)
        tmp.replace(self.state_path)


EMULATOR_KEY: Final = web.AppKey("emulator", Emulator)


def _lms(request: web.Request) -> EmulatedLms:
    flavour = request.match_info["flavour"]
    lms = request.app[EMULATOR_KEY].lms.get(flavour)
    if lms is None:
        raise web.HTTPNotFound(text="no such LMS")
    return lms


# --- pages ------------------------------------------------------------------------------------

e = html.escape

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b}
.dev{background:#b00020;color:#fff;padding:.4rem 1rem;font-weight:bold;letter-spacing:.02em}
header{background:#2d3b45;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center}
header.moodle{background:#f98012}
header a{color:#fff}
main{padding:1rem;max-width:70rem}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left}
code{background:#f3f3f3;padding:0 .2rem}
iframe{border:1px solid #999;width:100%;height:560px}
.pending{color:#b35c00;font-weight:bold}.active{color:#1a7f37;font-weight:bold}
"""


def page(
    title: str,
    body: str,
    *,
    lms: EmulatedLms | None = None,
    script: str = "",
    referrer_policy: str = "no-referrer",
) -> web.Response:
    nav = ""
    if lms is not None:
        nav = (
            f'<header class="{lms.flavour}"><strong>{e(lms.title)}</strong>'
            f'<a href="{lms.prefix}/admin">Site administration</a>'
            f'<a href="{lms.prefix}/course">Course: {e(COURSE_TITLE)}</a>'
            '<a href="/">Emulator home</a></header>'
        )
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}'
        f'</style></head><body><div class="dev" role="note">{e(BANNER)}</div>{nav}'
        f"<main>{body}</main>" + (f"<script>{script}</script>" if script else "") + "</body></html>"
    )
    return web.Response(
        text=text,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": referrer_policy},
    )


async def index(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    items = "".join(
        f"<li><b>{e(lms.title)}</b> (issuer <code>{e(lms.issuer)}</code>, pages on "
        f"<code>{e(lms.site_url)}</code>): "
        f'<a href="{lms.prefix}/admin">Site administration</a> · '
        f'<a href="{lms.prefix}/course">Course</a></li>'
        for lms in emu.lms.values()
    )
    body = (
        "<h1>Attune development emulator</h1>"
        f'<p>Emulated LTI 1.3 platforms for trying Attune (<a href="{e(emu.tool_url)}/">'
        f"{e(emu.tool_url)}</a>) without an LMS.</p><ul>{items}</ul>"
    )
    return page("Attune development emulator", body)


async def admin(request: web.Request) -> web.Response:
    lms = _lms(request)
    emu = request.app[EMULATOR_KEY]
    rows = "".join(
        f"<tr><td>{e(c.name)}</td><td><code>{e(c.client_id)}</code></td>"
        f"<td><code>{e(c.deployment_id)}</code></td>"
        + (
            f'<td class="active">Active</td><td>{_overlay_form(lms, c)}</td>'
            if c.active
            else '<td class="pending">Pending</td><td>'
            f'<form method="post" action="{lms.prefix}/admin/activate">'
            f'<input type="hidden" name="client_id" value="{e(c.client_id)}">'
            f'<button type="submit">Activate {e(c.name)}</button></form></td>'
        )
        + "</tr>"
        for c in lms.clients.values()
    )
    tools = (
        "<table><thead><tr><th>Tool</th><th>Client ID</th><th>Deployment ID</th><th>Status</th>"
        f'<th></th></tr></thead><tbody id="tools">{rows}</tbody></table>'
        if rows
        else '<p id="tools">No tool registered yet.</p>'
    )
    code = (
        f"<p>Install code for Attune (printed by <code>attune dev</code>, single use): "
        f'<code id="install-code">{e(lms.install_code)}</code></p>'
        if lms.install_code
        else "<p>Create an install code with <code>attune admin create-install-code</code>.</p>"
    )
    label = "Tool URL" if lms.flavour == "moodle" else "Registration URL"
    action = (
        "Add LTI Advantage" if lms.flavour == "moodle" else "Register with dynamic registration"
    )
    heading = "Manage tools" if lms.flavour == "moodle" else "Developer Keys"
    body = (
        f"<h1>{e(lms.title)}: {heading}</h1>"
        f"<h2>Register a tool</h2>{code}"
        f'<form method="get" action="{lms.prefix}/admin/register">'
        f'<label for="tool-url">{label}</label> '
        f'<input id="tool-url" name="url" size="50" value="{e(emu.tool_url)}/lti/register"> '
        f'<button type="submit">{action}</button></form>'
        f"<h2>Registered tools</h2>{tools}"
        f"{_created_details(lms, request.query.get('created', ''), emu.tool_url)}"
        f"{_manual_forms(lms, emu.tool_url)}{_hosting_form(lms)}"
        "<h2>Platform details (for manual registration)</h2><table>"
        f"<tr><th>Platform ID (issuer)</th><td><code>{e(lms.issuer)}</code></td></tr>"
        f"<tr><th>Public keyset URL</th><td><code>{e(lms.url('jwks'))}</code></td></tr>"
        f"<tr><th>Authentication request URL</th><td><code>{e(lms.url('auth'))}</code></td></tr>"
        f"<tr><th>Access token URL</th><td><code>{e(lms.url('token'))}</code></td></tr></table>"
    )
    return page(f"{lms.title} admin", body, lms=lms)


def _overlay_form(lms: EmulatedLms, client: Client) -> str:
    """Canvas: what the admin may change after the registration answer (the registration
    overlay: disabledScopes, disabledPlacements, privacy_level), applied to launches only."""
    if lms.flavour != "canvas":
        return ""
    granted = grants(client)
    asked = client.extra.get("requested") or {}
    cid = e(client.client_id)
    roster = " checked" if granted.roster else ""
    privacy = "".join(
        f'<option value="{p}"{" selected" if p == granted.privacy_level else ""}>{p}</option>'
        for p in PRIVACY_LEVELS
    )
    placements = "".join(
        f'<label><input type="checkbox" name="placement" value="{e(p)}"'
        f"{' checked' if p in granted.placements else ''}> {e(p)}</label> "
        for p in asked.get("placements") or []
    )
    return (
        f"<details><summary>Edit {e(client.name)} (scopes, placements, privacy)</summary>"
        f'<form method="post" action="{lms.prefix}/admin/overlay">'
        f'<input type="hidden" name="client_id" value="{cid}">'
        f'<p><label><input type="checkbox" name="roster"{roster}> Names and Role '
        "Provisioning (course roster)</label></p>"
        f'<p><label for="privacy-{cid}">Privacy level</label> '
        f'<select id="privacy-{cid}" name="privacy_level">{privacy}</select></p>'
        f"<p>{placements}</p>"
        f'<button type="submit">Save {e(client.name)} settings</button></form></details>'
    )


def _hosting_form(lms: EmulatedLms) -> str:
    """Canvas: Instructure-hosted (canvas_region=us-east-1) or self-hosted (its fallback
    canvas_region=not_configured)."""
    if lms.flavour != "canvas":
        return ""
    options = (("hosted", "Instructure-hosted (region us-east-1)", not lms.self_hosted),
               ("self_hosted", "Self-hosted (region not configured)", lms.self_hosted))  # fmt: skip
    radios = "".join(
        f'<label><input type="radio" name="hosting" value="{v}"{" checked" if on else ""}> '
        f"{e(label)}</label> "
        for v, label, on in options
    )
    return (
        "<h2>Canvas hosting</h2>"
        f'<form method="post" action="{lms.prefix}/admin/settings"><p>{radios}</p>'
        '<button type="submit">Save hosting</button></form>'
    )


def _manual_forms(lms: EmulatedLms, tool_url: str) -> str:
    """Canvas: a developer key from the tool's JSON URL. Moodle: "Configure a tool manually"."""
    if lms.flavour == "canvas":
        # Canvas takes the redirect URIs from the JSON, else [target_link_uri]
        # (Lti::CreateRegistrationService): the field may stay empty.
        return (
            "<h2>+ LTI Key: Enter URL</h2>"
            f'<form method="post" action="{lms.prefix}/admin/developer-key">'
            '<p><label for="json-url">JSON URL</label> <input id="json-url" name="json_url" '
            f'size="50" value="{e(tool_url)}/lti/config/canvas.json"></p>'
            '<p><label for="redirect-uris">Redirect URIs (optional, one per line)</label> '
            '<textarea id="redirect-uris" name="redirect_uris" rows="2" cols="50"></textarea>'
            "</p>"
            '<button type="submit">Save developer key</button></form>'
        )
    fields = (
        ("tool-name", "name", "Tool name", "Attune"),
        ("tool-url", "target_link_uri", "Tool URL", f"{tool_url}/app"),
        ("keyset", "jwks_uri", "Public keyset", f"{tool_url}/.well-known/jwks.json"),
        ("login-url", "initiate_login_uri", "Initiate login URL", f"{tool_url}/lti/login"),
        ("redirect-uris", "redirect_uris", "Redirection URI(s)", f"{tool_url}/lti/launch"),
    )
    inputs = "".join(
        f'<p><label for="m-{i}">{e(label)}</label> <input id="m-{i}" name="{n}" size="50" '
        f'value="{e(v)}"></p>'
        for i, n, label, v in fields
    )
    return (
        "<h2>Configure a tool manually</h2>"
        f'<form method="post" action="{lms.prefix}/admin/manual">{inputs}'
        '<button type="submit">Save changes</button></form>'
    )


def _created_details(lms: EmulatedLms, client_id: str, tool_url: str) -> str:
    """What the admin gives the tool after a manual registration."""
    client = lms.clients.get(client_id)
    if client is None:
        return ""
    rows = (
        ("Platform ID", lms.issuer),
        ("Client ID", client.client_id),
        ("Deployment ID", client.deployment_id),
        ("Public keyset URL", lms.url("jwks")),
        ("Authentication request URL", lms.url("auth")),
        ("Access token URL", lms.url("token")),
    )
    table = "".join(
        f'<tr><th scope="row">{e(k)}</th><td><code data-field="{e(k)}">{e(v)}</code></td></tr>'
        for k, v in rows
    )
    body = json.dumps(
        {
            "issuer": lms.issuer,
            "client_id": client.client_id,
            "deployment_id": client.deployment_id,
            "product": lms.flavour,
            "auth_url": lms.url("auth"),
            "jwks_url": lms.url("jwks"),
            "token_url": lms.url("token"),
        }
    )
    return (
        f'<section id="tool-details"><h2>Tool configuration details: {e(client.name)}</h2>'
        f"<table>{table}</table><p>Give these to Attune: its manual registration page "
        f'<a href="{e(tool_url)}/admin/register/manual">{e(tool_url)}/admin/register/manual</a>'
        f" or the admin API (admin token required):</p><pre><code>curl -X POST {e(tool_url)}"
        '/api/admin/platforms -H "Authorization: Bearer $ATTUNE_ADMIN_TOKEN" '
        f"-H \"Content-Type: application/json\" -d '{e(body)}'</code></pre></section>"
    )


def _add_manual_client(request: web.Request, lms: EmulatedLms, **values: Any) -> web.Response:
    for key in ("target_link_uri", "initiate_login_uri", "jwks_uri"):
        parts = urlsplit(str(values.get(key, "")))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise web.HTTPBadRequest(text=f"{key} must be an http(s) URL")
    client = Client(
        client_id=new_client_id(lms.flavour),
        redirect_uris=values.pop("redirect_uris"),
        deployment_id=new_deployment_id(lms.flavour),
        active=True,
        **values,
    )
    if not client.redirect_uris:
        raise web.HTTPBadRequest(text="at least one redirect URI is needed")
    lms.clients[client.client_id] = client
    request.app[EMULATOR_KEY].save()
    log.info("emulator_tool_added_manually", flavour=lms.flavour, client_id=client.client_id)
    raise web.HTTPSeeOther(f"{lms.prefix}/admin?created={client.client_id}#tool-details")


def _uris(text: str) -> list[str]:
    return [u.strip() for u in text.replace(",", "\n").splitlines() if u.strip()]


async def admin_manual(request: web.Request) -> web.Response:
    lms = _lms(request)
    form = {k: str(v) for k, v in (await request.post()).items()}
    return _add_manual_client(
        request,
        lms,
        name=form.get("name", "") or "Tool",
        target_link_uri=form.get("target_link_uri", ""),
        initiate_login_uri=form.get("initiate_login_uri", ""),
        jwks_uri=form.get("jwks_uri", ""),
        redirect_uris=_uris(form.get("redirect_uris", "")),
    )


async def admin_developer_key(request: web.Request) -> web.Response:
    """Canvas's "+ LTI Key → Enter URL": fetch the tool's JSON configuration."""
    lms = _lms(request)
    form = {k: str(v) for k, v in (await request.post()).items()}
    url = form.get("json_url", "")
    if urlsplit(url).scheme not in ("http", "https"):
        raise web.HTTPBadRequest(text="the JSON URL must be an http(s) URL")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url) as resp,
        ):
            config = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise web.HTTPBadRequest(text=f"could not read the JSON configuration: {exc}") from None
    if not isinstance(config, dict):
        raise web.HTTPBadRequest(text="the JSON configuration is not an object")
    target = str(config.get("target_link_uri", ""))
    # The Redirect URIs typed, else the JSON's, else [target_link_uri]
    # (Lti::CreateRegistrationService: configuration_params[:redirect_uris] ||
    # [configuration_params[:target_link_uri]]).
    typed = _uris(form.get("redirect_uris", ""))
    from_json = config.get("redirect_uris")
    redirect_uris = typed or (
        [str(u) for u in from_json] if isinstance(from_json, list) and from_json else [target]
    )
    extension: dict[str, Any] = next(iter(config.get("extensions") or [{}]), {})
    return _add_manual_client(
        request,
        lms,
        name=str(config.get("title", "Tool")),
        target_link_uri=target,
        initiate_login_uri=str(config.get("oidc_initiation_url", "")),
        jwks_uri=str(config.get("public_jwk_url", "")),
        redirect_uris=redirect_uris,
        extra={
            "requested": {
                "scopes": [str(x) for x in config.get("scopes") or []],
                "privacy_level": str(extension.get("privacy_level") or "anonymous"),
                "placements": [
                    str(p.get("placement"))
                    for p in (extension.get("settings") or {}).get("placements") or []
                ],
            }
        },
    )


async def admin_register(request: web.Request) -> web.Response:
    """Open the tool's registration URL in an iframe, as Canvas and Moodle do."""
    lms = _lms(request)
    tool_registration = request.query.get("url", "")
    parts = urlsplit(tool_registration)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise web.HTTPBadRequest(text="the registration URL must be an http(s) URL")
    token = secrets.token_urlsafe(32)
    lms.registration_tokens.add(token)
    config_url = lms.url("config")
    if lms.flavour == "canvas":
        # Canvas: on the issuer's host, the token in the query too (oidc_configuration_url).
        config_url += "?" + urlencode({"registration_token": token})
    sep = "&" if parts.query else "?"
    src = (
        tool_registration
        + sep
        + urlencode({"openid_configuration": config_url, "registration_token": token})
    )
    tool_origin = f"{parts.scheme}://{parts.netloc}"
    body = (
        f"<h1>{e(lms.title)}: registering a tool</h1>"
        "<p>The tool's registration page is below. When it finishes, this LMS closes it.</p>"
        f'<iframe id="registration" name="registration" title="Tool registration" src="{e(src)}">'
        "</iframe>"
    )
    script = (
        'window.addEventListener("message", (event) => {'
        f" if (event.origin !== {json.dumps(tool_origin)}) return;"
        ' if ((event.data || {}).subject === "org.imsglobal.lti.close")'
        f" window.location.href = {json.dumps(lms.prefix + '/admin')};"
        "});"
    )
    return page(f"{lms.title}: registering", body, lms=lms, script=script)


async def admin_activate(request: web.Request) -> web.Response:
    lms = _lms(request)
    form = await request.post()
    client = lms.clients.get(str(form.get("client_id", "")))
    if client is None:
        raise web.HTTPNotFound(text="no such tool")
    client.active = True
    request.app[EMULATOR_KEY].save()
    log.info("emulator_tool_activated", flavour=lms.flavour, client_id=client.client_id)
    raise web.HTTPSeeOther(f"{lms.prefix}/admin")


async def admin_overlay(request: web.Request) -> web.Response:
    """Canvas: the admin's edits after the registration answer (the registration overlay)."""
    lms = _lms(request)
    form = await request.post()
    client = lms.clients.get(str(form.get("client_id", "")))
    if client is None or lms.flavour != "canvas":
        raise web.HTTPNotFound(text="no such tool")
    asked = client.extra.get("requested") or {}
    privacy = str(form.get("privacy_level", ""))
    kept = {str(p) for p in form.getall("placement", [])}
    client.extra["overlay"] = {
        "disabledScopes": [] if form.get("roster") else [NRPS_SCOPE],
        "disabledPlacements": [p for p in asked.get("placements") or [] if p not in kept],
        "privacy_level": privacy if privacy in PRIVACY_LEVELS else None,
    }
    request.app[EMULATOR_KEY].save()
    log.info("emulator_overlay_saved", client_id=client.client_id, **client.extra["overlay"])
    raise web.HTTPSeeOther(f"{lms.prefix}/admin")


async def admin_settings(request: web.Request) -> web.Response:
    lms = _lms(request)
    form = await request.post()
    lms.self_hosted = form.get("hosting") == "self_hosted"
    request.app[EMULATOR_KEY].save()
    raise web.HTTPSeeOther(f"{lms.prefix}/admin")


async def course(request: web.Request) -> web.Response:
    lms = _lms(request)
    person = PEOPLE.get(request.query.get("user", ROSTER[0].id), ROSTER[0])
    env = environment(request.query.get("env")) if lms.flavour == "canvas" else None
    # The user's LMS language, in this LMS's own spelling: sent in launch_presentation.locale.
    locales = LOCALES[lms.flavour]
    locale = request.query.get("lang", "en")
    locale = locale if locale in locales else "en"
    options = "".join(
        f'<option value="{e(p.id)}"{" selected" if p is person else ""}>'
        f"{e(p.name)} ({p.role})</option>"
        for p in ROSTER
    )
    languages = "".join(
        f'<option value="{e(code)}" lang="{e(code.replace("_", "-"))}"'
        f"{' selected' if code == locale else ''}>{e(name)}</option>"
        for code, name in locales.items()
    )
    environments = (
        '<label for="env">Canvas environment</label> <select id="env" name="env">'
        + "".join(
            f'<option value="{n}"{" selected" if env is not None and n == env.name else ""}>'
            f"{n}</option>"
            for n in ENVIRONMENTS
        )
        + "</select> "
        if env is not None
        else ""
    )
    switcher = (
        f'<form method="get" action="{lms.prefix}/course" id="switcher">'
        f'<label for="user">Act as</label> <select id="user" name="user">{options}</select> '
        f'<label for="lang">Language</label> <select id="lang" name="lang">{languages}</select> '
        f'{environments}<button type="submit">Switch user</button></form>'
    )
    client = lms.launchable()
    if client is None:
        pending = any(not c.active for c in lms.clients.values())
        reason = (
            "Attune is registered but pending: activate it in Site administration."
            if pending
            else "No tool is registered yet: register Attune in Site administration."
        )
        body = f'<h1>{e(COURSE_TITLE)}</h1>{switcher}<p id="no-tool">{e(reason)}</p>'
        return page(COURSE_TITLE, body, lms=lms)
    deep_linking = request.query.get("message") == "deep_linking" and person.role == "teacher"
    link: dict[str, Any] | None = None
    if request.query.get("link", "").isdigit() and int(request.query["link"]) < len(lms.links):
        link = lms.links[int(request.query["link"])]
    granted = grants(client) if lms.flavour == "canvas" else None
    can_deep_link = granted is None or bool(
        {"editor_button", "link_selection"} & set(granted.placements)
    )
    in_navigation = granted is None or "course_navigation" in granted.placements
    launch = {
        "user": person.id,
        "lang": locale,
        **({"env": env.name} if env is not None else {}),
        **({"message": "deep_linking"} if deep_linking and can_deep_link else {}),
        **({"link": request.query["link"]} if link is not None else {}),
    }
    who = f"user={person.id}&amp;lang={e(locale)}" + (
        f"&amp;env={env.name}" if env is not None else ""
    )
    items = "".join(
        f'<li><a href="{lms.prefix}/course?{who}&amp;link={i}">'
        f"{e(str(item.get('title') or 'Link'))}</a></li>"
        for i, item in enumerate(lms.links)
    )
    dl_button = (
        f'<a role="button" id="add-content" href="{lms.prefix}/course?{who}'
        '&amp;message=deep_linking">Add Attune content (deep linking)</a>'
        if person.role == "teacher" and can_deep_link
        else ""
    )
    showing = (
        "Choosing content for the course"
        if "message" in launch
        else f"Showing {e(str(link.get('title')))}"
        if link
        else "Showing Attune from the course navigation"
    )
    tool_origin = _origin(client.target_link_uri)
    if "message" not in launch and link is None and not in_navigation:
        frame = '<p id="no-tool">Attune is not in this course\'s navigation.</p>'
    elif lms.flavour == "canvas":
        # Canvas loads its own launch page (the school's host) in the tool's frame; it posts
        # the login to the tool. Platform Storage goes through a sibling frame on the OIDC
        # auth domain (Lti::PlatformStorageController#post_message_forwarding).
        assert env is not None
        frame = (
            f'<iframe id="tool" name="tool" title="{e(client.name or "Attune")}" '
            f'src="{lms.prefix}/launch?{e(urlencode(launch))}" allow="clipboard-write">'
            "</iframe>"
            f'<iframe name="{FORWARDING_TARGET}" title="Platform storage" hidden '
            f'src="{e(lms.url("forwarding", env.name))}"></iframe>'
        )
    else:
        frame = (
            f'<iframe id="tool" name="tool" title="{e(client.name or "Attune")}" '
            f'src="{e(_login_url(lms, client, person, launch))}" allow="clipboard-write">'
            "</iframe>"
        )
    body = (
        f"<h1>{e(COURSE_TITLE)}</h1>{switcher}"
        f'<p>Signed in to the LMS as <b id="lms-user">{e(person.name)}</b> ({person.role})'
        + (f' in the <b id="lms-env">{env.name}</b> environment' if env is not None else "")
        + ".</p>"
        f'<nav aria-label="Course content"><a href="{lms.prefix}/course?{who}">Attune</a>'
        f' {dl_button}<ul id="links">{items}</ul></nav><p id="showing">{showing}</p>{frame}'
    )
    storage = (
        forwarded_storage_js(_origin(lms.url("forwarding")))
        if lms.flavour == "canvas"
        else storage_responder_js(tool_origin)
    )
    return page(
        COURSE_TITLE, body, lms=lms, script=storage + frame_resize_js(tool_origin, lms.flavour)
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _hint(lms: EmulatedLms, launch: dict[str, str]) -> str:
    """A fresh lti_message_hint for a launch (who, which message, which link, environment,
    the user's LMS language)."""
    hint = secrets.token_urlsafe(16)
    lms.message_hints[hint] = {
        "person": launch["user"],
        "message_type": C.DEEP_LINKING_REQUEST
        if launch.get("message") == "deep_linking"
        else C.RESOURCE_LINK_REQUEST,
        "link": launch.get("link"),
        "env": launch.get("env", "production"),
        "return_url": launch.get("return_url"),
        "locale": launch.get("lang", "en"),
    }
    return hint


def _login_url(lms: EmulatedLms, client: Client, person: Person, launch: dict[str, str]) -> str:
    """Moodle: the tool's login URL with the login parameters (the frame's src)."""
    params = {
        "iss": lms.issuer,
        "login_hint": person.id,
        "target_link_uri": client.target_link_uri,
        "client_id": client.client_id,
        "lti_deployment_id": client.deployment_id,
        "lti_message_hint": _hint(lms, launch),
    }
    return client.initiate_login_uri + "?" + urlencode(params)


async def canvas_launch(request: web.Request) -> web.Response:
    """Canvas's launch page in the tool's frame (the school's host): it posts the login to the
    tool's OIDC initiation URL with the parameters of ``LtiAdvantageAdapter#login_request``:
    iss, login_hint, client_id, deployment_id, target_link_uri, lti_message_hint,
    canvas_environment, canvas_region (``not_configured`` on a self-hosted Canvas) and
    lti_storage_target. Not ``no-referrer``: the post carries the page's Origin, as Canvas's
    does."""
    lms = request.app[EMULATOR_KEY].lms["canvas"]
    client = lms.launchable()
    person = PEOPLE.get(request.query.get("user", ""))
    if client is None or person is None:
        raise web.HTTPNotFound(text="nothing to launch")
    env = environment(request.query.get("env"))
    # Canvas builds the launch's return URL on the host this page was served from.
    launch = {
        "user": person.id,
        "env": env.name,
        "return_url": f"{request.scheme}://{request.host}{lms.prefix}/course",
    }
    for name in ("message", "link"):
        if request.query.get(name):
            launch[name] = request.query[name]
    # The user's Canvas language (the course page's choice), sent as launch_presentation.locale.
    if request.query.get("lang") in LOCALES["canvas"]:
        launch["lang"] = request.query["lang"]
    fields = {
        "iss": lms.issuer_of(env.name),
        "login_hint": person.id,
        "client_id": client.client_id,
        "deployment_id": client.deployment_id,
        "target_link_uri": client.target_link_uri,
        "lti_message_hint": _hint(lms, launch),
        "canvas_environment": env.login_value,
        "canvas_region": "not_configured" if lms.self_hosted else "us-east-1",
        "lti_storage_target": FORWARDING_TARGET,
    }
    inputs = "".join(f'<input type="hidden" name="{k}" value="{e(v)}">' for k, v in fields.items())
    body = (
        f'<form id="login" method="post" action="{e(client.initiate_login_uri)}">{inputs}'
        '<noscript><button type="submit">Launch</button></noscript></form>'
    )
    return page(
        "Launching",
        body,
        script='document.getElementById("login").submit();',
        referrer_policy="strict-origin-when-cross-origin",
    )


async def post_message_forwarding(request: web.Request) -> web.Response:
    """The OIDC auth domain's forwarding frame (ui/features/post_message_forwarding)."""
    lms = _cloud(request)
    script = forwarding_page_js(_origin(lms.base_url))
    return page("Platform storage", "", script=script)


# --- the LTI endpoints ---------------------------------------------------------------------


def _cloud(request: web.Request) -> EmulatedLms:
    """The emulated Canvas, for a request to its Instructure side (issuers, auth domains)."""
    lms = request.app[EMULATOR_KEY].lms["canvas"]
    if request.host != urlsplit(lms.cloud_url).netloc:
        raise web.HTTPNotFound(text="not on this host")
    return lms


def _env(request: web.Request) -> str:
    """The Canvas environment a cloud path names (/sso-beta, /canvas-test, ...)."""
    first = request.path.split("/", 2)[1]
    for env in ENVIRONMENTS.values():
        if first in (env.issuer_path.strip("/"), env.sso_path.strip("/")):
            return env.name
    raise web.HTTPNotFound(text="no such environment")


async def jwks(request: web.Request) -> web.Response:
    if "flavour" in request.match_info:
        return web.json_response({"keys": [k.public_jwk for k in _lms(request).keys]})
    lms = _cloud(request)
    return web.json_response({"keys": [k.public_jwk for k in lms.keys_for(_env(request))]})


def _bearer_ok(request: web.Request, lms: EmulatedLms, *, query: bool = False) -> str | None:
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    if not token and query:
        token = request.query.get("registration_token", "")
    return token if token in lms.registration_tokens else None


async def configuration(request: web.Request) -> web.Response:
    if "flavour" in request.match_info:
        lms = _lms(request)
        env = "production"
    else:
        lms = _cloud(request)
        env = _env(request)
    # Canvas reads the token from the URL (params[:registration_token]), Moodle the header.
    if _bearer_ok(request, lms, query=lms.flavour == "canvas") is None:
        return web.Response(status=401, text="Unauthorized")
    return web.json_response(
        openid_configuration(
            lms.flavour,
            issuer=lms.issuer_of(env),
            auth_url=lms.url("auth", env),
            registration_endpoint=lms.url("register"),
            jwks_url=lms.url("jwks", env),
            token_url=lms.url("token", env),
            account_name="Emulated University",
            account_domain=urlsplit(lms.base_url).netloc if lms.flavour == "canvas" else None,
        )
    )


async def register(request: web.Request) -> web.Response:
    lms = _lms(request)
    token = _bearer_ok(request, lms)
    if token is None:
        return web.Response(status=401, text="Unauthorized")
    try:
        body = await request.json()
    except ValueError:
        return web.Response(status=400, text="invalid JSON")
    if not isinstance(body, dict):
        return web.Response(status=400, text="invalid JSON")
    if lms.flavour == "moodle":
        problem = moodle_problem(body)
        if problem is not None:
            return web.Response(status=400, text=problem)
    else:
        problems = canvas_problems(body)
        if problems:
            return web.json_response({"errors": problems}, status=422)
    lms.registration_tokens.discard(token)  # single use
    tool = body["https://purl.imsglobal.org/spec/lti-tool-configuration"]
    client = Client(
        client_id=new_client_id(lms.flavour),
        redirect_uris=list(body["redirect_uris"]),
        deployment_id=new_deployment_id(lms.flavour),
        target_link_uri=tool["target_link_uri"],
        initiate_login_uri=body["initiate_login_uri"],
        jwks_uri=body["jwks_uri"],
        name=str(body.get("client_name", "")),
        active=lms.flavour == "canvas",  # Moodle: pending until the admin activates it
        extra={"requested": requested(body), "registration": body}
        if lms.flavour == "canvas"
        else {},
    )
    lms.clients[client.client_id] = client
    request.app[EMULATOR_KEY].save()
    log.info("emulator_tool_registered", flavour=lms.flavour, client_id=client.client_id)
    if lms.flavour == "moodle":
        return web.json_response(moodle_answer(body, client))
    return web.json_response(
        canvas_answer(body, client, registration_client_uri=_registration_uri(lms, client))
    )


def _registration_uri(lms: EmulatedLms, client: Client) -> str:
    return f"{lms.url('register')}/{client.client_id}"


async def registration_configuration(request: web.Request) -> web.Response:
    """Canvas's ``registration_client_uri`` (DynamicRegistrationController#show_configuration):
    only with an access token of the developer key holding a registration scope — never the
    registration token — and it renders the registration as requested, not the overlay."""
    lms = _lms(request)
    client = lms.clients.get(request.match_info["client_id"])
    header = request.headers.get("Authorization", "")
    held = lms.access_tokens.get(header[7:]) if header.startswith("Bearer ") else None
    if client is None or held is None or held[0] != client.client_id:
        return web.json_response({"errorMessage": "Invalid access token"}, status=401)
    if not held[1] & REGISTRATION_SCOPES:
        return web.json_response({"errorMessage": "Insufficient scopes"}, status=401)
    body = client.extra.get("registration") or {}
    return web.json_response(
        canvas_answer(body, client, registration_client_uri=_registration_uri(lms, client))
    )


async def authorize(request: web.Request) -> web.Response:
    if "flavour" in request.match_info:
        lms, env = _lms(request), "production"
    else:
        lms, env = _cloud(request), _env(request)
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    problem = auth_request_problem(params, lms.clients)
    if problem is not None:
        return web.Response(status=400, text=problem)
    client = lms.clients[params["client_id"]]
    if not client.active:
        return web.Response(status=400, text="tool is pending activation")
    hint = params.get("lti_message_hint", "")
    launch = lms.message_hints.get(hint) or {}
    if lms.flavour == "moodle":
        lms.message_hints.pop(hint, None)  # Moodle's lti_message_hint is single-use
    person = PEOPLE.get(launch.get("person") or "")
    if person is None or person.id != params["login_hint"]:
        return web.Response(status=400, text="invalid lti_message_hint")
    if lms.flavour == "canvas" and launch.get("env", "production") != env:
        # Each environment authorizes its own launches (its own auth domain and keys).
        return web.Response(status=400, text="invalid lti_message_hint for this environment")
    granted = grants(client) if lms.flavour == "canvas" else None
    extra: dict[str, Any] = {}
    if granted is None or granted.roster:
        extra[C.NRPS] = nrps_claim(lms.url("nrps", context=COURSE_ID))
    if granted is not None and granted.email:
        extra["email"] = f"{person.id}@emulated.example"
    link_id = launch.get("link")
    if link_id is not None and int(link_id) < len(lms.links):
        custom = lms.links[int(link_id)].get("custom")
        if isinstance(custom, dict):
            extra[C.CUSTOM] = custom
    claims = launch_claims(
        flavour=lms.flavour,
        issuer=lms.issuer_of(env),
        platform_url=lms.site_url,
        client=client,
        nonce=params["nonce"],
        sub=person.id,
        name=person.name,
        roles=person.roles,
        target_link_uri=client.target_link_uri,
        context_id=COURSE_ID,
        context_title=COURSE_TITLE,
        resource_link_id=f"{lms.flavour}-link-{link_id}" if link_id else f"{lms.flavour}-nav",
        message_type=launch["message_type"],
        extra=extra,
        locale=launch.get("locale") or "en",
        # Canvas builds the return URL on the host of the page the launch came from.
        return_url=launch.get("return_url") or f"{lms.site_url}/course",
        names=granted is None or granted.names,
    )
    fields = {"id_token": lms.keys_for(env)[-1].sign(claims), "state": params["state"]}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{e(v)}">' for k, v in fields.items())
    form = (
        f'<form id="f" method="post" action="{e(params["redirect_uri"])}">{inputs}'
        '</form><script>document.getElementById("f").submit()</script>'
    )
    return web.Response(text=form, content_type="text/html")


async def token(request: web.Request) -> web.Response:
    """OAuth2 client credentials with a private_key_jwt assertion (the tool's JWKS). Canvas:
    only scopes the developer key holds (what the admin left enabled)."""
    if "flavour" in request.match_info:
        lms, env = _lms(request), "production"
    else:
        lms, env = _cloud(request), _env(request)
    form = {k: str(v) for k, v in (await request.post()).items()}
    client = lms.clients.get(_assertion_iss(form.get("client_assertion", "")))
    allowed = frozenset({NRPS_SCOPE})
    if lms.flavour == "canvas" and client is not None:
        allowed = frozenset(s for s in grants(client).scopes if s == NRPS_SCOPE)
    try:
        client_id, answer = await grant_token(
            form,
            clients=lms.clients,
            token_url=lms.url("token", env),
            jwks_url_of={c.client_id: c.jwks_uri for c in lms.clients.values()},
            used_jtis=lms.used_jtis,
            scopes=allowed,
        )
    except PlatformRefusal as exc:
        log.info("emulator_token_refused", flavour=lms.flavour, reason=exc.reason)
        return web.json_response({"error": exc.reason}, status=exc.status)
    lms.access_tokens[answer["access_token"]] = (client_id, frozenset(answer["scope"].split()))
    log.info("emulator_token_granted", flavour=lms.flavour, client_id=client_id)
    return web.json_response(answer)


def _assertion_iss(assertion: str) -> str:
    try:
        return str(peek(assertion)[1].get("iss", ""))
    except TokenShapeError:
        return ""


async def memberships(request: web.Request) -> web.Response:
    """NRPS: the course roster (a teacher and three students), two members a page."""
    lms = _lms(request)
    header = request.headers.get("Authorization", "")
    held = lms.access_tokens.get(header[7:]) if header.startswith("Bearer ") else None
    if held is None or NRPS_SCOPE not in held[1]:
        return web.json_response({"error": "invalid_token"}, status=401)
    context = request.match_info["context"]
    if context != COURSE_ID:
        return web.json_response({"error": "not_found"}, status=404)
    members = [
        {"user_id": p.id, "name": p.name, "status": "Active", "roles": p.roles} for p in ROSTER
    ]
    body, next_url = membership_page(
        members,
        url=lms.url("nrps", context=context),
        context={"id": context, "title": COURSE_TITLE},
        page=int(request.query.get("page", "1") or "1"),
        page_size=2,
    )
    headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
    return web.json_response(body, headers=headers, content_type=MEMBERSHIP_MEDIA)


async def deep_linking_return(request: web.Request) -> web.Response:
    """The tool's LtiDeepLinkingResponse, verified with its JWKS; its links join the course."""
    lms = _lms(request)
    form = await request.post()
    token_value = str(form.get("JWT", ""))
    try:
        claims = await verify_tool_jwt(token_value, _jwks_of(lms, token_value), audience=lms.issuer)
        _, items = check_deep_link_response(claims, lms.clients)
    except PlatformRefusal as exc:
        log.info("emulator_deep_link_refused", flavour=lms.flavour, reason=exc.reason)
        body = f'<h1>The LMS refused the content</h1><p id="dl-error">{e(exc.reason)}</p>'
        return page("Deep linking refused", body, lms=lms)
    added = [i for i in items if isinstance(i, dict) and i.get("type") == "ltiResourceLink"]
    lms.links.extend(added)
    request.app[EMULATOR_KEY].save()
    titles = ", ".join(str(i.get("title") or "Link") for i in added) or "nothing"
    body = (
        f'<h1>Content added</h1><p id="dl-added">Added to {e(COURSE_TITLE)}: {e(titles)}.</p>'
        f'<p><a href="{lms.prefix}/course" target="_top">Back to the course</a></p>'
    )
    return page("Content added", body, lms=lms)


def _jwks_of(lms: EmulatedLms, token_value: str) -> str:
    """The JWKS URL of the client that signed ``token_value`` (its unverified ``iss``)."""
    try:
        iss = str(peek(token_value)[1].get("iss", ""))
    except TokenShapeError:
        raise PlatformRefusal(400, "not a JWT") from None
    client = lms.clients.get(iss)
    if client is None:
        raise PlatformRefusal(400, "unknown client (iss)")
    return client.jwks_uri


def create_emulator(
    *,
    base_url: str,
    tool_url: str,
    install_codes: dict[str, str] | None = None,
    state_path: Path | None = None,
    cloud_url: str | None = None,
) -> web.Application:
    """The emulator app. ``base_url`` is where it is reached (http://127.0.0.1:<port>): the
    school's Canvas pages and the Moodle site; ``cloud_url`` the Instructure side of the
    emulated Canvas (default: the same port under the other loopback name, localhost), which
    ``attune dev`` gives Attune as ATTUNE_DEV_CANVAS_CLOUD; ``tool_url`` Attune's public URL;
    ``install_codes`` one install code per flavour to show."""
    emulator = Emulator(base_url=base_url.rstrip("/"), tool_url=tool_url.rstrip("/"),
                        state_path=state_path, cloud_url=(cloud_url or "").rstrip("/"))  # fmt: skip
    for flavour, code in (install_codes or {}).items():
        emulator.lms[flavour].install_code = code
    app = web.Application()
    app[EMULATOR_KEY] = emulator
    r = app.router
    r.add_get("/", index)
    f = "/{flavour:canvas|moodle}"
    r.add_get(f + "/admin", admin)
    r.add_get(f + "/admin/register", admin_register)
    r.add_post(f + "/admin/activate", admin_activate)
    r.add_post(f + "/admin/manual", admin_manual)
    r.add_post(f + "/admin/developer-key", admin_developer_key)
    r.add_post(f + "/admin/overlay", admin_overlay)
    r.add_post(f + "/admin/settings", admin_settings)
    r.add_get(f + "/course", course)
    # Moodle: everything on its site.
    m, moodle = "/{flavour:moodle}", PATHS["moodle"]
    r.add_get(m + moodle["jwks"], jwks)
    r.add_get(m + moodle["config"], configuration)
    r.add_route("*", m + moodle["auth"], authorize)
    r.add_post(m + moodle["token"], token)
    # Canvas, the school's host: its launch page, registration endpoint, API, deep linking.
    c, canvas = "/{flavour:canvas}", PATHS["canvas"]
    r.add_get("/canvas/launch", canvas_launch)
    r.add_get(c + canvas["register"] + "/{client_id}", registration_configuration)
    for flavour, paths in PATHS.items():
        prefix = "/{flavour:" + flavour + "}"
        r.add_post(prefix + paths["register"], register)
        r.add_get(prefix + paths["nrps"], memberships)
        r.add_post(prefix + paths["deep_linking_return"], deep_linking_return)
    # Canvas, the Instructure side: each environment's issuer (its OpenID configuration) and
    # OIDC auth domain.
    for env in ENVIRONMENTS.values():
        r.add_get(env.issuer_path + CANVAS_CONFIG_PATH, configuration)
        r.add_route("*", env.sso_path + CANVAS_SSO_PATHS["auth"], authorize)
        r.add_get(env.sso_path + CANVAS_SSO_PATHS["jwks"], jwks)
        r.add_post(env.sso_path + CANVAS_SSO_PATHS["token"], token)
        r.add_get(env.sso_path + CANVAS_SSO_PATHS["forwarding"], post_message_forwarding)
    return app
