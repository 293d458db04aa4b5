"""Faults under load, each bounded in time: the broker killed and restarted while launches and
check-in answers go on, and Postgres stopped (fast shutdown) or crashed (``pg_ctl stop -m
immediate``: no checkpoint, crash recovery on restart) and started again under the same load,
on a durable cluster (production settings), so "nothing acknowledged lost" is a claim about
durable storage. Also: regression tests for what these scenarios found (a database outage
answered as a 500; the nonce purge ending on a database error), and a check that the audit
behind the zeros can fail.

Figures go to ``tests/reliability/record.py`` (``scripts/reliability`` prints the table); the
zeros (events lost, data lost) are asserted here as well.
"""

from __future__ import annotations

import asyncio
import time
import types
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from services.checkins.roster import CONSUMER_NAME as ROSTER
from services.launch import app as launch_service
from shared import tasks as shared_tasks
from shared.db import POOL_KEY
from shared.events import topics
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.web import SETTINGS_KEY, base_app
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform
from tests.lti_support import start_stack
from tests.reliability.load import (
    LOAD_SETTINGS,
    Load,
    audit,
    broker_restart_scenario,
    load_figures,
    migrated_database,
    open_course,
    settle,
    wait_for,
)
from tests.reliability.record import durability_of

pytestmark = pytest.mark.integration

