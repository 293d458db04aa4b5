"""Manual registration: the values an LMS admin copies from the LMS, checked field by field.

Moodle's "Tool configuration details" (Platform ID, Client ID, Public keyset URL,
Authentication request URL, Access token URL, Deployment ID), or a Canvas developer key's
client_id (hosted Canvas: its documented endpoints are filled in, and no others are accepted).
Every problem is reported against its field; the platform's JWKS is fetched when reachable and
must hold a usable RS256 key of at least 2048 bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from services.registration import platform_jwks
from services.registration.queries import PlatformRecord
from services.registration.toolconfig import Product
from shared.http import OutboundHttp, is_public_address
from shared.identifiers import identifier
from shared.lti.canvas import DEFAULT_CLOUDS, CanvasClouds
from shared.lti.frame import MAX_FRAME_ORIGINS, derived_origins, normalize_origins

MAX_URL = 2048

FIELDS = (
    "product",
    "issuer",
    "client_id",
    "deployment_id",
    "auth_url",
    "jwks_url",
    "token_url",
    "name",
    "deployment_policy",
    "frame_origins",
    "region",
)


class FieldErrors(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


@dataclass
class ManualRegistration:
    record: PlatformRecord
    deployment_ids: list[str]
    warnings: dict[str, str] = field(default_factory=dict)


def url_problem(value: object, *, allow_insecure: bool, issuer: bool = False) -> str | None:
    """Why ``value`` is not an acceptable platform URL, or None."""
    if not isinstance(value, str) or not value.strip():
        return "is required"
    if len(value) > MAX_URL:
        return "is too long"
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.scheme == "http" and not allow_insecure:
        return "must use https"
    if parts.username or parts.password:
        return "must not contain a user name or password"
    if parts.fragment:
        return "must not contain a #fragment"
    if issuer and parts.query:
        return "must not contain a ?query"
    if not allow_insecure:
        try:
            if not is_public_address(parts.hostname):
                return "points at a private or loopback address"
        except ValueError:
            pass
    try:
        parts.port  # noqa: B018 - raises ValueError for an out-of-range port
    except ValueError:
        return "has an invalid port"
    return None


def _identifier(value: object) -> str | None:
    """What an admin typed or pasted: surrounding blanks are not part of it."""
    return identifier(value.strip() if isinstance(value, str) else value)


def region_problem(value: object, regions: Sequence[str]) -> str | None:
    """Why ``value`` is not a region of this installation (None, meaning any cell, is one)."""
    if value is None or (isinstance(value, str) and value in regions):
        return None
    return "must be one of " + ", ".join(regions) + " (or null: any region)"


def parse(
    body: object,
    *,
    allow_insecure: bool,
    clouds: CanvasClouds = DEFAULT_CLOUDS,
    regions: Sequence[str] = (),
    home: str | None = None,
) -> ManualRegistration:
    """Check the shape of every field; raises ``FieldErrors``. ``regions``: the cells of this
    installation (``ATTUNE_REGIONS``); a Moodle or generic registration without ``region`` is
    served by ``home``, a Canvas one by every cell (each school's own region). With one region
    no region is recorded."""
    if not isinstance(body, dict):
        raise FieldErrors({"body": "must be a JSON object"})
    problems: dict[str, str] = {}
    for name in body:
        if name not in FIELDS:
            problems[str(name)[:50]] = "is not a known field"
    issuer = body.get("issuer")
    canvas = clouds.get(issuer) if isinstance(issuer, str) else None
    product_raw = body.get("product")
    if product_raw is None:
        product_raw = "canvas" if canvas is not None else "generic"
    product: Product = "generic"
    if product_raw == "canvas":
        product = "canvas"
    elif product_raw == "moodle":
        product = "moodle"
    elif product_raw != "generic":
        problems["product"] = "must be canvas, moodle or generic"
    if canvas is not None and product != "canvas":
        problems["product"] = "must be canvas for hosted Canvas's issuer"

    problem = url_problem(issuer, allow_insecure=allow_insecure, issuer=True)
    if problem:
        problems["issuer"] = f"Platform ID (issuer) {problem}"
    # Kept exactly as given: it must equal the iss claim of every id_token, byte for byte.
    issuer_text = issuer.strip() if isinstance(issuer, str) else ""

    client_id = _identifier(body.get("client_id"))
    if client_id is None:
        problems["client_id"] = "Client ID is required (printable characters, no spaces)"

    deployment_ids: list[str] = []
    if body.get("deployment_id") not in (None, ""):
        deployment = _identifier(body.get("deployment_id"))
        if deployment is None:
            problems["deployment_id"] = "Deployment ID must be printable characters, no spaces"
        else:
            deployment_ids.append(deployment)
    elif product == "moodle":
        problems["deployment_id"] = "Deployment ID is required for Moodle"

    # Hosted Canvas: the endpoints Instructure documents for the issuer's environment, and no
    # others (a registration of the shared issuer with endpoints of its own could receive the
    # tool's signed assertions or vouch for keys that are not Instructure's).
    environment = canvas.environment if canvas is not None else "production"
    defaults = canvas.endpoints() if canvas is not None else {}
    urls: dict[str, str | None] = {}
    labels = {
        "auth_url": "Authentication request URL",
        "jwks_url": "Public keyset URL",
        "token_url": "Access token URL",
    }
    for name, label in labels.items():
        value = body.get(name)
        if value in (None, "") and name in defaults:
            value = defaults[name]
        if value in (None, "") and name == "token_url":
            urls[name] = None
            continue
        problem = url_problem(value, allow_insecure=allow_insecure)
        if problem:
            problems[name] = f"{label} {problem}"
        elif name in defaults and str(value).strip() != defaults[name]:
            problems[name] = f"{label} must be {defaults[name]} for hosted Canvas (or left out)"
        else:
            urls[name] = str(value).strip()

    name_value = body.get("name")
    if name_value is not None and (
        not isinstance(name_value, str) or not name_value.strip() or len(name_value) > 200
    ):
        problems["name"] = "must be 1 to 200 characters"
    policy = body.get("deployment_policy")
    if policy is None:
        policy = "hold" if product == "generic" else "accept"
    if policy not in ("accept", "hold"):
        problems["deployment_policy"] = "must be accept or hold"
    frame_origins: list[str] = []
    if body.get("frame_origins") is not None:
        try:
            frame_origins = normalize_origins(body["frame_origins"], allow_insecure=allow_insecure)
        except ValueError as exc:
            problems["frame_origins"] = f"LMS page origins: {exc}"
    region = body.get("region") if "region" in body else (None if product == "canvas" else home)
    problem = region_problem(region, regions)
    if problem:
        problems["region"] = f"Region {problem}"
    if len(regions) <= 1:
        # One region: nothing to choose, and nothing recorded that a later region map could
        # contradict (NULL: any cell, until an admin sets it).
        region = None
    if problems:
        raise FieldErrors(problems)
    assert client_id is not None
    # The LMS's pages: what the admin named, plus the issuer's origin (Moodle, self-hosted
    # Canvas; not hosted Canvas's shared issuer, whose pages come from each school's host).
    for origin in derived_origins(issuer_text, clouds=clouds):
        if origin not in frame_origins:
            frame_origins.append(origin)
    record = PlatformRecord(
        issuer=issuer_text,
        client_id=client_id,
        auth_url=str(urls["auth_url"]),
        jwks_url=str(urls["jwks_url"]),
        token_url=urls["token_url"],
        product=product,
        deployment_policy=str(policy),
        environment=environment,
        name=name_value.strip() if isinstance(name_value, str) else None,
        method="manual",
        frame_origins=frame_origins[:MAX_FRAME_ORIGINS],
        region=region if isinstance(region, str) else None,
    )
    return ManualRegistration(record, deployment_ids)


async def check_jwks(
    http: OutboundHttp, reg: ManualRegistration, *, allow_insecure: bool, timeout_s: float
) -> None:
    """Fetch the platform's JWKS when reachable: no usable RS256 key (of 2048 bits or more) is
    a field error; an unreachable JWKS is only a warning (launches fetch it again)."""
    found = await platform_jwks.check(
        http, reg.record.jwks_url, allow_insecure=allow_insecure, timeout_s=timeout_s
    )
    if found.problem is not None:
        raise FieldErrors({"jwks_url": JWKS_PROBLEMS[found.problem]})
    if found.warning is not None:
        reg.warnings["jwks_url"] = found.warning
    elif found.weak_kids:
        reg.warnings["jwks_url"] = (
            f"keys shorter than 2048 bits are never used: {', '.join(found.weak_kids)}"
        )


JWKS_PROBLEMS: dict[platform_jwks.Problem, str] = {
    "private_address": "Public keyset URL points at a private or loopback address",
    "not_jwks": "Public keyset URL does not serve a JSON Web Key Set",
    "no_rs256_key": "Public keyset URL has no usable RS256 key",
    "weak_keys_only": "Public keyset URL has only RSA keys shorter than 2048 bits, which "
    "Attune does not accept",
}
