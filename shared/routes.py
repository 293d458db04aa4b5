"""Which service answers which public path: the one source of truth for the local gateway and
the Kubernetes Ingress (a test compares the rendered Ingress with this table).

Prefixes are matched longest first; a path belongs to a prefix when it equals it or continues
with ``/``.
"""

from __future__ import annotations

SERVICES: tuple[str, ...] = ("login", "launch", "registration", "jwks", "checkins")

PUBLIC_ROUTES: tuple[tuple[str, str], ...] = (
    ("/lti/login", "login"),
    ("/lti/launch", "launch"),
    ("/lti/register", "registration"),
    ("/lti/config", "registration"),
    ("/admin", "registration"),
    ("/api/admin", "registration"),
    ("/.well-known/jwks.json", "jwks"),
    ("/app", "checkins"),
    ("/api/checkins", "checkins"),
    ("/static", "checkins"),
)


def service_for_path(path: str) -> str | None:
    """The service that owns ``path``, or None when no public route matches."""
    best: tuple[int, str] | None = None
    for prefix, service in PUBLIC_ROUTES:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), service)
    return best[1] if best else None
