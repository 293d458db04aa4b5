"""Load drivers for the fault and soak scenarios: complete LTI launches and check-in answers
against the real stack (``tests.lti_support.start_stack``), plus the audits that turn what the
clients were told into figures: what was acknowledged, what is in Postgres, what the outbox
holds and what a real consumer applied.

Every launch uses a fresh subject (``login_hint``), so a launch record, its nonce (the fake
platform keeps every auth request) and its event can be matched one to one. Every answer is a
new (check-in, learner) pair with a unique note, so an acknowledged answer, its row and its
``checkin.answered`` event can be matched too. Requests that failed are never retried: their
outcome is unknown to the client, so they may have committed, but only whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.events import topics
from shared.events.consumer import EventConsumer
from shared.events.envelope import Event
from shared.events.relay import RELAY_LOCK_ID
from shared.kafka import ensure_topics
from shared.lti.launch_token import LaunchTokens
from shared.metrics import Metrics
from shared.migrate import upgrade
from shared.settings import Settings
from shared.signing import parse_secrets
from tests.conftest import Infra
from tests.fakes.platform import Client, FakePlatform, parse_autopost
from tests.integration.test_checkins import launch_token
from tests.lti_support import Browser, LtiStack, login, start_stack
from tests.reliability.record import Figures, record

EVENT_TOPICS = (topics.LAUNCH, topics.CHECKIN)
EMOTION = "calm"
# Every simulated user comes from 127.0.0.1: the per-address limit (one school behind one NAT)
# must not turn a fast machine's load into 429s.
LOAD_SETTINGS: dict[str, Any] = {"rate_limit_ip_per_s": 100_000.0, "rate_limit_ip_burst": 100_000.0}
LOAD_PREFIX = "load-"  # subjects of the load's launches (the set-up launches are not counted)
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
_HTML_CODE = re.compile(r"Error code <code>([a-z0-9_]+)</code>")


@dataclass
class Tally:
    """What the clients saw."""

    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    launches: dict[str, str] = field(default_factory=dict)  # subject -> launch id (acked)
    launch_attempts: int = 0
    checkins: list[int] = field(default_factory=list)  # created (acked)
    answers: dict[tuple[int, str], str] = field(default_factory=dict)  # pair -> note (acked)
    answers_failed: set[tuple[int, str]] = field(default_factory=set)
    # (monotonic time, kind) of each success, to tell what happened after a recovery.
    successes: list[tuple[float, str]] = field(default_factory=list)

    def ok(self, kind: str) -> None:
        self.requests += 1
        self.successes.append((time.monotonic(), kind))

    def failed(self, status: int | None, code: str) -> None:
        self.requests += 1
        self.errors[code] += 1
        if status is not None and status >= 500:
            self.server_errors += 1

    def successes_since(self, moment: float, kind: str) -> int:
        return sum(1 for t, k in self.successes if t >= moment and k == kind)


def code_of(status: int, content_type: str, body: str) -> str:
    """The stable error code of an error response (JSON or the HTML error page)."""
    if "json" in content_type:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(body)["error"]["code"])
    match = _HTML_CODE.search(body)
    return match.group(1) if match else f"http_{status}"


@dataclass
class Course:
    """One course on one fake platform, with a teacher and learners who launched into it."""

    stack: LtiStack
    platform: FakePlatform
    client: Client
    platform_id: int
    teacher: str  # launch token
    learners: dict[str, str]  # subject -> launch token


async def open_course(stack: LtiStack, platform: FakePlatform, learners: int) -> Course:
    """Register a platform and launch a teacher and ``learners`` students (before any fault)."""
    client = platform.add_client(stack.redirect_uris())
    platform_id = await stack.register(platform, client)
    teacher = await launch_token(stack.url, platform, client, "teacher-1", teacher=True)
    tokens = {}
    for n in range(learners):
        sub = f"learner-{n}"
        tokens[sub] = await launch_token(stack.url, platform, client, sub)
    return Course(stack, platform, client, platform_id, teacher, tokens)


class Api:
    """The check-ins API as the app's JavaScript calls it, over one shared HTTP session."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self._session = session
        self._base = base
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, str, str]:
        async with self._session.request(
            method,
            f"{self._base}/api/checkins{path}",
            json=body,
            headers=self._headers,
            timeout=REQUEST_TIMEOUT,
        ) as resp:
            return resp.status, resp.content_type, await resp.text()


