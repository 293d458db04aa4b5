"""The emulated Canvas and Moodle that ``attune dev`` runs next to Attune (development only).

One aiohttp app serves both flavours under ``/canvas`` and ``/moodle``; each is an LTI 1.3
platform with its own RS256 keys (JWKS), OIDC authentication endpoint, dynamic registration
(OpenID configuration + registration endpoint behind a single-use registration token), an
admin page that registers a tool in an iframe, and a course page with a user switcher (a
teacher and three students) that launches the tool in an iframe and answers LTI Platform
Storage messages. Moodle specifics: a single-use ``lti_message_hint``, 60-second id_tokens and
tools pending until the emulated admin activates them. Canvas: numeric client ids and the
``canvas_region``/``canvas_environment``/``lti_storage_target`` login parameters.

State (keys, registered tools) is kept in a JSON file so a restart keeps registrations.
Every page says "DEVELOPMENT EMULATOR — not a real LMS". It listens on 127.0.0.1 only.
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
    "canvas": {
        "auth": "/api/lti/authorize_redirect",
        "jwks": "/api/lti/security/jwks",
        "token": "/login/oauth2/token",
        "config": "/api/lti/security/openid-configuration",
        "register": "/api/lti/registrations",
        "nrps": "/api/lti/courses/{context}/names_and_roles",
    },
    "moodle": {
        "auth": "/mod/lti/auth.php",
        "jwks": "/mod/lti/certs.php",
        "token": "/mod/lti/token.php",
        "config": "/mod/lti/openid-configuration.php",
        "register": "/mod/lti/openid-registration.php",
        "nrps": "/mod/lti/services.php/{context}/bindings/memberships",
    },
}


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
    base_url: str  # the emulator's origin, http://127.0.0.1:<port>
    install_code: str | None = None
    keys: list[SigningKey] = field(default_factory=lambda: [new_key()])
    clients: dict[str, Client] = field(default_factory=dict)
    registration_tokens: set[str] = field(default_factory=set)
    message_hints: dict[str, dict[str, Any]] = field(default_factory=dict)  # hint -> launch
    used_jtis: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    # Content items the tool returned by deep linking: links on the course page.
    links: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"/{self.flavour}"

    @property
    def site_url(self) -> str:
        return self.base_url + self.prefix

    @property
    def issuer(self) -> str:
        # A self-hosted Canvas, or Moodle's wwwroot: dynamic registration requires the issuer
        # on the same origin as the OpenID configuration.
        return self.site_url

    def url(self, name: str, **params: str) -> str:
        return self.site_url + PATHS[self.flavour][name].format(**params)

    @property
    def title(self) -> str:
        return f"Emulated {TITLES[self.flavour]}"

    def launchable(self) -> Client | None:
        active = [c for c in self.clients.values() if c.active]
        return active[-1] if active else None

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": [{"kid": k.kid, "pem": k.private_pem.decode()} for k in self.keys],
            "clients": [asdict(c) for c in self.clients.values()],
            "links": self.links,
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.keys = [load_key(k["kid"], k["pem"]) for k in data.get("keys", [])] or self.keys
        self.clients = {c["client_id"]: Client(**c) for c in data.get("clients", [])}
        self.links = list(data.get("links", []))


@dataclass
class Emulator:
    base_url: str
    tool_url: str
    state_path: Path | None = None
    lms: dict[str, EmulatedLms] = field(default_factory=dict)

    def __post_init__(self) -> None:
        saved: dict[str, Any] = {}
        if self.state_path is not None and self.state_path.exists():
            try:
                saved = json.loads(self.state_path.read_text())
            except (OSError, ValueError):
                log.warning("emulator_state_unreadable", path=str(self.state_path))
        for flavour in FLAVOURS:
            lms = EmulatedLms(flavour, self.base_url)
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
    title: str, body: str, *, lms: EmulatedLms | None = None, script: str = ""
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
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def index(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    items = "".join(
        f"<li><b>{e(lms.title)}</b> (issuer <code>{e(lms.issuer)}</code>): "
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
            '<td class="active">Active</td><td></td>'
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
        f"{_manual_forms(lms, emu.tool_url)}"
        "<h2>Platform details (for manual registration)</h2><table>"
        f"<tr><th>Platform ID (issuer)</th><td><code>{e(lms.issuer)}</code></td></tr>"
        f"<tr><th>Public keyset URL</th><td><code>{e(lms.url('jwks'))}</code></td></tr>"
        f"<tr><th>Authentication request URL</th><td><code>{e(lms.url('auth'))}</code></td></tr>"
        f"<tr><th>Access token URL</th><td><code>{e(lms.url('token'))}</code></td></tr></table>"
    )
    return page(f"{lms.title} admin", body, lms=lms)


def _manual_forms(lms: EmulatedLms, tool_url: str) -> str:
    """Canvas: a developer key from the tool's JSON URL. Moodle: "Configure a tool manually"."""
    if lms.flavour == "canvas":
        return (
            "<h2>+ LTI Key: Enter URL</h2>"
            f'<form method="post" action="{lms.prefix}/admin/developer-key">'
            '<p><label for="json-url">JSON URL</label> <input id="json-url" name="json_url" '
            f'size="50" value="{e(tool_url)}/lti/config/canvas.json"></p>'
            '<p><label for="redirect-uris">Redirect URIs</label> <input id="redirect-uris" '
            f'name="redirect_uris" size="50" value="{e(tool_url)}/lti/launch"></p>'
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
    return _add_manual_client(
        request,
        lms,
        name=str(config.get("title", "Tool")),
        target_link_uri=str(config.get("target_link_uri", "")),
        initiate_login_uri=str(config.get("oidc_initiation_url", "")),
        jwks_uri=str(config.get("public_jwk_url", "")),
        redirect_uris=_uris(form.get("redirect_uris", "")),
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
    sep = "&" if parts.query else "?"
    src = (
        tool_registration
        + sep
        + urlencode({"openid_configuration": lms.url("config"), "registration_token": token})
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


async def course(request: web.Request) -> web.Response:
    lms = _lms(request)
    person = PEOPLE.get(request.query.get("user", ROSTER[0].id), ROSTER[0])
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
        f'{" selected" if code == locale else ""}>{e(name)}</option>'
        for code, name in locales.items()
    )
    switcher = (
        f'<form method="get" action="{lms.prefix}/course" id="switcher">'
        f'<label for="user">Act as</label> <select id="user" name="user">{options}</select> '
        f'<label for="lang">Language</label> <select id="lang" name="lang">{languages}</select> '
        '<button type="submit">Switch user</button></form>'
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
    hint = secrets.token_urlsafe(16)
    lms.message_hints[hint] = {
        "person": person.id,
        "message_type": C.DEEP_LINKING_REQUEST if deep_linking else C.RESOURCE_LINK_REQUEST,
        "link": request.query["link"] if link is not None else None,
        "locale": locale,
    }
    params = {
        "iss": lms.issuer,
        "login_hint": person.id,
        "target_link_uri": client.target_link_uri,
        "client_id": client.client_id,
        "lti_deployment_id": client.deployment_id,
        "lti_message_hint": hint,
    }
    if lms.flavour == "canvas":
        params |= {
            "canvas_region": "us-east-1",
            "canvas_environment": "prod",
            "lti_storage_target": "_parent",
        }
    src = client.initiate_login_uri + "?" + urlencode(params)
    tool = urlsplit(client.target_link_uri)
    who = f"user={person.id}&amp;lang={e(locale)}"
    items = "".join(
        f'<li><a href="{lms.prefix}/course?{who}&amp;link={i}">'
        f"{e(str(item.get('title') or 'Link'))}</a></li>"
        for i, item in enumerate(lms.links)
    )
    dl_button = (
        f'<a role="button" id="add-content" href="{lms.prefix}/course?{who}'
        '&amp;message=deep_linking">Add Attune content (deep linking)</a>'
        if person.role == "teacher"
        else ""
    )
    showing = (
        "Choosing content for the course"
        if deep_linking
        else f"Showing {e(str(link.get('title')))}"
        if link
        else "Showing Attune from the course navigation"
    )
    body = (
        f"<h1>{e(COURSE_TITLE)}</h1>{switcher}"
        f'<p>Signed in to the LMS as <b id="lms-user">{e(person.name)}</b> ({person.role}).</p>'
        f'<nav aria-label="Course content"><a href="{lms.prefix}/course?{who}">Attune</a>'
        f' {dl_button}<ul id="links">{items}</ul></nav><p id="showing">{showing}</p>'
        f'<iframe id="tool" name="tool" title="{e(client.name or "Attune")}" src="{e(src)}"'
        ' allow="clipboard-write"></iframe>'
    )
    origin = f"{tool.scheme}://{tool.netloc}"
    script = storage_responder_js(origin) + frame_resize_js(origin, lms.flavour)
    return page(COURSE_TITLE, body, lms=lms, script=script)


# --- the LTI endpoints ---------------------------------------------------------------------


async def jwks(request: web.Request) -> web.Response:
    return web.json_response({"keys": [k.public_jwk for k in _lms(request).keys]})


def _bearer_ok(request: web.Request, lms: EmulatedLms) -> str | None:
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else ""
    return token if token in lms.registration_tokens else None


async def configuration(request: web.Request) -> web.Response:
    lms = _lms(request)
    if _bearer_ok(request, lms) is None:
        return web.Response(status=401, text="Unauthorized")
    return web.json_response(
        openid_configuration(
            lms.flavour,
            issuer=lms.issuer,
            auth_url=lms.url("auth"),
            registration_endpoint=lms.url("register"),
            jwks_url=lms.url("jwks"),
            token_url=lms.url("token"),
            account_name="Emulated University",
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
    )
    lms.clients[client.client_id] = client
    request.app[EMULATOR_KEY].save()
    log.info("emulator_tool_registered", flavour=lms.flavour, client_id=client.client_id)
    if lms.flavour == "moodle":
        return web.json_response(moodle_answer(body, client))
    return web.json_response(canvas_answer(body, client))


async def authorize(request: web.Request) -> web.Response:
    lms = _lms(request)
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
    extra: dict[str, Any] = {C.NRPS: nrps_claim(lms.url("nrps", context=COURSE_ID))}
    link_id = launch.get("link")
    if link_id is not None and int(link_id) < len(lms.links):
        custom = lms.links[int(link_id)].get("custom")
        if isinstance(custom, dict):
            extra[C.CUSTOM] = custom
    claims = launch_claims(
        flavour=lms.flavour,
        issuer=lms.issuer,
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
    )
    fields = {"id_token": lms.keys[-1].sign(claims), "state": params["state"]}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{e(v)}">' for k, v in fields.items())
    form = (
        f'<form id="f" method="post" action="{e(params["redirect_uri"])}">{inputs}'
        '</form><script>document.getElementById("f").submit()</script>'
    )
    return web.Response(text=form, content_type="text/html")


async def token(request: web.Request) -> web.Response:
    """OAuth2 client credentials with a private_key_jwt assertion (the tool's JWKS)."""
    lms = _lms(request)
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        client_id, answer = await grant_token(
            form,
            clients=lms.clients,
            token_url=lms.url("token"),
            jwks_url_of={c.client_id: c.jwks_uri for c in lms.clients.values()},
            used_jtis=lms.used_jtis,
        )
    except PlatformRefusal as exc:
        log.info("emulator_token_refused", flavour=lms.flavour, reason=exc.reason)
        return web.json_response({"error": exc.reason}, status=exc.status)
    lms.access_tokens.add(answer["access_token"])
    log.info("emulator_token_granted", flavour=lms.flavour, client_id=client_id)
    return web.json_response(answer)


async def memberships(request: web.Request) -> web.Response:
    """NRPS: the course roster (a teacher and three students), two members a page."""
    lms = _lms(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or header[7:] not in lms.access_tokens:
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
) -> web.Application:
    """The emulator app. ``base_url`` is where it is reached (http://127.0.0.1:<port>),
    ``tool_url`` Attune's public URL, ``install_codes`` one install code per flavour to show."""
    emulator = Emulator(base_url=base_url.rstrip("/"), tool_url=tool_url.rstrip("/"),
                        state_path=state_path)  # fmt: skip
    for flavour, code in (install_codes or {}).items():
        emulator.lms[flavour].install_code = code
    app = web.Application()
    app[EMULATOR_KEY] = emulator
    app.router.add_get("/", index)
    f = "/{flavour:canvas|moodle}"
    app.router.add_get(f + "/admin", admin)
    app.router.add_get(f + "/admin/register", admin_register)
    app.router.add_post(f + "/admin/activate", admin_activate)
    app.router.add_post(f + "/admin/manual", admin_manual)
    app.router.add_post(f + "/admin/developer-key", admin_developer_key)
    app.router.add_get(f + "/course", course)
    for flavour, paths in PATHS.items():
        prefix = "/{flavour:" + flavour + "}"
        app.router.add_get(prefix + paths["jwks"], jwks)
        app.router.add_get(prefix + paths["config"], configuration)
        app.router.add_post(prefix + paths["register"], register)
        app.router.add_route("*", prefix + paths["auth"], authorize)
        app.router.add_post(prefix + paths["token"], token)
        app.router.add_get(prefix + paths["nrps"], memberships)
        app.router.add_post(prefix + "/deep_linking_return", deep_linking_return)
    return app
