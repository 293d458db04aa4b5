"""Who may frame Attune's pages: CSP ``frame-ancestors`` per registered platform.

Attune runs inside the LMS's iframe, so its LMS-facing pages must allow exactly the origins the
LMS's own pages come from — and no others (clickjacking). Those origins are stored per
registration (``platforms.frame_origins``, migration 0008): the school's Canvas host(s), which
differ from hosted Canvas's shared issuer, or the Moodle site; plus, per deployment, the page
origins verified launches proved (``deployment_observations``, migration 0014: one hosted Canvas
client_id serves many schools on their own domains). One page names one platform's origins,
never every registered platform's (10,000 registrations would make a header no browser or proxy
accepts).

The app page learns which platform framed it from a **frame reference** in its query string
(``/app/?f=<ref>``), put there by the launch redirect: an HMAC-signed platform id, with the page
origin the launch itself proved, so the reference can neither be forged to borrow another
platform's origins nor be enumerated to list which LMS hosts use Attune. An unknown, expired or
forged reference gets ``'self'`` only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from shared.lti.canvas import DEFAULT_CLOUDS, INSTRUCTURE_FALLBACK, CanvasClouds
from shared.signing import InvalidToken, TokenSigner

MAX_FRAME_ORIGINS = 20
MAX_ORIGIN = 255
REF_PURPOSE = "attune:frame-ref:v1"
REF_TTL_S = 24 * 3600  # an LMS tab open all day can still reload the app
REF_PARAM = "f"
MAX_REF = 1024

# A hosted Canvas registered by client_id only (the JSON URL path) names no school host; its
# pages come from Instructure-hosted domains until one is recorded or learned.
HOSTED_CANVAS_FALLBACK = INSTRUCTURE_FALLBACK

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(\*\.)?({_LABEL}\.)*{_LABEL}$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]{2,45}\]$")


def normalize_origin(value: object, *, allow_insecure: bool) -> str:
    """``scheme://host[:port]`` in lower case, or ``ValueError`` saying what is wrong.

    https only (http when ``allow_insecure``, development); no path, query, fragment or
    credentials; a host name (optionally ``*.`` for any sub-domain) or a literal address.
    Strict on purpose: the value is written into a CSP header, so nothing but an origin may
    pass (no spaces, quotes, ``;`` or keywords).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an origin such as https://school.instructure.com")
    text = value.strip()
    if len(text) > MAX_ORIGIN:
        raise ValueError("is too long")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("is not an origin") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError("must start with https://")
    if parts.scheme == "http" and not allow_insecure:
        raise ValueError("must use https")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "#" in text or "?" in text:
        raise ValueError("must be an origin only (no path, query or fragment)")
    netloc = parts.netloc.lower()
    host = netloc.rsplit(":", 1)[0] if port is not None else netloc
    if not (_HOST.match(host) or _IPV6.match(host)):
        raise ValueError("has an invalid host name")
    if host.startswith("*.") and host.count(".") < 2:
        raise ValueError("may use *. only in front of a domain such as *.school.edu")
    default = {"https": 443, "http": 80}[parts.scheme]
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{host}{suffix}"


def normalize_origins(values: object, *, allow_insecure: bool) -> list[str]:
    """A de-duplicated list of at most ``MAX_FRAME_ORIGINS`` origins, or ``ValueError``."""
    if not isinstance(values, list):
        raise ValueError("must be a list of origins")
    result: list[str] = []
    for index, value in enumerate(values):
        try:
            origin = normalize_origin(value, allow_insecure=allow_insecure)
        except ValueError as exc:
            raise ValueError(f"entry {index + 1} {exc}") from None
        if origin not in result:
            result.append(origin)
    if len(result) > MAX_FRAME_ORIGINS:
        raise ValueError(f"must list at most {MAX_FRAME_ORIGINS} origins")
    return result


def origin_of(url: str) -> str | None:
    """The origin of an absolute http(s) URL (default port dropped), or None."""
    try:
        return normalize_origin(
            f"{urlsplit(url).scheme}://{urlsplit(url).netloc.rpartition('@')[2]}",
            allow_insecure=True,
        )
    except ValueError:
        return None


def derived_origins(
    issuer: str, *, urls: Sequence[str | None] = (), clouds: CanvasClouds = DEFAULT_CLOUDS
) -> list[str]:
    """Origins of ``urls`` (where a registration says the LMS's pages are) plus the issuer's
    origin — except a hosted Canvas issuer's, which serves no school's pages."""
    found: list[str] = []
    for url in (*urls, None if clouds.get(issuer) else issuer):
        origin = origin_of(url) if url else None
        if origin is not None and origin not in found:
            found.append(origin)
    return found


