"""Who may frame Attune's pages (shared.lti.frame): origin validation that keeps anything but
an origin out of the CSP header, the fallbacks, and the signed frame reference."""

from __future__ import annotations

import os
import time

import pytest

from shared.lti.frame import (
    HOSTED_CANVAS_FALLBACK,
    MAX_FRAME_ORIGINS,
    FrameRef,
    FrameRefs,
    PlatformFrames,
    derived_origins,
    frame_ancestors,
    normalize_origin,
    normalize_origins,
    origin_allowed,
    platform_ancestors,
    secure_origin,
)
from shared.signing import TokenSigner


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://School.Instructure.com", "https://school.instructure.com"),
        ("https://school.instructure.com/", "https://school.instructure.com"),
        ("https://moodle.school.edu:443", "https://moodle.school.edu"),
        ("https://moodle.school.edu:8443", "https://moodle.school.edu:8443"),
        ("https://*.school.edu", "https://*.school.edu"),
        ("  https://canvas.school.edu  ", "https://canvas.school.edu"),
    ],
)
def test_origins_are_normalized(given: str, expected: str) -> None:
    assert normalize_origin(given, allow_insecure=False) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "school.instructure.com",
        "http://school.instructure.com",  # https only outside development
        "https://school.instructure.com/courses/1",
        "https://school.instructure.com?x=1",
        "https://school.instructure.com#x",
        "https://user:pw@school.instructure.com",
        # Attempts to smuggle CSP into the header:
        "https://a.example; script-src *",
        "https://a.example 'unsafe-inline'",
        "https://a.example,https://b.example",
        "*",
        "https://*",
        "https://*.edu",
        "'self'",
        "javascript://a.example",
        "https://a..example",
        "https://" + "a" * 300 + ".example",
        42,
        None,
    ],
)
def test_anything_but_an_origin_is_refused(given: object) -> None:
    with pytest.raises(ValueError):
        normalize_origin(given, allow_insecure=False)


def test_http_only_in_development() -> None:
    assert normalize_origin("http://127.0.0.1:8080", allow_insecure=True) == "http://127.0.0.1:8080"


def test_origin_lists_are_bounded_and_deduplicated() -> None:
    got = normalize_origins(
        ["https://a.example", "https://A.example/", "https://b.example"], allow_insecure=False
    )
    assert got == ["https://a.example", "https://b.example"]
    many = [f"https://s{i}.example" for i in range(MAX_FRAME_ORIGINS + 1)]
    with pytest.raises(ValueError, match="at most"):
        normalize_origins(many, allow_insecure=False)
    with pytest.raises(ValueError, match="entry 2"):
        normalize_origins(["https://a.example", "https://a.example; x"], allow_insecure=False)
    with pytest.raises(ValueError):
        normalize_origins("https://a.example", allow_insecure=False)


def test_derived_origins_skip_the_shared_canvas_issuer() -> None:
    endpoint = "https://school.instructure.com/api/lti/registrations?x=1"
    assert derived_origins("https://canvas.instructure.com", urls=[endpoint]) == [
        "https://school.instructure.com"
    ]
    assert derived_origins("https://moodle.school.edu/moodle") == ["https://moodle.school.edu"]
    assert platform_ancestors("https://canvas.instructure.com", ()) == HOSTED_CANVAS_FALLBACK
    assert platform_ancestors("https://moodle.school.edu", ()) == ("https://moodle.school.edu",)
    assert platform_ancestors("https://canvas.instructure.com", ("https://c.school.edu",)) == (
        "https://c.school.edu",
    )
    assert frame_ancestors(()) == "frame-ancestors 'self'"
    assert frame_ancestors(["https://a.example"]) == "frame-ancestors 'self' https://a.example"


def test_frame_refs_are_signed_and_expire() -> None:
    secrets = [os.urandom(32)]
    refs = FrameRefs(secrets)
    ref = refs.issue(42)
    assert refs.read(ref) == FrameRef(42, None)
    proven = refs.issue(42, "https://canvas.school.edu")
    assert refs.read(proven) == FrameRef(42, "https://canvas.school.edu")
    body, _, mac = ref.partition(".")
    assert refs.read(f"{body}.{mac[:-2]}AA") is None  # forged MAC
    assert FrameRefs([os.urandom(32)]).read(ref) is None  # another deployment's secret
    assert refs.read(None) is None and refs.read("") is None and refs.read("x" * 1100) is None
    # The same secret under another purpose (e.g. a launch token) is not a frame reference.
    other = TokenSigner(secrets, "attune:launch-token:v1").sign({"p": 42, "exp": 2**40})
    assert refs.read(other) is None
    expired = FrameRefs(secrets, ttl_s=-1).issue(42)
    assert refs.read(expired) is None
    not_an_id = TokenSigner(secrets, "attune:frame-ref:v1").sign(
        {"p": "42", "exp": int(time.time()) + 60}
    )
    assert refs.read(not_an_id) is None


async def test_platform_frames_cache_and_invalidation() -> None:
    calls: list[int] = []
    current: dict[int, tuple[str, ...]] = {1: ("https://a.example",)}

    async def load(platform_id: int) -> tuple[str, ...] | None:
        calls.append(platform_id)
        return current.get(platform_id)

    frames = PlatformFrames(load)
    assert await frames.get(1) == ("https://a.example",)
    assert await frames.get(1) == ("https://a.example",)
    assert calls == [1]
    current[1] = ("https://b.example",)
    frames.invalidate(1)
    assert await frames.get(1) == ("https://b.example",)
    assert await frames.get(2) is None
    assert await frames.get(2) is None
    assert calls == [1, 1, 2]


def test_origin_allowed_matches_like_frame_ancestors() -> None:
    """CSP host-source matching: exact origins, ``*.`` for sub-domains only, scheme and port
    exact (the login's Platform Storage page is skipped for an origin this refuses)."""
    allowed = ("https://school.instructure.com", "https://*.school.edu", "http://127.0.0.1:8001")
    assert origin_allowed("https://school.instructure.com", allowed)
    assert origin_allowed("https://School.Instructure.com:443", allowed)
    assert origin_allowed("https://canvas.school.edu", allowed)
    assert origin_allowed("https://a.b.school.edu", allowed)
    assert origin_allowed("http://127.0.0.1:8001", allowed)
    assert not origin_allowed("https://school.edu", allowed)  # *. means a sub-domain
    assert not origin_allowed("https://evilschool.edu", allowed)
    assert not origin_allowed("http://school.instructure.com", allowed)  # scheme
    assert not origin_allowed("https://school.instructure.com:8443", allowed)  # port
    assert not origin_allowed("http://127.0.0.1:8002", allowed)
    assert not origin_allowed("null", allowed)
    assert not origin_allowed("https://other.instructure.com", allowed)
    assert origin_allowed("https://other.instructure.com", HOSTED_CANVAS_FALLBACK)
    assert not origin_allowed("https://instructure.com", HOSTED_CANVAS_FALLBACK)


def test_only_secure_origins_unless_development() -> None:
    assert secure_origin("https://a.example", allow_insecure=False) == "https://a.example"
    assert secure_origin("http://a.example", allow_insecure=False) is None
    assert secure_origin("http://a.example", allow_insecure=True) == "http://a.example"
    assert secure_origin(None, allow_insecure=True) is None