class Load:
    """Sustained launches and answers until ``stop()``; every outcome goes into ``tally``.

    ``launch_workers`` browsers launch back to back (a new subject each time); each learner of
    the course answers check-in after check-in, the teacher creating them on demand.
    ``pause_s`` is think time between a worker's requests (0: as fast as the stack answers).
    """

    def __init__(
        self,
        course: Course,
        settings: Settings,
        *,
        launch_workers: int = 2,
        pause_s: float = 0.0,
    ) -> None:
        self.course = course
        self.tally = Tally()
        self._tokens = LaunchTokens(parse_secrets(settings.secret_keys), ttl_s=60)
        self._launch_workers = launch_workers
        self._pause_s = pause_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._supply_lock = asyncio.Lock()
        self.started = 0.0

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def start(self) -> None:
        self.started = time.monotonic()
        self._session = aiohttp.ClientSession()
        url = self.course.stack.url
        teacher = Api(self._session, url, self.course.teacher)
        for n in range(self._launch_workers):
            self._tasks.append(asyncio.create_task(self._launches(f"w{n}")))
        for sub, token in self.course.learners.items():
            api = Api(self._session, url, token)
            self._tasks.append(asyncio.create_task(self._answers(sub, api, teacher)))

    async def stop(self) -> float:
        """Stop the drivers (in-flight requests finish); returns the seconds of load."""
        self._stop.set()
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()
        return time.monotonic() - self.started

    async def _breathe(self) -> None:
        if self._pause_s:
            await asyncio.sleep(self._pause_s)

    # --- launches ---------------------------------------------------------------------------

    async def _launches(self, worker: str) -> None:
        async with Browser() as browser:
            n = 0
            while not self._stop.is_set():
                n += 1
                browser.cookies.clear()
                await self._one_launch(browser, f"{LOAD_PREFIX}{worker}-{n}-{uuid.uuid4().hex[:6]}")
                await self._breathe()

    async def _one_launch(self, browser: Browser, sub: str) -> None:
        c = self.course
        tally = self.tally
        tally.launch_attempts += 1
        try:
            resp = await asyncio.wait_for(
                login(browser, c.stack.url, c.platform, c.client, login_hint=sub), 15
            )
            if resp.status != 302:
                tally.failed(
                    resp.status, code_of(resp.status, resp.content_type, await resp.text())
                )
                await asyncio.sleep(0.1)
                return
            tally.ok("login")
            # The platform's own auth endpoint: not Attune, so not counted as a request.
            auth = await asyncio.wait_for(browser.get(resp.headers["Location"]), 15)
            assert auth.status == 200, await auth.text()
            action, fields = parse_autopost(await auth.text())
            resp = await asyncio.wait_for(
                browser.post(action, data=fields, headers={"Accept": "application/json"}), 15
            )
        except (aiohttp.ClientError, TimeoutError):
            tally.failed(None, "connection")
            await asyncio.sleep(0.1)
            return
        if resp.status != 303:
            tally.failed(resp.status, code_of(resp.status, resp.content_type, await resp.text()))
            await asyncio.sleep(0.1)
            return
        token = resp.headers["Location"].split("#lt=", 1)[1]
        tally.launches[sub] = self._tokens.read(token).launch_id
        tally.ok("launch")

    # --- answers ----------------------------------------------------------------------------

    async def _checkin(self, index: int, teacher: Api) -> int | None:
        """The id of the ``index``-th check-in of the load, created by the teacher on demand."""
        tally = self.tally
        async with self._supply_lock:
            while len(tally.checkins) <= index:
                body = {"question": f"Load {len(tally.checkins)}", "allow_note": True}
                try:
                    status, ctype, text = await teacher.call("POST", "/checkins", body)
                except (aiohttp.ClientError, TimeoutError):
                    tally.failed(None, "connection")
                    return None
                if status != 201:
                    tally.failed(status, code_of(status, ctype, text))
                    return None
                tally.checkins.append(int(json.loads(text)["id"]))
                tally.ok("create")
            return tally.checkins[index]

    async def _answers(self, sub: str, api: Api, teacher: Api) -> None:
        tally = self.tally
        index = 0
        while not self._stop.is_set():
            checkin_id = await self._checkin(index, teacher)
            if checkin_id is None:
                await asyncio.sleep(0.2)
                continue
            index += 1
            pair = (checkin_id, sub)
            note = uuid.uuid4().hex
            try:
                status, ctype, text = await api.call(
                    "PUT", f"/checkins/{checkin_id}/response", {"emotion": EMOTION, "note": note}
                )
            except (aiohttp.ClientError, TimeoutError):
                tally.failed(None, "connection")
                tally.answers_failed.add(pair)
                await asyncio.sleep(0.1)
                continue
            if status == 201 and json.loads(text)["note"] == note:
                tally.answers[pair] = note
                tally.ok("answer")
            else:
                tally.failed(status, code_of(status, ctype, text))
                tally.answers_failed.add(pair)
                await asyncio.sleep(0.1)
            await self._breathe()