def platform_ancestors(
    issuer: str, frame_origins: Sequence[str], clouds: CanvasClouds = DEFAULT_CLOUDS
) -> tuple[str, ...]:
    """The origins allowed to frame pages for one platform: its recorded origins, or when none
    are recorded what can be derived (the issuer's origin; hosted Canvas's fallback)."""
    if frame_origins:
        return tuple(frame_origins)
    canvas = clouds.get(issuer)
    if canvas is not None:
        return canvas.fallback_origins
    return tuple(derived_origins(issuer))


def origin_allowed(origin: str, ancestors: Iterable[str]) -> bool:
    """Whether a page of ``origin`` is one ``frame-ancestors <ancestors>`` lets frame a page
    (CSP host-source matching: ``https://*.school.edu`` covers every sub-domain of
    school.edu, not school.edu itself; scheme and port must match)."""
    try:
        wanted = normalize_origin(origin, allow_insecure=True)
    except ValueError:
        return False
    scheme, _, rest = wanted.partition("://")
    for allowed in ancestors:
        a_scheme, _, a_rest = allowed.partition("://")
        if a_scheme != scheme:
            continue
        if a_rest == rest:
            return True
        if a_rest.startswith("*.") and rest.endswith(a_rest[1:]):
            return True
    return False


def secure_origin(origin: str | None, *, allow_insecure: bool) -> str | None:
    """``origin`` if pages of it may be allowed to frame Attune: https, or http only when
    ``ATTUNE_ALLOW_INSECURE_URLS`` (development)."""
    if origin is None or (origin.startswith("http://") and not allow_insecure):
        return None
    return origin


def frame_ancestors(origins: Iterable[str]) -> str:
    """The directive: ``'self'`` plus the given origins."""
    return " ".join(("frame-ancestors", "'self'", *origins))


def with_frame_ancestors(csp: str, origins: Iterable[str]) -> str:
    return f"{csp}; {frame_ancestors(origins)}"


@dataclass(frozen=True)
class FrameRef:
    platform_id: int
    # The LMS page origin the launch itself proved (its signed launch_presentation.return_url),
    # allowed to frame the app on top of the platform's recorded origins.
    origin: str | None = None


class FrameRefs:
    """Signed, opaque references to a platform (and the page origin its launch proved), for
    the app page's query string."""

    def __init__(self, secrets: Sequence[bytes], *, ttl_s: int = REF_TTL_S) -> None:
        self._signer = TokenSigner(secrets, REF_PURPOSE)
        self._ttl = ttl_s

    def issue(self, platform_id: int, origin: str | None = None) -> str:
        payload: dict[str, object] = {"p": platform_id, "exp": int(time.time()) + self._ttl}
        if origin is not None:
            payload["o"] = origin
        return self._signer.sign(payload)

    def read(self, ref: str | None) -> FrameRef | None:
        """The reference, or None for a missing, forged, expired or malformed one."""
        if not ref or len(ref) > MAX_REF:
            return None
        try:
            payload = self._signer.verify(ref)
        except InvalidToken:
            return None
        platform_id, origin = payload.get("p"), payload.get("o")
        if not isinstance(platform_id, int) or isinstance(platform_id, bool):
            return None
        return FrameRef(platform_id, origin if isinstance(origin, str) else None)


OriginsLoader = Callable[[int], Awaitable[tuple[str, ...] | None]]


def db_origins_loader(pool: asyncpg.Pool, clouds: CanvasClouds = DEFAULT_CLOUDS) -> OriginsLoader:
    async def load(platform_id: int) -> tuple[str, ...] | None:
        row = await pool.fetchrow(
            "SELECT issuer, frame_origins FROM platforms WHERE id = $1", platform_id
        )
        if row is None:
            return None
        return platform_ancestors(row["issuer"], list(row["frame_origins"]), clouds)

    return load


class PlatformFrames:
    """Frame ancestors by platform id, cached like the registration cache: a TTL (a missed
    invalidation heals by itself), misses cached briefly, dropped at once on registration
    events, bounded in size."""

    def __init__(
        self, loader: OriginsLoader, *, ttl_s: float = 60.0, miss_ttl_s: float = 5.0
    ) -> None:
        self._loader = loader
        self._ttl = ttl_s
        self._miss_ttl = miss_ttl_s
        self._entries: dict[int, tuple[float, tuple[str, ...] | None]] = {}

    async def get(self, platform_id: int) -> tuple[str, ...] | None:
        """The origins allowed to frame this platform's pages; None for an unknown platform."""
        entry = self._entries.get(platform_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        origins = await self._loader(platform_id)
        ttl = self._ttl if origins is not None else self._miss_ttl
        if len(self._entries) > 50_000:
            self._entries.clear()
        self._entries[platform_id] = (time.monotonic() + ttl, origins)
        return origins

    def invalidate(self, platform_id: int | None = None) -> None:
        if platform_id is None:
            self._entries.clear()
        else:
            self._entries.pop(platform_id, None)
