"""Property tests of every input Attune reads from outside: check-in API bodies, login forms,
signed launch tokens, dynamic registration documents, and bodies far over the size limits.

Each scenario drives the real services (through the real gateway where a browser would) and
holds, for every generated example:

- never a 5xx: a 4xx with a stable JSON ``code`` from a known set, or success for valid input;
- no ``unhandled_error`` (nor any error-level line) in the captured structured log;
- nothing half-written: a refused request leaves no row (check-in, answer, launch, nonce,
  platform, audit, outbox) behind, and an accepted one writes exactly its rows.

The examples are derandomized (the same on every run) and bounded by ``max_examples``; figures
(requests, refusals by code, 5xx) go to ``tests/reliability/record.py``. The launch fuzz of
tests/integration/test_launch_negative.py leaves NUL, lone surrogates, NaN, non-form bodies and
JWT headers out; those are what this file adds.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import re
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from yarl import URL

from services.registration.app import create_app as registration_app
from services.registration.cli import create_install_code, create_token
from services.registration.toolconfig import PLATFORM_CONFIG, TOOL_CONFIG
from shared.events import topics
from shared.logs import configure_logging
from shared.lti import claims as C
from shared.routes import SERVICES
from shared.web import base_app
from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform
from tests.fakes.registration_platform import (
    RegistrationPlatform,
    form_value,
    outbox_settled,
    serve_app,
    submit_install,
)
from tests.integration.test_checkins import launch_token
from tests.integration.test_launch_negative import KNOWN_CODES as LTI_CODES
from tests.integration.test_launch_negative import compact
from tests.lti_support import LtiStack, auth_params, browser, platform_server, start_stack
from tests.reliability.record import Figures, record
from tests.reliability.routes import (
    BODY_METHODS,
    HOSTILE_SEGMENTS,
    METHODS,
    Case,
    Route,
    matrix,
    placeholder_settings,
    route_table,
    service_routes,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    # A shrunk example may still print a few hundred kilobytes; that is not a failure.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="attune-hypothesis-"))

FUZZ = hsettings(
    max_examples=int(os.environ.get("ATTUNE_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
CODE_SHAPE = re.compile(r"^[a-z][a-z0-9_]{2,60}$")
FORM_CODES = frozenset({"form_invalid", "request_too_large"})
CHECKIN_CODES = frozenset(
    {
        "json_required",
        "json_invalid",
        "validation_failed",
        "request_too_large",
        "checkin_not_found",
        "checkin_not_open",
    }
)
REGISTRATION_CODES = frozenset(
    {
        "openid_configuration_url_invalid",
        "openid_configuration_unreachable",
        "openid_configuration_too_large",
        "openid_configuration_malformed",
        "openid_configuration_issuer_mismatch",
        "openid_configuration_canvas_mismatch",
        "openid_configuration_private_address",
        "registration_token_invalid",
        "registration_rejected",
        "registration_response_invalid",
        "registration_endpoint_unreachable",
        "registration_collision",
        "reregistration_mismatch",
        "platform_key_too_weak",
        "platform_jwks_unusable",
        "placements_invalid",
        "form_invalid",
    }
)
# Refusals that write their audit row (and nothing else): an attempt on another registration.
AUDITED_REFUSALS = frozenset({"registration_collision", "reregistration_mismatch"})
LAUNCH_CODES = LTI_CODES | FORM_CODES


# --- generated values -------------------------------------------------------------------------

# Strings Postgres, JSON encoders and HTML renderers trip on, mixed into ordinary text.
NASTY = [
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\udc80y",
    "\ufeff",
    "\u202e",
    "\x1b[31m",
    "<script>alert(1)</script>",
    "'; DROP TABLE checkins; --",
    "%00",
    "\r\n",
    "💥",
    "NaN",
]
TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.text(max_size=8), st.sampled_from(NASTY)), max_size=5).map("".join),
    st.integers(250, 5_000).map(lambda n: "q" * n),
)
NUMBER = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0]),
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON as a lax client would send it: NaN/Infinity literals, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def deep(n: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * n + b"]" * n
    if kind == "object":
        return b'{"a":' * n + b"1" + b"}" * n
    return b'{"question":' + b"[" * n + b"]" * n + b"}"


RAW = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(200, 3_000), st.sampled_from(["array", "object", "field"])).map(
        lambda t: deep(*t)
    ),
    st.sampled_from(
        [
            b"",
            b"NaN",
            b"-Infinity",
            b"1" * 5000,  # beyond Python's int digit limit
            b'{"question": "q"',
            b'\xef\xbb\xbf{"question": "q"}',
            b'{"question": "\xff\xfe"}',
            b'{"question": "q", "question": 7}',
            '{"question": "é"}'.encode("utf-16"),
        ]
    ),
)
CONTENT_TYPES = st.one_of(
    st.just("application/json"),
    st.just("application/json"),
    st.just("application/json; charset=utf-8"),
    st.sampled_from(
        [
            "application/json; charset=latin-1",
            "application/json; charset=utf-16",
            "application/json; charset=bogus",
            "application/json; charset=rot13",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=zz",
            "application/jsonx",
            "",
        ]
    ),
)


# --- captured logs -----------------------------------------------------------------------------


# The embedded broker under a loaded 2-core machine makes aiokafka's consumers log fetch
# timeouts at error level; that is the event pipeline's weather, not a reaction to the input.
NOT_OURS = ("aiokafka",)


class LogWatch(io.TextIOBase):
    """The stream the in-process services log to (one JSON object a line). Only error-level
    lines are kept (an ``unhandled_error`` is logged at error level with its traceback), so a
    long run holds no log in memory; ``assert_clean`` checks none arrived since the last call."""

    def __init__(self) -> None:
        super().__init__()
        self._partial = ""
        self.found: list[dict[str, Any]] = []
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.lines += 1
            if '"error"' not in line and '"critical"' not in line and "unhandled" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("logger", "")).startswith(NOT_OURS):
                continue
            if entry.get("level") in ("error", "critical") or entry.get("event") == (
                "unhandled_error"
            ):
                self.found.append(entry)
        return len(text)

    def assert_clean(self, context: object) -> None:
        found, self.found = self.found, []
        assert not found, f"error logged for {context!r}: {found[0]}"


@pytest.fixture(scope="module")
def logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    configure_logging(service="fuzz", level="INFO", fmt="json", stream=watch)  # type: ignore[arg-type]
    yield watch
    configure_logging(service="test", level="WARNING", fmt="json")


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, Figures]]:
    """One ``Figures`` per scenario, filled by its examples and recorded at the end."""
    found: dict[str, Figures] = {}
    yield found
    for fig in found.values():
        record(fig)


def figure(found: dict[str, Figures], scenario: str, note: str = "") -> Figures:
    return found.setdefault(scenario, Figures(scenario=scenario, suite="fuzz", note=note))


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    def add_to(self, fig: Figures) -> None:
        fig.seconds = round(fig.seconds + time.monotonic() - self.started, 3)


def tally(fig: Figures, status: int, code: str | None) -> None:
    fig.requests += 1
    if status >= 500:
        fig.server_errors += 1
        fig.count(code or f"http_{status}")
    elif status >= 400:
        fig.count(code or f"http_{status}")


async def refusal_code(status: int, text: str, allowed: frozenset[str], context: object) -> str:
    """A 4xx body must be JSON with a stable code from ``allowed``."""
    assert 400 <= status < 500, (status, context, text[:300])
    body = json.loads(text)
    code = body["error"]["code"]
    assert isinstance(code, str) and CODE_SHAPE.match(code), body
    assert code in allowed, (code, context)
    return code


# --- the stack -----------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=10)
    assert p is not None
    yield p
    await p.close()


NO_LIMITS = {
    "rate_limit_ip_per_s": 1e6,
    "rate_limit_ip_burst": 1e6,
    "rate_limit_platform_per_s": 1e6,
    "rate_limit_platform_burst": 1e6,
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(infra: Infra, module_pool: asyncpg.Pool, logs: LogWatch) -> AsyncIterator[LtiStack]:
    s, exits = await start_stack(infra, module_pool, http_timeout_s=1.0, **NO_LIMITS)
    try:
        yield s
    finally:
        await exits.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def canvas() -> AsyncIterator[FakePlatform]:
    async for p in platform_server("canvas"):
        yield p


@dataclass
class Course:
    stack: LtiStack
    platform: FakePlatform
    client: Client
    platform_id: int
    teacher: str
    students: list[str]
    session: aiohttp.ClientSession

    @property
    def api(self) -> str:
        return f"{self.stack.url}/api/checkins/checkins"

    @property
    def pool(self) -> asyncpg.Pool:
        return self.stack.pool

    async def send(
        self, method: str, url: str, token: str, data: bytes, content_type: str
    ) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        async with self.session.request(method, url, data=data, headers=headers) as resp:
            return resp.status, await resp.text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def course(stack: LtiStack, canvas: FakePlatform) -> AsyncIterator[Course]:
    client = canvas.add_client(stack.redirect_uris())
    platform_id = await stack.register(canvas, client)
    teacher = await launch_token(stack.url, canvas, client, "fuzz-teacher", teacher=True)
    students = [await launch_token(stack.url, canvas, client, f"fuzz-s{i}") for i in range(2)]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Course(stack, canvas, client, platform_id, teacher, students, session)


# --- check-in API -------------------------------------------------------------------------------


def _iso_in(days: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "question": st.one_of(st.just("How are you?"), TEXT, JSON),
    "vocabulary": st.one_of(st.sampled_from(["full", "simple"]), JSON),
    "allow_note": st.one_of(st.booleans(), JSON),
    "anonymous": st.one_of(st.just(False), JSON),
    "opens_at": st.one_of(st.floats(-1, 3).map(_iso_in), TEXT, JSON),
    "closes_at": st.one_of(st.floats(0.1, 400).map(_iso_in), TEXT, JSON),
    "response_kind": st.one_of(st.just("emotion"), JSON),
    "recurrence": st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "every": st.one_of(st.sampled_from(["daily", "weekly"]), JSON),
                "timezone": st.one_of(st.sampled_from(["UTC", "Europe/Paris"]), TEXT),
            },
            optional={"days": st.one_of(st.lists(st.integers(0, 8), max_size=8), JSON)},
        ),
        JSON,
    ),
}
SHAPED = st.fixed_dictionaries({}, optional=FIELD_VALUES).flatmap(
    lambda d: st.dictionaries(TEXT, JSON, max_size=2).map(lambda extra: {**extra, **d})
)
# Valid but for the question text: the nasty strings reach the database layer.
VALID = st.fixed_dictionaries(
    {"question": st.one_of(st.just("How are you?"), TEXT)},
    optional={
        "allow_note": st.booleans(),
        "vocabulary": st.sampled_from(["full", "simple"]),
        "closes_at": st.floats(0.1, 30).map(_iso_in),
    },
)
CHECKIN_BODY = st.one_of(
    VALID.map(dumps), VALID.map(dumps), SHAPED.map(dumps), JSON.map(dumps), RAW
)


@dataclass(frozen=True)
class Mark:
    checkin_id: int
    seq: int


@dataclass(frozen=True)
class Writes:
    """Rows and events written since a ``Mark``, leaving out the recurrence scheduler's own
    (a recurring check-in that has opened spawns its successor, with ``recurs_from``)."""

    checkin_ids: frozenset[int]
    events: tuple[tuple[str, str], ...]  # (type, subject)


async def mark(pool: asyncpg.Pool) -> Mark:
    return Mark(
        int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM checkins")),
        int(await pool.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")),
    )


async def writes_since(pool: asyncpg.Pool, since: Mark) -> Writes:
    ids = {
        r["id"] for r in await pool.fetch("SELECT id FROM checkins WHERE id > $1", since.checkin_id)
    }
    # The recurrence scheduler creates check-ins on its own (with their ``recurs_from`` event in
    # the same transaction); its event's seq may be below the mark although it committed after
    # it (sequence numbers are taken before commit), so look it up by check-in, not by seq.
    for row in await pool.fetch(
        "SELECT value FROM outbox WHERE event_type = 'checkin.created' AND "
        "(convert_from(value, 'UTF8')::jsonb #>> '{data,checkin_id}')::bigint = any($1::bigint[])",
        sorted(ids),
    ):
        data = json.loads(row["value"])["data"]
        if "recurs_from" in data:
            ids.discard(data["checkin_id"])
    events = []
    for row in await pool.fetch(
        "SELECT event_type, value FROM outbox WHERE seq > $1 ORDER BY seq", since.seq
    ):
        event = json.loads(row["value"])
        if "recurs_from" in event["data"]:
            ids.discard(event["data"]["checkin_id"])
            continue
        events.append((row["event_type"], event["subject"]))
    return Writes(frozenset(ids), tuple(events))


NOTHING = Writes(frozenset(), ())


def error_of(status: int, text: str) -> str | None:
    if status < 400:
        return None
    try:
        return str(json.loads(text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Sent:
    """One generated request to the check-in API: the answer, what it wrote, how to name it."""

    status: int
    text: str
    written: Writes
    context: tuple[bytes, str]


async def send_counted(
    course: Course, fig: Figures, method: str, url: str, token: str, body: bytes, content_type: str
) -> Sent:
    """Send ``body`` and count it in ``fig`` (the request, its code, the seconds it took)."""
    timer = Timer()
    since = await mark(course.pool)
    status, text = await course.send(method, url, token, body, content_type)
    tally(fig, status, error_of(status, text))
    timer.add_to(fig)
    written = await writes_since(course.pool, since)
    return Sent(status, text, written, (body[:200], content_type))


async def assert_refused_cleanly(
    fig: Figures, sent: Sent, what: str, unchanged: bool = True
) -> None:
    """A refusal with a stable check-in code that left the data ``unchanged`` and wrote
    nothing (what did not is counted as data lost before it fails)."""
    await refusal_code(sent.status, sent.text, CHECKIN_CODES, sent.context)
    if not unchanged or sent.written != NOTHING:
        fig.data_lost += 1
    assert unchanged, f"a refused {what} changed the data: {sent.context!r}"
    assert sent.written == NOTHING, f"a refused {what} wrote: {sent.context!r} {sent.written}"


@FUZZ
@given(body=CHECKIN_BODY, content_type=CONTENT_TYPES)
async def test_checkin_create_fuzz(
    course: Course, logs: LogWatch, figures: dict[str, Figures], body: bytes, content_type: str
) -> None:
    fig = figure(figures, "checkin_create_payloads")
    sent = await send_counted(course, fig, "POST", course.api, course.teacher, body, content_type)
    if sent.status == 201:
        created = json.loads(sent.text)
        stored = await course.pool.fetchval(
            "SELECT question FROM checkins WHERE id = $1", created["id"]
        )
        assert stored == created["question"]
        assert sent.written == Writes(
            frozenset({created["id"]}), (("checkin.created", f"checkin:{created['id']}"),)
        ), sent.written
    else:
        await assert_refused_cleanly(fig, sent, "create")
    logs.assert_clean(sent.context)


@pytest_asyncio.fixture(loop_scope="module")
async def open_checkin(course: Course) -> int:
    status, text = await course.send(
        "POST",
        course.api,
        course.teacher,
        dumps({"question": "Edit me", "allow_note": True}),
        "application/json",
    )
    assert status == 201, text
    return int(json.loads(text)["id"])


async def checkin_snapshot(course: Course, checkin_id: int) -> tuple[Any, ...]:
    row = await course.pool.fetchrow("SELECT * FROM checkins WHERE id = $1", checkin_id)
    assert row is not None
    return tuple(row.values())


EDIT_BODY = st.one_of(SHAPED.map(lambda d: {k: v for k, v in d.items() if k != "anonymous"}), JSON)


@FUZZ
@given(body=st.one_of(EDIT_BODY.map(dumps), RAW), content_type=CONTENT_TYPES)
async def test_checkin_edit_fuzz(
    course: Course,
    open_checkin: int,
    logs: LogWatch,
    figures: dict[str, Figures],
    body: bytes,
    content_type: str,
) -> None:
    fig = figure(figures, "checkin_edit_payloads")
    url = f"{course.api}/{open_checkin}"
    before_row = await checkin_snapshot(course, open_checkin)
    sent = await send_counted(course, fig, "PATCH", url, course.teacher, body, content_type)
    if sent.status == 200:
        event = ("checkin.updated", f"checkin:{open_checkin}")
        assert sent.written == Writes(frozenset(), (event,))
    else:
        unchanged = await checkin_snapshot(course, open_checkin) == before_row
        await assert_refused_cleanly(fig, sent, "edit", unchanged)
    logs.assert_clean(sent.context)


ANSWER_BODY = st.one_of(
    st.fixed_dictionaries(
        {"emotion": st.sampled_from(["sad", "happy", "okay", "calm", "proud"])},
        optional={"note": st.one_of(st.none(), TEXT)},
    ).map(dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "emotion": st.one_of(st.sampled_from(["sad", "happy", "okay", "calm"]), TEXT, JSON),
            "note": st.one_of(st.none(), TEXT, JSON),
        },
    ).map(dumps),
    JSON.map(dumps),
    RAW,
)


async def answers(course: Course, checkin_id: int) -> dict[str, tuple[Any, ...]]:
    rows = await course.pool.fetch(
        "SELECT respondent, emotion, note, updated_at FROM checkin_responses WHERE checkin_id = $1",
        checkin_id,
    )
    return {r["respondent"]: tuple(r.values()) for r in rows}


@FUZZ
@given(body=ANSWER_BODY, content_type=CONTENT_TYPES, who=st.integers(0, 1))
async def test_checkin_answer_fuzz(
    course: Course,
    open_checkin: int,
    logs: LogWatch,
    figures: dict[str, Figures],
    body: bytes,
    content_type: str,
    who: int,
) -> None:
    fig = figure(figures, "checkin_answer_payloads")
    url = f"{course.api}/{open_checkin}/response"
    before = await answers(course, open_checkin)
    sent = await send_counted(course, fig, "PUT", url, course.students[who], body, content_type)
    after = await answers(course, open_checkin)
    assert set(after) <= {"fuzz-s0", "fuzz-s1"}, after
    if sent.status in (200, 201):
        answer = json.loads(sent.text)
        assert after[f"fuzz-s{who}"][1] == answer["emotion"]
        assert (sent.status == 201) == (f"fuzz-s{who}" not in before)
        event = ("checkin.answered", f"checkin:{open_checkin}")
        assert sent.written == Writes(frozenset(), (event,))
    else:
        await assert_refused_cleanly(fig, sent, "answer", after == before)
    logs.assert_clean(sent.context)


async def test_checkin_regressions(course: Course, open_checkin: int, logs: LogWatch) -> None:
    """The inputs this file found answering 500 (each one now a 4xx with its code)."""
    answer_url = f"{course.api}/{open_checkin}/response"
    cases: list[tuple[str, str, str, bytes, str, int, str]] = [
        ("POST", course.api, course.teacher, b"[" * 5000, "application/json", 400, "json_invalid"),
        ("POST", course.api, course.teacher, b'{"question":"a\\u0000b"}', "application/json",
         422, "validation_failed"),
        ("POST", course.api, course.teacher, b'{"question":"a\\ud800"}', "application/json",
         422, "validation_failed"),
        ("POST", course.api, course.teacher, b'{"question":"q","vocabulary":["full"]}',
         "application/json", 422, "validation_failed"),
        ("POST", course.api, course.teacher, b'{"question":"q"}',
         "application/json; charset=bogus", 400, "json_invalid"),
        ("PATCH", f"{course.api}/{open_checkin}", course.teacher, b'{"vocabulary":{}}',
         "application/json", 422, "validation_failed"),
        ("PUT", answer_url, course.students[0], b'{"emotion":"sad","note":"a\\u0000b"}',
         "application/json", 422, "validation_failed"),
        ("PUT", answer_url, course.students[0], b'{"emotion":"sad","note":"\\udc00"}',
         "application/json", 422, "validation_failed"),
    ]  # fmt: skip
    since = await mark(course.pool)
    for method, url, token, data, content_type, status, code in cases:
        got, text = await course.send(method, url, token, data, content_type)
        assert (got, error_of(got, text)) == (status, code), (data, text[:200])
    assert await writes_since(course.pool, since) == NOTHING
    assert await answers(course, open_checkin) == {}
    logs.assert_clean("regressions")


# --- login forms ------------------------------------------------------------------------------

LOGIN_FIELDS = [
    "iss",
    "login_hint",
    "target_link_uri",
    "client_id",
    "lti_deployment_id",
    "lti_message_hint",
    "canvas_environment",
    "canvas_region",
    "lti_storage_target",
    "extra",
]
LOGIN_CHANGES = st.dictionaries(
    st.sampled_from(LOGIN_FIELDS), st.one_of(st.none(), TEXT), min_size=1, max_size=3
)
FORM_TYPES = st.one_of(
    st.just("application/x-www-form-urlencoded"),
    st.just("application/x-www-form-urlencoded"),
    st.sampled_from(
        [
            "application/x-www-form-urlencoded; charset=bogus",
            "application/x-www-form-urlencoded; charset=utf-16",
            "multipart/form-data",
            "multipart/form-data; boundary=zz",
            "application/json",
            "text/plain",
            "",
        ]
    ),
)


def encode_pairs(params: dict[str, str]) -> bytes:
    """``application/x-www-form-urlencoded`` the way a sloppy client writes it: lone surrogates
    go out as their (invalid) UTF-8 bytes instead of failing on the client."""
    return b"&".join(
        quote(k.encode("utf-8", "surrogatepass"), safe="").encode()
        + b"="
        + quote(v.encode("utf-8", "surrogatepass"), safe="").encode()
        for k, v in params.items()
    )


LAUNCH_TABLES = ("launches", "used_nonces", "outbox", "deployment_sightings")


async def launch_counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {t: int(await pool.fetchval(f"SELECT count(*) FROM {t}")) for t in LAUNCH_TABLES}


@FUZZ
@given(
    changes=LOGIN_CHANGES,
    method=st.sampled_from(["GET", "POST", "POST"]),
    content_type=FORM_TYPES,
    raw=st.one_of(st.none(), RAW),
)
async def test_login_form_fuzz(
    course: Course,
    logs: LogWatch,
    figures: dict[str, Figures],
    changes: dict[str, str | None],
    method: str,
    content_type: str,
    raw: bytes | None,
) -> None:
    fig = figure(figures, "login_form_fields")
    timer = Timer()
    params = {
        "iss": course.platform.issuer,
        "login_hint": "fuzz-user",
        "target_link_uri": f"{course.stack.url}/app",
        "client_id": course.client.client_id,
        "lti_deployment_id": course.client.deployment_id,
    }
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    body = encode_pairs(params) if raw is None or method == "GET" else raw
    # A request line over aiohttp's 8190-byte limit never reaches Attune (test_long_url).
    assume(len(body) < 7000 or method == "POST")
    url = f"{course.stack.url}/lti/login"
    headers = {"Accept": "application/json"}
    before = await launch_counts(course.pool)
    if method == "GET":
        url = f"{url}?{body.decode('latin-1')}"
        body = b""
    elif content_type:
        headers["Content-Type"] = content_type
    async with course.session.request(
        method, url, data=body, headers=headers, allow_redirects=False
    ) as resp:
        status, text, cookies = (
            resp.status,
            await resp.text(),
            resp.headers.getall("Set-Cookie", []),
        )
        location = resp.headers.get("Location", "")
    tally(fig, status, error_of(status, text))
    timer.add_to(fig)
    context = (method, body[:200], content_type, changes)
    if status in (200, 302):
        assert cookies, "a login that goes on must bind the state to the browser"
        if status == 302:
            assert location.startswith(course.platform.auth_url), location
    else:
        await refusal_code(status, text, LAUNCH_CODES, context)
        assert not cookies and not location, context
    assert await launch_counts(course.pool) == before, "a login wrote to the database"
    logs.assert_clean(context)


# --- signed launch tokens: JWT header and claims --------------------------------------------

HEADER_FIELDS = ["alg", "kid", "typ", "cty", "crit", "jku", "jwk", "x5u", "x5c", "b64", "zip"]
CLAIM_FIELDS = [
    "iss",
    "aud",
    "azp",
    "sub",
    "nonce",
    "exp",
    "iat",
    "nbf",
    "name",
    C.VERSION,
    C.DEPLOYMENT_ID,
    C.MESSAGE_TYPE,
    C.TARGET_LINK_URI,
    C.ROLES,
    C.RESOURCE_LINK,
    C.CONTEXT,
    C.CUSTOM,
    C.DEEP_LINKING_SETTINGS,
]
NESTED = [(C.CONTEXT, "id"), (C.CONTEXT, "title"), (C.RESOURCE_LINK, "id"), (C.CUSTOM, "x")]


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(HEADER_FIELDS), JSON, max_size=3),
    claims=st.dictionaries(st.sampled_from(CLAIM_FIELDS), JSON, max_size=3),
    nested=st.dictionaries(st.sampled_from(NESTED), JSON, max_size=2),
)
async def test_launch_jwt_fuzz(
    course: Course,
    logs: LogWatch,
    figures: dict[str, Figures],
    header: dict[str, Any],
    claims: dict[str, Any],
    nested: dict[tuple[str, str], Any],
) -> None:
    """Signed with the platform's real key, so every change reaches the checks behind the
    signature; values include NaN, Infinity, NUL, lone surrogates and 70-bit integers."""
    fig = figure(figures, "launch_jwt_header_and_claims")
    platform, client = course.platform, course.client
    async with browser() as b:
        params = await auth_params(b, course.stack.url, platform, client)
        body = {**platform.claims(client, nonce=params["nonce"]), **claims}
        for (claim, name), value in nested.items():
            if isinstance(body.get(claim), dict):
                body[claim] = {**body[claim], name: value}
        head = {"alg": "RS256", "kid": platform.current.kid, "typ": "JWT", **header}
        token = compact(head, body, platform.current)
        before = await launch_counts(course.pool)
        timer = Timer()
        resp = await b.post(
            f"{course.stack.url}/lti/launch",
            data={"id_token": token, "state": params["state"]},
            headers={"Accept": "application/json"},
        )
        text = await resp.text()
        tally(fig, resp.status, error_of(resp.status, text))
        timer.add_to(fig)
    context = (header, claims, nested)
    after = await launch_counts(course.pool)
    if resp.status == 303:
        for table in ("launches", "used_nonces"):
            assert after[table] == before[table] + 1, (table, before, after)
    else:
        await refusal_code(resp.status, text, LAUNCH_CODES, context)
        if after != before:
            fig.data_lost += 1
        assert after == before, f"a refused launch left rows behind: {context!r}"
        assert token not in text
    logs.assert_clean(context)


@FUZZ
@given(raw=RAW, content_type=FORM_TYPES, with_state=st.booleans())
async def test_launch_body_fuzz(
    course: Course,
    logs: LogWatch,
    figures: dict[str, Figures],
    raw: bytes,
    content_type: str,
    with_state: bool,
) -> None:
    """Launch bodies that are not a form at all, with and without a real login state."""
    fig = figure(figures, "launch_form_bodies")
    async with browser() as b:
        body = raw
        if with_state:
            params = await auth_params(b, course.stack.url, course.platform, course.client)
            body = f"state={params['state']}&id_token=".encode() + raw
        before = await launch_counts(course.pool)
        timer = Timer()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        resp = await b.post(f"{course.stack.url}/lti/launch", data=body, headers=headers)
        text = await resp.text()
        tally(fig, resp.status, error_of(resp.status, text))
        timer.add_to(fig)
    context = (raw[:200], content_type, with_state)
    await refusal_code(resp.status, text, LAUNCH_CODES, context)
    assert await launch_counts(course.pool) == before
    logs.assert_clean(context)


async def test_form_regressions(course: Course, logs: LogWatch) -> None:
    """Bodies that answered 500 before ``shared.forms.read_form``: now 400 form_invalid."""
    url = course.stack.url
    cases = [
        ("/lti/login", "application/x-www-form-urlencoded; charset=bogus", b"iss=x&client_id=1"),
        ("/lti/login", "application/x-www-form-urlencoded", b"iss=x\xff&client_id=1"),
        ("/lti/login", "multipart/form-data", b"garbage"),
        ("/lti/login", "multipart/form-data; boundary=b", b"--b\r\n\r\nx\r\n--b--\r\n"),
        ("/lti/launch", "application/x-www-form-urlencoded", b"state=x\xff"),
        ("/lti/launch", "multipart/form-data", b"garbage"),
        ("/lti/launch", "application/x-www-form-urlencoded; charset=bogus", b"state=x"),
    ]
    for path, content_type, body in cases:
        async with course.session.post(
            url + path,
            data=body,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        ) as resp:
            assert resp.status == 400, (path, content_type, await resp.text())
            assert (await resp.json())["error"]["code"] == "form_invalid"
    logs.assert_clean("form regressions")


# --- dynamic registration documents ---------------------------------------------------------

DROP = "<drop>"  # a sentinel: leave the key out
ACCOUNT_NAME = "https://canvas.instructure.com/lti/account_name"
CANVAS_PRIVACY = "https://canvas.instructure.com/lti/privacy_level"


@dataclass
class FuzzPlatform(RegistrationPlatform):
    """A fake Moodle or Canvas whose configuration and registration answers the test sets."""

    config_body: bytes | None = None
    reply: Callable[[dict[str, Any]], tuple[int, bytes]] | None = None

    async def _configuration(self, request: web.Request) -> web.StreamResponse:
        if self.config_body is None:
            return await super()._configuration(request)
        self.config_requests += 1
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        return web.Response(body=self.config_body, content_type="application/json")

    async def _register(self, request: web.Request) -> web.Response:
        if self.reply is None:
            return await super()._register(request)
        body = await request.json()
        self.registrations.append(body)
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        status, answer = self.reply(body)
        return web.Response(status=status, body=answer, content_type="application/json")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registration(
    infra: Infra, module_pool: asyncpg.Pool, logs: LogWatch
) -> AsyncIterator[str]:
    runner, url = await serve_app(registration_app(infra.settings(http_timeout_s=1.0, **NO_LIMITS)))
    try:
        yield url
    finally:
        await outbox_settled(module_pool)
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lms_pair() -> AsyncIterator[dict[str, FuzzPlatform]]:
    platforms = {f: FuzzPlatform(f) for f in ("moodle", "canvas")}
    for p in platforms.values():
        await p.start()
    try:
        yield platforms
    finally:
        for p in platforms.values():
            await p.stop()


@dataclass(frozen=True)
class RegistrationState:
    platforms: int
    audit: int
    events: int


async def registration_state(pool: asyncpg.Pool) -> RegistrationState:
    return RegistrationState(
        int(await pool.fetchval("SELECT count(*) FROM platforms")),
        int(await pool.fetchval("SELECT count(*) FROM registration_audit")),
        # A change's event; its state (attune.registration-state.v1) goes with it.
        int(
            await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topics.REGISTRATION)
        ),
    )


async def register_once(
    url: str,
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    platform: FuzzPlatform,
    code: str,
) -> tuple[int, str, str | None, bool]:
    """The whole dynamic registration as the LMS and its admin drive it: open the install
    page, submit it with a fresh install code. Returns (status, body, code, install code used)."""
    platform.new_token()
    resp = await session.get(
        f"{url}/lti/register",
        params=platform.start_params(),
        headers={"Accept": "application/json"},
    )
    status, text = resp.status, await resp.text()
    if status == 200:
        resp = await submit_install(
            session,
            url,
            form_value(text),
            placements=["course_navigation"] if platform.flavour == "canvas" else [],
            credential=("install_code", code),
            json_errors=True,
        )
        status, text = resp.status, await resp.text()
    used = await pool.fetchval(
        "SELECT used_at IS NOT NULL FROM install_codes WHERE code_hash = sha256($1::text::bytea)",
        code,
    )
    return status, text, error_of(status, text), bool(used)


# A designed answer to an unreachable or failing platform (the tool's upstream): 502.
UPSTREAM_CODES = frozenset(
    {"openid_configuration_unreachable", "registration_endpoint_unreachable"}
)


async def check_registration(
    fig: Figures,
    logs: LogWatch,
    pool: asyncpg.Pool,
    before: RegistrationState,
    outcome: tuple[int, str, str | None, bool],
    context: object,
) -> None:
    status, text, code, used = outcome
    tally(fig, status if code not in UPSTREAM_CODES else 400, code)
    after = await registration_state(pool)
    if status == 200:
        assert used, "a stored registration must use up its install code"
        assert after == RegistrationState(before.platforms + 1, before.audit + 1, before.events + 1)
    else:
        if status == 502:
            assert code in UPSTREAM_CODES, (code, context)
        else:
            await refusal_code(status, text, REGISTRATION_CODES, context)
        audited = int(code in AUDITED_REFUSALS)
        expected = RegistrationState(before.platforms, before.audit + audited, before.events)
        if after != expected or used:
            fig.data_lost += 1
        assert after == expected, f"a refused registration stored something: {context!r}"
        assert not used, "a refused registration used up the install code"
    logs.assert_clean(context)


def mutate(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# Drawn as a marker and built in the test: a 300 kB argument would make Hypothesis print it.
HUGE = b"<huge>"


def huge(raw: bytes) -> bytes:
    """Over the 256 KiB bound on what Attune reads from a platform."""
    return b'{"padding": "' + b"x" * 300_000 + b'"}' if raw == HUGE else raw


CONFIG_KEYS = [
    "issuer",
    "authorization_endpoint",
    "registration_endpoint",
    "jwks_uri",
    "token_endpoint",
    "response_types_supported",
    "id_token_signing_alg_values_supported",
    "token_endpoint_auth_methods_supported",
    "scopes_supported",
    PLATFORM_CONFIG,
]
PLATFORM_KEYS = ["product_family_code", "version", "messages_supported", ACCOUNT_NAME, "variables"]
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"type": st.one_of(st.just("LtiDeepLinkingRequest"), TEXT)},
        optional={"placements": st.one_of(st.lists(TEXT, max_size=3), JSON)},
    ),
    max_size=3,
)
PLATFORM_VALUES = st.one_of(st.just(DROP), TEXT, JSON, MESSAGES)
# A path suffix keeps the issuer or an endpoint on the platform's own origin, so the nasty
# text gets past the origin check and on to storage and the install page.
SUFFIX = st.tuples(st.sampled_from(["/", "/x?", "/#"]), TEXT).map("".join)


@FUZZ
@given(
    flavour=st.sampled_from(["moodle", "canvas"]),
    changes=st.dictionaries(
        st.sampled_from(CONFIG_KEYS), st.one_of(st.just(DROP), JSON), max_size=2
    ),
    suffixes=st.dictionaries(st.sampled_from(CONFIG_KEYS[:5]), SUFFIX, max_size=2),
    platform_changes=st.dictionaries(st.sampled_from(PLATFORM_KEYS), PLATFORM_VALUES, max_size=3),
    raw=st.one_of(st.none(), st.none(), st.none(), RAW, st.just(HUGE)),
)
async def test_registration_configuration_fuzz(
    registration: str,
    lms_pair: dict[str, FuzzPlatform],
    course: Course,
    logs: LogWatch,
    figures: dict[str, Figures],
    flavour: str,
    changes: dict[str, Any],
    suffixes: dict[str, str],
    platform_changes: dict[str, Any],
    raw: bytes | None,
) -> None:
    fig = figure(figures, "registration_openid_configuration")
    platform = lms_pair[flavour]
    doc = platform.configuration()
    for key, suffix in suffixes.items():
        doc[key] = doc[key] + suffix
    doc = mutate(doc, changes)
    if isinstance(doc.get(PLATFORM_CONFIG), dict):
        doc[PLATFORM_CONFIG] = mutate(doc[PLATFORM_CONFIG], platform_changes)
    platform.config_body = dumps(doc) if raw is None else huge(raw)
    platform.reply = None
    code, _ = await create_install_code(course.pool, label="fuzz", ttl_s=3600)
    before = await registration_state(course.pool)
    timer = Timer()
    outcome = await register_once(registration, course.pool, course.session, platform, code)
    timer.add_to(fig)
    context = (flavour, changes, suffixes, platform_changes, raw and raw[:100])
    await check_registration(fig, logs, course.pool, before, outcome, context)


ANSWER_KEYS = ["client_id", "scope", TOOL_CONFIG, "redirect_uris", "client_name", "extra"]
TOOL_KEYS = ["deployment_id", "claims", "messages", CANVAS_PRIVACY, "domain", "target_link_uri"]


@FUZZ
@given(
    flavour=st.sampled_from(["moodle", "canvas"]),
    status=st.sampled_from([200, 200, 200, 201, 400, 401, 422, 500, 503]),
    changes=st.dictionaries(
        st.sampled_from(ANSWER_KEYS), st.one_of(st.just(DROP), JSON), max_size=2
    ),
    tool_changes=st.dictionaries(st.sampled_from(TOOL_KEYS), PLATFORM_VALUES, max_size=3),
    raw=st.one_of(st.none(), st.none(), st.none(), RAW, st.just(HUGE)),
)
async def test_registration_response_fuzz(
    registration: str,
    lms_pair: dict[str, FuzzPlatform],
    course: Course,
    logs: LogWatch,
    figures: dict[str, Figures],
    flavour: str,
    status: int,
    changes: dict[str, Any],
    tool_changes: dict[str, Any],
    raw: bytes | None,
) -> None:
    fig = figure(figures, "registration_response")
    platform = lms_pair[flavour]
    platform.config_body = None

    def reply(body: dict[str, Any]) -> tuple[int, bytes]:
        granted = mutate({**body, "client_id": f"fuzz-{time.monotonic_ns()}"}, changes)
        tool = granted.get(TOOL_CONFIG)
        if isinstance(tool, dict):
            granted[TOOL_CONFIG] = mutate({**tool, "deployment_id": "7"}, tool_changes)
        return status, dumps(granted) if raw is None else huge(raw)

    platform.reply = reply
    code, _ = await create_install_code(course.pool, label="fuzz", ttl_s=3600)
    before = await registration_state(course.pool)
    timer = Timer()
    outcome = await register_once(registration, course.pool, course.session, platform, code)
    timer.add_to(fig)
    context = (flavour, status, changes, tool_changes, raw and raw[:100])
    await check_registration(fig, logs, course.pool, before, outcome, context)


async def test_registration_regressions(
    registration: str, lms_pair: dict[str, FuzzPlatform], course: Course, logs: LogWatch
) -> None:
    """Documents that answered 500 before ``shared.storable``: NUL or a lone surrogate in a
    configuration or a registration answer reached Postgres (or the install page's encoder),
    and JSON nested past the recursion limit escaped ``json.loads`` as ``RecursionError``."""
    moodle = lms_pair["moodle"]
    configs = [
        {PLATFORM_CONFIG: {"product_family_code": "moodle", ACCOUNT_NAME: "Uni\x00"}},
        {PLATFORM_CONFIG: {"product_family_code": "moodle", "version": "4.\ud800"}},
        {"issuer": moodle.issuer + "/\x00"},
    ]
    for change in configs:
        moodle.reply, moodle.config_body = None, dumps({**moodle.configuration(), **change})
        code, _ = await create_install_code(course.pool, label="fuzz", ttl_s=3600)
        before = await registration_state(course.pool)
        status, text, err, used = await register_once(
            registration, course.pool, course.session, moodle, code
        )
        assert (status, err, used) == (400, "openid_configuration_malformed", False), text
        assert await registration_state(course.pool) == before
    moodle.config_body = b"[" * 100_000
    code, _ = await create_install_code(course.pool, label="fuzz", ttl_s=3600)
    status, text, err, _ = await register_once(
        registration, course.pool, course.session, moodle, code
    )
    assert (status, err) == (400, "openid_configuration_malformed"), text
    moodle.config_body = None
    for answer in (
        b'{"client_id": "c1", "scope": "a\\u0000"}',
        b'{"client_id": "c2", "x": "\\udc00"}',
    ):
        moodle.reply = lambda body, answer=answer: (200, answer)  # type: ignore[misc]
        code, _ = await create_install_code(course.pool, label="fuzz", ttl_s=3600)
        before = await registration_state(course.pool)
        status, text, err, used = await register_once(
            registration, course.pool, course.session, moodle, code
        )
        assert (status, err, used) == (400, "registration_response_invalid", False), text
        assert await registration_state(course.pool) == before
    moodle.reply = None
    logs.assert_clean("registration regressions")


# --- bodies far over the limits -------------------------------------------------------------

OVERSIZED_MB = 32
CHUNK = b"x" * 65536


async def chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield CHUNK
        sent += len(CHUNK)


async def test_oversized_bodies_get_413_fast_with_bounded_memory(
    course: Course, registration: str, logs: LogWatch, figures: dict[str, Figures]
) -> None:
    """32 MiB bodies, streamed (chunked), to the gateway (1 MiB limit) and straight to a
    service (64 KiB limit): each answered 413 ``request_too_large`` within 2 s, and the
    interpreter's traced allocations grow by far less than one body (nothing buffers it)."""
    fig = figure(figures, "oversized_bodies", note=f"{OVERSIZED_MB} MiB streamed per request")
    admin = await create_token(course.pool, f"fuzz-{time.monotonic_ns()}")
    targets = [
        (f"{course.api}", {"Authorization": f"Bearer {course.teacher}"}, "application/json"),
        (f"{course.stack.url}/lti/launch", {}, "application/x-www-form-urlencoded"),
        (f"{course.stack.url}/lti/login", {}, "application/x-www-form-urlencoded"),
        (f"{registration}/lti/register", {}, "application/x-www-form-urlencoded"),
        (
            f"{registration}/api/admin/platforms",
            {"Authorization": f"Bearer {admin}"},
            "application/json",
        ),
    ]
    before = await launch_counts(course.pool)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for url, extra, content_type in targets:
            for _ in range(2):
                headers = {**extra, "Content-Type": content_type, "Accept": "application/json"}
                started = time.monotonic()
                try:
                    async with course.session.post(
                        url, data=chunks(OVERSIZED_MB << 20), headers=headers
                    ) as resp:
                        status, text = resp.status, await resp.text()
                except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                    status, text = 0, ""
                elapsed = time.monotonic() - started
                fig.seconds = round(fig.seconds + elapsed, 3)
                if status == 0:
                    fig.requests += 1
                    fig.count("connection")
                    continue
                tally(fig, status, error_of(status, text))
                assert elapsed < 2.0, (url, elapsed)
                assert status == 413, (url, status, text[:200])
                assert error_of(status, text) == "request_too_large", text[:200]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth_mb = (peak - base) / 2**20
    fig.note += f"; traced peak growth {growth_mb:.1f} MiB"
    assert growth_mb < 8, f"{growth_mb:.1f} MiB allocated while refusing oversized bodies"
    assert fig.errors["request_too_large"] >= len(targets), fig.errors
    assert await launch_counts(course.pool) == before
    logs.assert_clean("oversized")


async def test_long_url(course: Course, logs: LogWatch) -> None:
    """A request line over aiohttp's 8190-byte limit is refused by the HTTP parser (400, plain
    text: no Attune code runs) at once, and is logged as a client's error, not as an
    unhandled exception with a traceback (``shared.logs``)."""
    for path in ("/lti/login", "/api/checkins/checkins"):
        started = time.monotonic()
        async with course.session.get(
            f"{course.stack.url}{path}?login_hint={'u' * 10_000}",
            headers={"Accept": "application/json"},
        ) as resp:
            assert resp.status == 400, await resp.text()
        assert time.monotonic() - started < 1.0
    logs.assert_clean("long url")
    assert logs.lines > 0


# --- every route of every service, from the route tables ----------------------------------------

# Read from the services' own routers at collection time: a new route is a new test here.
ROUTES = service_routes()
ROUTE_FUZZ = hsettings(FUZZ, max_examples=max(5, FUZZ.max_examples // 10))
VALID = "<valid>"  # drawn as a marker; the test makes a fresh valid value for the parameter
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "checkins": ("anonymous", "teacher", "student"),
    "registration": ("anonymous", "admin"),
}


@dataclass(repr=False)
class RouteTarget:
    """The five services, each its own app on loopback, and the credentials they accept."""

    urls: dict[str, str]
    headers: dict[str, dict[str, str]]
    pool: asyncpg.Pool
    course: Course

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return f"RouteTarget({self.urls})"

    async def valid(self, route: Route, param: str) -> str:
        """A fresh value that names something real (so a body reaches its handler)."""
        if param == "checkin_id":
            status, text = await self.course.send(
                "POST",
                f"{self.urls['checkins']}/api/checkins/checkins",
                self.course.teacher,
                dumps({"question": "Fuzz target", "allow_note": True}),
                "application/json",
            )
            assert status == 201, text
            return str(json.loads(text)["id"])
        if param == "platform_id":
            return str(
                await self.pool.fetchval(
                    "INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, product)"
                    " VALUES ($1, 'fuzz', 'https://lms.example/a', 'https://lms.example/j',"
                    " 'generic') RETURNING id",
                    f"https://fuzz-{time.monotonic_ns()}.example",
                )
            )
        if route.static:
            return "does-not-exist.js"
        return "1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def route_target(infra: Infra, course: Course, logs: LogWatch) -> AsyncIterator[RouteTarget]:
    settings = infra.settings(http_timeout_s=1.0, **NO_LIMITS)
    runners: list[web.AppRunner] = []
    urls: dict[str, str] = {}
    admin = await create_token(course.pool, f"fuzz-routes-{time.monotonic_ns()}")
    try:
        for service in SERVICES:
            factory = importlib.import_module(f"services.{service}.app").create_app
            runner, urls[service] = await serve_app(factory(settings))
            runners.append(runner)
        bearer = {
            "anonymous": {},
            "teacher": {"Authorization": f"Bearer {course.teacher}"},
            "student": {"Authorization": f"Bearer {course.students[0]}"},
            "admin": {"Authorization": f"Bearer {admin}"},
        }
        yield RouteTarget(urls, bearer, course.pool, course)
    finally:
        await outbox_settled(course.pool)
        for runner in reversed(runners):
            await runner.cleanup()


@dataclass(frozen=True)
class Written:
    writes: Writes
    audit: int


async def route_state(pool: asyncpg.Pool) -> tuple[Mark, int]:
    return await mark(pool), int(await pool.fetchval("SELECT count(*) FROM registration_audit"))


async def send_route_case(
    target: RouteTarget, fig: Figures, logs: LogWatch, case: Case
) -> tuple[int, str]:
    """Send one generated request and hold the fuzz's promises for it: never a 5xx; a refusal
    is JSON with a stable code; a body not declared JSON to an API route is 415
    ``json_required``; a refusal writes nothing (no event, no audit row, no check-in); nothing
    is logged at error level."""
    headers = {"Accept": "application/json", **target.headers[case.credential]}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    url = URL(target.urls[case.route.service] + case.path, encoded=True)
    since, audit_before = await route_state(target.pool)
    timer = Timer()
    async with target.course.session.request(
        case.method, url, data=case.body, headers=headers, allow_redirects=False
    ) as resp:
        status, text = resp.status, await resp.text()
    code = error_of(status, text)
    tally(fig, status, code)
    timer.add_to(fig)
    context = f"{case} -> {status} {text[:300]!r}"
    assert status < 500, f"5xx for {context}"
    if status >= 400 and case.method != "HEAD":
        assert code is not None and CODE_SHAPE.match(code), f"no stable code: {context}"
    routed = case.method in case.route.methods
    declared = (case.content_type or "").split(";")[0].strip().lower()
    if case.route.is_api and routed and case.body and declared != "application/json":
        # Before any handler runs; only a path no route matches (a parameter outside the
        # route's pattern) is a 404 first.
        expected = {(415, "json_required"), (404, "not_found")}
        assert (status, code) in expected, f"non-JSON body accepted: {context}"
    if status >= 400:
        written = await writes_since(target.pool, since)
        audit_after = await target.pool.fetchval("SELECT count(*) FROM registration_audit")
        if written != NOTHING or audit_after != audit_before:
            fig.data_lost += 1
        assert written == NOTHING, f"a refusal wrote {written}: {context}"
        assert audit_after == audit_before, f"a refusal was audited: {context}"
    logs.assert_clean(context)
    return status, text


async def test_every_route_every_method_every_parameter(
    route_target: RouteTarget, logs: LogWatch, figures: dict[str, Figures]
) -> None:
    """The deterministic matrix (``tests/reliability/routes.py``): every route of every
    service with every method, every credential it accepts, every hostile value of every path
    parameter, and a poisoned JSON body (and the same bytes as text/plain) where a body goes."""
    params = sum(len(r.params) for r in ROUTES)
    fig = figure(
        figures,
        "every_route_matrix",
        note=f"{len(ROUTES)} routes of {len(SERVICES)} services, {params} path parameters, "
        f"{len(METHODS)} methods, {len(HOSTILE_SEGMENTS)} hostile values per parameter",
    )
    for route in ROUTES:
        for case in matrix(route, CREDENTIALS.get(route.service, ("anonymous",))):
            await send_route_case(route_target, fig, logs, case)
    assert fig.requests >= len(ROUTES) * len(METHODS)


@pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])
@ROUTE_FUZZ
@given(data=st.data())
async def test_route_fuzz(
    route_target: RouteTarget,
    logs: LogWatch,
    figures: dict[str, Figures],
    route: Route,
    data: st.DataObject,
) -> None:
    """Generated requests per route: mostly its own methods, path parameters that are valid,
    hostile or any text, any credential it accepts, and for bodies JSON aimed at the fields its
    handlers read (or raw bytes) under any content type."""
    fig = figure(figures, "every_route_generated")
    own = st.sampled_from(sorted(route.methods))
    method = data.draw(st.one_of(own, own, own, st.sampled_from(METHODS)), "method")
    values = {}
    for name in route.params:
        value = data.draw(
            st.one_of(
                st.just(VALID),
                st.sampled_from(HOSTILE_SEGMENTS),
                st.text(min_size=1, max_size=30).map(
                    lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")
                ),
            ),
            name,
        )
        values[name] = await route_target.valid(route, name) if value == VALID else value
    credential = data.draw(
        st.sampled_from(CREDENTIALS.get(route.service, ("anonymous",))), "credential"
    )
    body: bytes | None = None
    content_type: str | None = None
    if method in BODY_METHODS:
        fields = st.sampled_from(route.fields) if route.fields else TEXT
        aimed = st.dictionaries(st.one_of(fields, TEXT), JSON, max_size=5).map(dumps)
        body = data.draw(st.one_of(aimed, aimed, JSON.map(dumps), RAW), "body")
        content_type = data.draw(CONTENT_TYPES, "content_type") or None
    await send_route_case(
        route_target, fig, logs, Case(route, method, values, credential, body, content_type)
    )