# --- audits -----------------------------------------------------------------------------------


@dataclass
class Audit:
    """What Postgres holds against what the clients were told."""

    launches_acked: int
    launches_stored: int  # of the load's subjects
    answers_acked: int
    answers_stored: int
    missing: list[str] = field(default_factory=list)  # acknowledged, not (fully) stored
    half_written: list[str] = field(default_factory=list)  # stored without its other half

    @property
    def data_lost(self) -> int:
        return len(self.missing) + len(self.half_written)


_EVENTS = """
SELECT event_type, convert_from(value, 'UTF8')::jsonb AS body FROM outbox
WHERE topic = any($1::text[])
"""


async def audit(pool: asyncpg.Pool, tally: Tally, course: Course) -> Audit:
    """Compare acknowledgements with launches, nonces, answers, check-ins and outbox events
    (of this course's platform only: the session database holds other tests' rows)."""
    pid = course.platform_id
    events = await pool.fetch(_EVENTS, list(EVENT_TOPICS))
    bodies = [
        (r["event_type"], b)
        for r in events
        if (b := json.loads(r["body"]))["data"].get("platform_id", pid) == pid
        and b["data"].get("platform", {}).get("id", pid) == pid
    ]
    launch_events = Counter(b["data"]["launch_id"] for t, b in bodies if t == "launch.completed")
    answer_events = Counter(
        (b["data"]["checkin_id"], b["data"]["respondent"])
        for t, b in bodies
        if t == "checkin.answered"
    )
    created_events = Counter(b["data"]["checkin_id"] for t, b in bodies if t == "checkin.created")
    launches = {
        str(r["id"]): r["subject"]
        for r in await pool.fetch("SELECT id, subject FROM launches WHERE platform_id = $1", pid)
    }
    nonce_of = {a["login_hint"]: a["nonce"] for a in course.platform.auth_requests}
    nonces = {
        r["nonce"]
        for r in await pool.fetch(
            "SELECT nonce FROM used_nonces WHERE nonce = any($1::text[])", list(nonce_of.values())
        )
    }
    answers = {
        (r["checkin_id"], r["respondent"]): r["note"]
        for r in await pool.fetch(
            "SELECT r.checkin_id, r.respondent, r.note FROM checkin_responses r"
            " JOIN checkins c ON c.id = r.checkin_id WHERE c.platform_id = $1",
            pid,
        )
    }
    checkins = {
        r["id"] for r in await pool.fetch("SELECT id FROM checkins WHERE platform_id = $1", pid)
    }
    result = Audit(
        launches_acked=len(tally.launches),
        launches_stored=sum(1 for sub in launches.values() if sub.startswith(LOAD_PREFIX)),
        answers_acked=len(tally.answers),
        answers_stored=len(answers),
    )

    for sub, launch_id in tally.launches.items():
        if launches.get(launch_id) != sub:
            result.missing.append(f"launch {launch_id} of {sub}")
    for launch_id, sub in launches.items():
        if launch_events[launch_id] != 1:
            result.half_written.append(f"launch {launch_id}: {launch_events[launch_id]} events")
        if nonce_of.get(sub) not in nonces:
            result.half_written.append(f"launch {launch_id}: nonce not used up")
    for launch_id in launch_events:
        if launch_id not in launches:
            result.half_written.append(f"launch event {launch_id} without a launch record")
    # A nonce is used up only together with its launch record (one statement).
    if len(nonces) != len(launches):
        result.half_written.append(f"{len(nonces)} used nonces for {len(launches)} launches")

    for pair, note in tally.answers.items():
        if answers.get(pair) != note:
            result.missing.append(f"answer {pair}")
    for pair in answers:
        if answer_events[pair] != 1:
            result.half_written.append(f"answer {pair}: {answer_events[pair]} events")
    for pair in answer_events:
        if pair not in answers:
            result.half_written.append(f"answer event {pair} without an answer")

    for checkin_id in tally.checkins:
        if checkin_id not in checkins:
            result.missing.append(f"check-in {checkin_id}")
    for checkin_id in checkins:
        if created_events[checkin_id] != 1:
            result.half_written.append(
                f"check-in {checkin_id}: {created_events[checkin_id]} events"
            )
    return result


