"""Every route of every service, read from the services' own route tables, and the hostile
requests the fuzz sends to each one (``tests/reliability/test_fuzz.py``).

Nothing here lists routes by hand: ``route_table`` reads an application's router (what
``services.<name>.app.create_app`` registers, the shared ``/healthz``, ``/readyz`` and
``/metrics`` and static directories included), so a route added tomorrow is fuzzed without
anyone remembering to. For each route it knows its methods, its path parameters and the field
names its handlers read from request bodies (string keys used in the handler's module), so the
generated bodies aim at the fields that exist. ``matrix`` crosses every route with every HTTP
method, every path parameter with every hostile value, every credential the service accepts,
and, for methods with a body, a poisoned JSON object and the same bytes declared as something
other than JSON.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from shared.routes import SERVICES
from shared.settings import Settings, load_settings

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Path segments, percent-encoded as a client would send them. Digits that str.isdigit()
# accepts but int() refuses (²), other scripts' digits (Arabic-Indic, fullwidth), NUL and control
# characters, whitespace, signs and decimals, more digits than a bigint holds, traversal,
# invalid UTF-8, an emoji, a bidi override, and a long segment.
HOSTILE_SEGMENTS = (
    "%C2%B2",
    "1%C2%B2",
    "%D9%A3",
    "%EF%BC%91",
    "%00",
    "1%00",
    "%07",
    "%0A",
    "%20",
    "-1",
    "0",
    "1.5",
    "9" * 19,
    "99999999999999999",
    "..",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "%FF%FE",
    "%F0%9F%92%A5",
    "%E2%80%AE",
    "a" * 300,
)
# Values that Postgres, JSON encoders and HTML renderers trip on.
POISON = ("\x00", "a\x00b", "\x07", "\ud800", "²", "\u202e", "x" * 5000)
_FIELD = r"[a-z][a-z0-9_]{1,40}"
_FIELD_USES = re.compile(rf"""(?:\.get\(\s*|\[\s*)["']({_FIELD})["']""")
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Route:
    """One path of one service, with what the fuzz needs to know about it."""

    service: str
    path: str  # aiohttp's formatter: /api/checkins/checkins/{checkin_id}
    params: tuple[str, ...]
    methods: frozenset[str]
    static: bool
    fields: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.service} {','.join(sorted(self.methods))} {self.path}"

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")

    def url(self, values: dict[str, str]) -> str:
        """The path with each parameter replaced by its (already encoded) value."""
        path = self.path
        for name in self.params:
            path = path.replace("{" + name + "}", values.get(name, "1"))
        return path


def _handler_fields(handler: Any) -> set[str]:
    target = getattr(handler, "func", handler)  # functools.partial
    module = inspect.getmodule(target)
    if module is None:
        return set()
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    return set(_FIELD_USES.findall(source))


def route_table(app: web.Application, service: str) -> list[Route]:
    """Every path ``app`` routes, grouped with its methods (``*`` means all of them)."""
    found: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        info = resource.get_info()
        if "prefix" in info:  # a static directory: the file name is the parameter
            path, static = info["prefix"].rstrip("/") + "/{filename}", True
        elif "formatter" in info:
            path, static = info["formatter"], False
        else:
            path, static = info["path"], False
        entry = found.setdefault(
            path, {"methods": set(), "fields": set(), "static": static, "pattern": path}
        )
        entry["methods"] |= set(METHODS) if route.method == "*" else {route.method}
        entry["fields"] |= _handler_fields(route.handler)
    return sorted(
        (
            Route(
                service=service,
                path=path,
                params=tuple(_PARAM.findall(path)),
                methods=frozenset(entry["methods"]),
                static=entry["static"],
                fields=tuple(sorted(entry["fields"])),
            )
            for path, entry in found.items()
        ),
        key=lambda r: r.path,
    )


def placeholder_settings() -> Settings:
    """Settings good enough to build every app (nothing connects until it starts)."""
    return load_settings(
        {
            "DATABASE_URL": "postgresql://fuzz@127.0.0.1:1/fuzz",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "ATTUNE_ENV": "test",
            "ATTUNE_ALLOW_INSECURE_URLS": "true",
            "ATTUNE_PUBLIC_URL": "http://127.0.0.1:8000",
            "ATTUNE_SECRET_KEYS": "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6",
            "ATTUNE_KEY_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
        }
    )


def service_routes(settings: Settings | None = None) -> list[Route]:
    """The route table of every service, each built by its own ``create_app``."""
    settings = settings or placeholder_settings()
    routes: list[Route] = []
    for service in SERVICES:
        factory = importlib.import_module(f"services.{service}.app").create_app
        routes += route_table(factory(settings), service)
    return routes


def poisoned_body(route: Route) -> bytes:
    """A JSON object setting every field the route's handlers read to a hostile value."""
    fields = route.fields or ("x",)
    body = {name: POISON[i % len(POISON)] for i, name in enumerate(fields)}
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Case:
    """One request of the matrix."""

    route: Route
    method: str
    params: dict[str, str]
    credential: str  # a name the test maps to headers ("anonymous" sends none)
    body: bytes | None
    content_type: str | None

    @property
    def path(self) -> str:
        return self.route.url(self.params)

    def __str__(self) -> str:
        return f"{self.credential} {self.method} {self.path} {self.content_type or ''}".strip()


def matrix(route: Route, credentials: tuple[str, ...]) -> Iterator[Case]:
    """The deterministic cases of one route: each method it routes, with each credential,
    each hostile value of each parameter, and (for methods with a body) a poisoned JSON body
    and the same bytes as ``text/plain``; each method it does not route, once."""
    assignments: list[dict[str, str]] = [{}]
    if route.params:
        assignments = [{name: value} for name in route.params for value in HOSTILE_SEGMENTS]
    for method in METHODS:
        if method not in route.methods:
            yield Case(route, method, assignments[0], credentials[0], None, None)
            continue
        for credential in credentials:
            for values in assignments:
                if method not in BODY_METHODS:
                    yield Case(route, method, values, credential, None, None)
                    continue
                body = poisoned_body(route)
                yield Case(route, method, values, credential, body, "application/json")
                yield Case(route, method, values, credential, body, "text/plain")