async def test_a_new_route_is_picked_up_by_the_route_fuzz() -> None:
    """The route fuzz reads the routers, not a list: a route added to a service (here a
    hypothetical ``PUT /api/checkins/widgets/{widget_id}``) is in its table with its method
    and parameter, and the matrix sends it every method and every hostile value."""
    app = importlib.import_module("services.checkins.app").create_app(placeholder_settings())

    async def widget(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_put("/api/checkins/widgets/{widget_id}", widget)
    [new] = [r for r in route_table(app, "checkins") if "widgets" in r.path]
    assert new.params == ("widget_id",) and new.methods == {"PUT"} and new.is_api
    cases = list(matrix(new, CREDENTIALS["checkins"]))
    assert {c.method for c in cases} == set(METHODS)
    assert {c.params["widget_id"] for c in cases if c.method == "PUT"} == set(HOSTILE_SEGMENTS)
    assert {c.credential for c in cases if c.method == "PUT"} == set(CREDENTIALS["checkins"])
    bodies = {c.content_type for c in cases if c.method == "PUT"}
    assert bodies == {"application/json", "text/plain"}
    assert {r.id for r in service_routes()} == {r.id for r in ROUTES}


async def test_the_route_fuzz_catches_a_new_route_that_answers_500(
    infra: Infra, route_target: RouteTarget, logs: LogWatch
) -> None:
    """Not vacuous: a new route with the bug this file found in ``_checkin_id``
    (``str.isdigit`` then ``int``) fails the generated matrix on its first ``²``."""
    app = base_app(infra.settings(), service="checkins")

    async def widget(request: web.Request) -> web.Response:
        raw = request.match_info["widget_id"]
        return web.json_response({"id": int(raw) if raw.isdigit() else 0})

    app.router.add_get("/api/checkins/widgets/{widget_id}", widget)
    runner, url = await serve_app(app)
    probe = RouteTarget({**route_target.urls, "checkins": url}, route_target.headers,
                        route_target.pool, route_target.course)  # fmt: skip
    fig = Figures(scenario="probe", suite="fuzz")
    try:
        [new] = [r for r in route_table(app, "checkins") if "widgets" in r.path]
        with pytest.raises(AssertionError, match="5xx for"):
            for case in matrix(new, ("anonymous",)):
                await send_route_case(probe, fig, logs, case)
    finally:
        logs.found.clear()  # the 500's unhandled_error line is this test's point
        await runner.cleanup()
    assert fig.server_errors == 1


async def test_route_regressions(route_target: RouteTarget, logs: LogWatch) -> None:
    """The inputs the outside probe found answering 500 (or accepted): each now refused with
    its stable code and nothing written."""
    checkins = f"{route_target.urls['checkins']}/api/checkins/checkins"
    registration = f"{route_target.urls['registration']}/api/admin"
    teacher, student = route_target.headers["teacher"], route_target.headers["student"]
    admin = route_target.headers["admin"]
    platform = await route_target.valid(ROUTES[0], "platform_id")
    json_type = {"Content-Type": "application/json", "Accept": "application/json"}
    cases: list[tuple[str, str, dict[str, str], bytes | None, int, str]] = [
        ("GET", f"{checkins}/%C2%B2", teacher, None, 404, "checkin_not_found"),
        ("PATCH", f"{checkins}/%C2%B2", teacher, b"{}", 404, "checkin_not_found"),
        ("DELETE", f"{checkins}/%C2%B2", teacher, None, 404, "checkin_not_found"),
        ("POST", f"{checkins}/%C2%B2/close", teacher, None, 404, "checkin_not_found"),
        ("PUT", f"{checkins}/%C2%B2/response", student, b'{"emotion":"calm"}', 404,
         "checkin_not_found"),
        ("POST", f"{registration}/platforms/{platform}/deployments/approve", admin,
         b'{"deployment_id": "\\u0000"}', 400, "validation_failed"),
        ("POST", f"{registration}/platforms/{platform}/deployments/disable", admin,
         b'{"deployment_id": "d\\u0007"}', 400, "validation_failed"),
        ("POST", f"{registration}/platforms/{platform}/deployments/approve", admin,
         b'{"deployment_id": "d\\u00e9"}', 400, "validation_failed"),
        ("GET", f"{registration}/audit?limit=%C2%B2", admin, None, 400, "bad_json"),
    ]  # fmt: skip
    since, audit = await route_state(route_target.pool)
    for method, url, auth, body, status, code in cases:
        async with route_target.course.session.request(
            method, URL(url, encoded=True), data=body, headers={**json_type, **auth}
        ) as resp:
            text = await resp.text()
            assert (resp.status, error_of(resp.status, text)) == (status, code), (url, text)
    # A body that is not JSON, to an admin endpoint that used to take anything: 415.
    async with route_target.course.session.post(
        f"{registration}/install-codes",
        data=b'{"label": "x"}',
        headers={**admin, "Content-Type": "text/plain", "Accept": "application/json"},
    ) as resp:
        assert resp.status == 415, await resp.text()
        assert error_of(resp.status, await resp.text()) == "json_required"
    assert await writes_since(route_target.pool, since) == NOTHING
    assert await route_target.pool.fetchval("SELECT count(*) FROM registration_audit") == audit
    assert not await route_target.pool.fetchval(
        "SELECT count(*) FROM deployments WHERE platform_id = $1", int(platform)
    )
    logs.assert_clean("route regressions")