# --- events: a real work consumer counting its effects --------------------------------------


class Effects:
    """A consumer's effects in Postgres: one row per application of an event, deliberately
    without a unique key, so a duplicate effect would be a second row."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.table = f"effects_{uuid.uuid4().hex[:8]}"
        self.name = f"reliability-{self.table}"

    async def create(self) -> None:
        await self.pool.execute(
            f"CREATE TABLE {self.table} (event_id uuid NOT NULL, event_type text NOT NULL)"
        )

    async def drop(self) -> None:
        await self.pool.execute(f"DROP TABLE IF EXISTS {self.table}")

    def consumer(self, settings: Settings | None = None) -> EventConsumer:
        """The real work consumer (group, dedupe in ``consumed_events``, commit after the DB)."""

        async def apply(conn: asyncpg.Connection, event: Event) -> None:
            await conn.execute(f"INSERT INTO {self.table} VALUES ($1, $2)", event.id, event.type)

        return EventConsumer(
            name=self.name,
            topics=list(EVENT_TOPICS),
            handler=apply,
            pool=self.pool,
            settings=settings or self.settings,
            metrics=Metrics(service="reliability"),
        )

    async def counts(self) -> tuple[int, int, int, int]:
        """(events produced, events applied, effect rows, events sent but never applied)."""
        row = await self.pool.fetchrow(
            f"""
            SELECT (SELECT count(*) FROM outbox WHERE topic = any($1::text[])) AS produced,
                   (SELECT count(DISTINCT e.event_id) FROM {self.table} e
                      JOIN outbox o ON o.id = e.event_id) AS applied,
                   (SELECT count(*) FROM {self.table}) AS rows,
                   (SELECT count(*) FROM outbox o WHERE topic = any($1::text[])
                      AND sent_at IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM {self.table} e WHERE e.event_id = o.id))
                      AS sent_not_applied
            """,
            list(EVENT_TOPICS),
        )
        assert row is not None
        return row["produced"], row["applied"], row["rows"], row["sent_not_applied"]

    async def caught_up(self) -> bool:
        """Every event sent to the broker so far has been applied."""
        return (await self.counts())[3] == 0

    async def all_applied(self) -> bool:
        produced, applied, _, _ = await self.counts()
        return produced == applied


@contextlib.asynccontextmanager
async def relays_paused(pool: asyncpg.Pool, timeout: float = 30) -> AsyncIterator[None]:
    """Hold the relays' turn lock: no relay is inside a batch while this is held.

    The embedded broker keeps records in memory only, so killing it loses what it acknowledged
    and a consumer had not read yet, which durable Kafka (``acks=all``, replicated) never does.
    Holding the turn lock while the consumer catches up and the broker is killed keeps that
    artefact out; requests keep writing to the outbox all along.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", RELAY_LOCK_ID, timeout=timeout)
        yield