DB_DOWN = "database_unavailable"
# What a client may be told while Postgres is down: a 5xx with one of these stable codes.
OUTAGE_CODES = {DB_DOWN}
UNIT_ENV = {
    "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), 503, DB_DOWN),
        (ConnectionResetError(104, "Connect call failed"), 503, DB_DOWN),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation"), 503, DB_DOWN),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), 503, DB_DOWN),
        (asyncpg.exceptions.AdminShutdownError("terminating"), 503, DB_DOWN),
        (asyncpg.InterfaceError("connection is closed"), 503, DB_DOWN),
        (asyncpg.exceptions.InternalClientError("another operation in progress"), 503, DB_DOWN),
        # Not the database: an outbound HTTP peer resetting is still an unexpected error.
        (aiohttp.ClientConnectionResetError("peer reset"), 500, "internal_error"),
        (RuntimeError("a bug"), 500, "internal_error"),
    ],
)
async def test_database_outage_is_a_stable_503(
    aiohttp_client, error: Exception, status: int, code: str
) -> None:
    """Regression: a request meeting a Postgres outage got a 500 ``internal_error`` (and a
    traceback in the log per request); it is a retryable 503 ``database_unavailable``."""
    app = base_app(load_settings(UNIT_ENV), service="faults")

    async def handler(request: web.Request) -> web.Response:
        raise error

    app.router.add_get("/api/x", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/api/x")
    assert resp.status == status
    assert (await resp.json())["error"]["code"] == code
    assert ("Retry-After" in resp.headers) is (status == 503)


async def test_nonce_purge_survives_database_errors(
    infra: Infra, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the launch service's nonce purge caught only OSError and TimeoutError, so
    one database error (Postgres starting up or shutting down, a statement or lock timeout)
    ended the task for the life of the process and used nonces piled up from then on."""
    real_sleep = asyncio.sleep

    async def quick(_: float) -> None:
        await real_sleep(0.05)

    # The purge runs in shared.tasks.repeat, which only sleeps between rounds.
    monkeypatch.setattr(shared_tasks, "asyncio", types.SimpleNamespace(sleep=quick))
    nonce = f"reliability-{uuid.uuid4().hex}"
    await pool.execute(
        "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, now() - interval '1 hour')", nonce
    )
    impatient = await asyncpg.create_pool(
        infra.database_url, min_size=0, max_size=1, server_settings={"lock_timeout": "50"}
    )
    assert impatient is not None
    app = web.Application()
    app[POOL_KEY] = impatient
    app[SETTINGS_KEY] = infra.settings()
    try:
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("LOCK TABLE used_nonces IN ACCESS EXCLUSIVE MODE")
            task = asyncio.create_task(launch_service._purge_expired(app))
            await asyncio.sleep(0.5)  # several purges have failed on the lock by now
            assert not task.done(), task.exception()

        async def purged() -> bool:
            query = "SELECT count(*) FROM used_nonces WHERE nonce = $1"
            return not await pool.fetchval(query, nonce)

        await wait_for(purged, 10, "the expired nonce purged once the lock is gone")
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await impatient.close()


async def test_broker_restart_under_launches_and_answers(
    infra: Infra, pool: asyncpg.Pool, own_broker: EmbeddedBroker, canvas: FakePlatform
) -> None:
    """Every launch and check-in event reaches a real work consumer exactly once although the
    broker dies (and comes back empty) in the middle of sustained launches and answers.

    Fails if an event is lost (published outside the outbox, marked sent before the broker
    acknowledged it, or never retried), applied twice (no dedupe), if requests depend on the
    broker, or if an acknowledged launch or answer is missing or half-written.
    """
    run, seconds = await broker_restart_scenario(
        infra, pool, own_broker, canvas, learners=3, total_s=12, kill_at_s=4, outage_s=3
    )
    tally = run.tally
    figures = load_figures(
        "broker restart under launches and answers",
        "fault",
        tally,
        produced=run.produced,
        applied=run.applied,
        data_lost=run.audit.data_lost,
        seconds=seconds,
        note=f"{len(tally.launches)} launches, {len(tally.answers)} answers acknowledged; "
        f"{run.served_during_outage} served while the broker was down; "
        f"duplicate effects {run.duplicates}; phases {run.phases}",
        postgres=await durability_of(pool),
    )
    print(figures)
    assert run.lost == 0, f"{run.lost} of {run.produced} events never applied"
    assert run.duplicates == 0, f"{run.duplicates} events applied twice"
    assert run.audit.data_lost == 0, (run.audit.missing[:5], run.audit.half_written[:5])
    # The outage was real and did not reach the requests: the outbox held events back while
    # launches and answers kept succeeding.
    assert run.unsent_during_outage > 0
    assert run.served_during_outage > 0
    assert tally.errors == {}, tally.errors
    assert len(tally.launches) > 10 and len(tally.answers) > 10
    assert run.produced >= len(tally.launches) + len(tally.answers)


@pytest.fixture
async def own_db(durable_postgres: EmbeddedPostgres) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A migrated database on a durable cluster this test alone stops, crashes and starts."""
    url = await migrated_database(durable_postgres, "attune_reliability")
    p = await asyncpg.create_pool(url, min_size=0, max_size=4)
    assert p is not None
    try:
        yield url, p
    finally:
        p.terminate()


async def ready_status(session: aiohttp.ClientSession, url: str, service: str) -> int:
    try:
        async with session.get(
            f"{url}/_services/{service}/readyz", timeout=aiohttp.ClientTimeout(total=5)
        ) as resp:
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def test_audit_sees_missing_and_half_written_rows(
    infra: Infra, pool: asyncpg.Pool, canvas: FakePlatform
) -> None:
    """The zeros above are not vacuous: the audit flags a launch without its event or used
    nonce, an answer without its event, and an acknowledged answer that is not stored."""
    stack, exits = await start_stack(infra, pool, **LOAD_SETTINGS)
    try:
        course = await open_course(stack, canvas, learners=2)
        load = Load(course, infra.settings())
        await load.start()

        async def enough() -> bool:
            return len(load.tally.launches) >= 3 and len(load.tally.answers) >= 3

        await wait_for(enough, 30, "some launches and answers")
        await load.stop()
    finally:
        await exits.aclose()
    assert (await audit(pool, load.tally, course)).data_lost == 0
    [(launch_a, _), (launch_b, sub_b), *_] = [
        (lid, sub) for sub, lid in load.tally.launches.items()
    ]
    pairs = list(load.tally.answers)
    await pool.execute(
        "DELETE FROM outbox WHERE event_type = 'launch.completed'"
        " AND convert_from(value, 'UTF8')::jsonb->'data'->>'launch_id' = $1",
        launch_a,
    )
    nonce = next(a["nonce"] for a in canvas.auth_requests if a["login_hint"] == sub_b)
    await pool.execute("DELETE FROM used_nonces WHERE nonce = $1", nonce)
    await pool.execute(
        "DELETE FROM outbox WHERE event_type = 'checkin.answered'"
        " AND (convert_from(value, 'UTF8')::jsonb->'data'->>'checkin_id')::bigint = $1"
        " AND convert_from(value, 'UTF8')::jsonb->'data'->>'respondent' = $2",
        pairs[0][0],
        pairs[0][1],
    )
    await pool.execute(
        "DELETE FROM checkin_responses WHERE checkin_id = $1 AND respondent = $2", *pairs[1]
    )
    result = await audit(pool, load.tally, course)
    assert result.missing == [f"answer {pairs[1]}"]
    expected = {
        f"launch {launch_a}: 0 events",
        f"launch {launch_b}: nonce not used up",
        f"answer {pairs[0]}: 0 events",
        f"answer event {pairs[1]} without an answer",
    }
    rest = set(result.half_written) - expected
    assert expected <= set(result.half_written)
    assert len(rest) == 1 and "used nonces for" in rest.pop()


_ROSTER_COUNTS = """
SELECT count(*) AS produced,
       count(*) FILTER (
           WHERE EXISTS (SELECT 1 FROM consumed_events c
                         WHERE c.consumer = $2 AND c.event_id = o.id)
             AND NOT EXISTS (SELECT 1 FROM dead_letters d
                             WHERE d.consumer = $2
                               AND position(convert_to(o.id::text, 'UTF8') in d.value) > 0)
       ) AS applied
FROM outbox o WHERE o.topic = $1
"""


async def roster_counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """Launch events in the outbox, and those the roster consumer applied (not dead-lettered)."""
    row = await pool.fetchrow(_ROSTER_COUNTS, topics.LAUNCH, ROSTER)
    assert row is not None
    return row["produced"], row["applied"]


async def roster_caught_up(pool: asyncpg.Pool) -> bool:
    produced, applied = await roster_counts(pool)
    return produced == applied


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("scenario", "immediate"),
    [
        ("postgres restart under launches and answers", False),
        ("postgres crash (pg_ctl stop -m immediate) under launches and answers", True),
    ],
)
async def test_postgres_outage_under_launches_and_answers(
    infra: Infra,
    durable_postgres: EmbeddedPostgres,
    own_db: tuple[str, asyncpg.Pool],
    own_broker: EmbeddedBroker,
    canvas: FakePlatform,
    scenario: str,
    immediate: bool,
) -> None:
    """Postgres (durable, production settings) stops under sustained launches and answers,
    either cleanly or at once (``pg_ctl stop -m immediate``: every backend exits without a
    checkpoint, and the restart runs crash recovery), and starts again: the services say
    not-ready while it is down, answer 503 with a stable code (never a half-written launch or
    answer), and recover by themselves.

    Fails if a request during the outage gets anything but success or the stable 503, if an
    acknowledged launch or answer is missing (after the crash: a commit acknowledged but not
    durable), if a launch lacks its event or used nonce, if an answer lacks its event (or the
    reverse), or if the services need a restart to recover.
    """
    url, pool = own_db
    assert await durability_of(pool) == "durable"
    # Its own database and its own broker: a deployment of its own, whose work consumers are
    # the only members of their groups (sharing the suite's broker, the roster consumer joined
    # the suite's group and could wait out another test's departing member).
    own = {"database_url": url, "kafka_bootstrap_servers": own_broker.bootstrap_servers}
    await ensure_topics(infra.settings(**own), topics.ALL)
    stack, exits = await start_stack(infra, pool, **own, **LOAD_SETTINGS)
    started = time.monotonic()
    try:
        course = await open_course(stack, canvas, learners=3)
        load = Load(course, infra.settings(**own))
        async with aiohttp.ClientSession() as probe:

            async def all_ready(status: int) -> bool:
                got = [await ready_status(probe, stack.url, s) for s in ("launch", "checkins")]
                return got == [status, status]

            await wait_for(lambda: all_ready(200), 20, "ready before the outage")
            # The services' own background tasks (relays, consumers, workers) are named.
            background = {t for t in asyncio.all_tasks() if not t.get_name().startswith("Task-")}
            await load.start()
            try:
                await asyncio.sleep(3)
                stop = durable_postgres.stop_immediate if immediate else durable_postgres.stop
                await asyncio.to_thread(stop)
                down = time.monotonic()
                await wait_for(lambda: all_ready(503), 15, "not ready while Postgres is down")
                await asyncio.sleep(2)  # requests keep coming while it is down
                durable_postgres.start()  # not in a thread: PDEATHSIG follows the forking thread
                await wait_for(lambda: all_ready(200), 30, "ready again after Postgres returned")
                recovered = time.monotonic()
                login_ready = await ready_status(probe, stack.url, "login")

                async def served_again() -> bool:
                    t = load.tally
                    return (
                        t.successes_since(recovered, "launch") >= 3
                        and t.successes_since(recovered, "answer") >= 3
                    )

                await wait_for(served_again, 30, "launches and answers after the recovery")
                dead = {t.get_name(): t.exception() for t in background if t.done()}
            finally:
                seconds = await load.stop()
        result = await audit(pool, load.tally, course)
        # The checkins roster consumer (a real work consumer) must apply every launch event,
        # the outage notwithstanding: retried, never parked as a dead letter.
        await settle(lambda: roster_caught_up(pool), 30)
        produced, applied = await roster_counts(pool)
    finally:
        await exits.aclose()
    tally = load.tally
    figures = load_figures(
        scenario,
        "fault",
        tally,
        produced=produced,
        applied=applied,
        data_lost=result.data_lost,
        seconds=time.monotonic() - started,
        note=f"{result.launches_acked} launches, {result.answers_acked} answers acknowledged; "
        f"ready again {recovered - down:.1f} s after the stop; load {seconds:.1f} s",
        postgres="durable",
    )
    print(figures)
    assert result.data_lost == 0, (result.missing[:5], result.half_written[:5])
    assert applied == produced, f"{produced - applied} launch events not applied by the roster"
    assert login_ready == 200
    print(sorted(t.get_name() for t in background))
    # No background task may end for good because the database went away for a while.
    assert dead == {}, dead
    assert tally.server_errors > 0  # the outage reached the clients
    unexpected = {code: n for code, n in tally.errors.items() if code not in OUTAGE_CODES}
    assert unexpected == {}, f"errors without a stable outage code: {unexpected}"
    assert tally.server_errors == sum(tally.errors.values())