async def migrated_database(cluster: EmbeddedPostgres, name: str) -> str:
    """A new database ``name`` on ``cluster``, migrated; its URL."""
    conn = await asyncpg.connect(cluster.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = cluster.url_for(name)
    await asyncio.to_thread(upgrade, url)
    return url


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str = "condition"
) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def settle(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll ``predicate`` for at most ``timeout`` seconds; whether it came to hold."""
    try:
        await wait_for(predicate, timeout)
    except AssertionError:
        return False
    return True


# --- the broker restart under load, shared by the fault and soak scenarios -------------------


@dataclass
class BrokerRun:
    tally: Tally
    seconds: float  # of load
    produced: int
    applied: int
    effect_rows: int
    unsent_during_outage: int
    served_during_outage: int
    audit: Audit
    phases: dict[str, float] = field(default_factory=dict)  # seconds each step took

    @property
    def lost(self) -> int:
        return self.produced - self.applied

    @property
    def duplicates(self) -> int:
        return self.effect_rows - self.applied


async def broker_restart_under_load(
    course: Course,
    settings: Settings,
    pool: asyncpg.Pool,
    restart: Callable[[], None],
    kill: Callable[[], None],
    *,
    total_s: float,
    kill_at_s: float,
    outage_s: float,
    settle_s: float = 60,
) -> BrokerRun:
    """Launches and answers run for ``total_s``; the broker is killed ``kill_at_s`` into the
    load and comes back (empty, as the embedded broker does) ``outage_s`` later. A real work
    consumer counts its effects per event id."""
    effects = Effects(pool, settings)
    await effects.create()
    load = Load(course, settings)
    phases: dict[str, float] = {}
    consumer_task = asyncio.create_task(effects.consumer().run())
    try:
        await load.start()
        await asyncio.sleep(kill_at_s)
        mark = time.monotonic()
        async with relays_paused(pool):
            # Everything (services, clients, consumer) shares one event loop here, so the
            # consumer lags behind a busy load; give it time in proportion.
            mark = time.monotonic()
            if not await settle(effects.caught_up, max(30.0, total_s)):
                produced, applied, _, sent_not_applied = await effects.counts()
                raise AssertionError(
                    f"before the outage: {sent_not_applied} events sent to the broker never "
                    f"reached the consumer ({applied} of {produced} applied)"
                )
            phases["catch_up"] = time.monotonic() - mark
            await _stop(consumer_task)  # its pod goes down with the broker
            kill()
            killed = time.monotonic()
        phases["catch_up_and_kill"] = killed - mark
        await asyncio.sleep(outage_s)
        unsent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        served = sum(load.tally.successes_since(killed, k) for k in ("launch", "answer"))
        mark = time.monotonic()
        restart()  # not in a thread: PDEATHSIG follows the forking thread
        phases["broker_restart"] = time.monotonic() - mark
        # The embedded broker comes back empty and counts offsets from 0 again; a consumer
        # keeping its old position would skip records, so it restarts with the broker, as a
        # pod would (same group, same dedupe table).
        consumer_task = asyncio.create_task(effects.consumer().run())
        await asyncio.sleep(max(1.0, total_s - (time.monotonic() - load.started)))
        seconds = await load.stop()
        mark = time.monotonic()
        await settle(effects.all_applied, settle_s)
        phases["drain_after_load"] = time.monotonic() - mark
        await asyncio.sleep(1)  # room for a duplicate effect to show up
        produced, applied, rows, _ = await effects.counts()
        await _stop(consumer_task)
        return BrokerRun(
            tally=load.tally,
            seconds=seconds,
            produced=produced,
            applied=applied,
            effect_rows=rows,
            unsent_during_outage=unsent,
            served_during_outage=served,
            audit=await audit(pool, load.tally, course),
            phases={k: round(v, 1) for k, v in phases.items()},
        )
    finally:
        await _stop(consumer_task)
        if not load.stopped:
            await load.stop()
        await effects.drop()


async def broker_restart_scenario(
    infra: Infra,
    pool: asyncpg.Pool,
    broker: EmbeddedBroker,
    platform: FakePlatform,
    *,
    learners: int,
    total_s: float,
    kill_at_s: float,
    outage_s: float,
    settle_s: float = 60,
) -> tuple[BrokerRun, float]:
    """A stack on ``broker`` (topics created), a course of ``learners``, and
    :func:`broker_restart_under_load` in it; the run and the seconds from the stack's start to
    its stop."""
    overrides = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "kafka_request_timeout_ms": 1000,
        "outbox_poll_interval_ms": 100,
        **LOAD_SETTINGS,
    }
    settings = infra.settings(**overrides)
    await ensure_topics(settings, topics.ALL)
    stack, exits = await start_stack(infra, pool, **overrides)
    started = time.monotonic()
    try:
        course = await open_course(stack, platform, learners=learners)
        run = await broker_restart_under_load(
            course,
            settings,
            pool,
            restart=broker.restart,
            kill=broker.kill,
            total_s=total_s,
            kill_at_s=kill_at_s,
            outage_s=outage_s,
            settle_s=settle_s,
        )
    finally:
        await exits.aclose()
    return run, time.monotonic() - started


def load_figures(
    scenario: str,
    suite: str,
    tally: Tally,
    *,
    produced: int,
    applied: int,
    data_lost: int,
    seconds: float,
    note: str,
    postgres: str,
) -> Figures:
    """Record the figures of a scenario under load: what the clients saw, from ``tally``;
    ``postgres``: the durability of the cluster it ran on (``record.durability_of``)."""
    figures = Figures(
        scenario=scenario,
        suite=suite,
        requests=tally.requests,
        errors=tally.errors,
        server_errors=tally.server_errors,
        events_produced=produced,
        events_consumed=applied,
        events_lost=produced - applied,
        data_lost=data_lost,
        seconds=round(seconds, 1),
        note=note,
        postgres=postgres,
    )
    record(figures)
    return figures


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(15):
            await task
