"""The broker killed without warning under load, restarted empty, and the runbook's replay.

Unlike the broker-restart scenario of ``test_faults.py`` (which holds the relays' turn while
the broker dies, so no acknowledged event is in flight), nothing here is announced: the relays
keep publishing and the consumers keep reading until the broker process is SIGKILLed at a
moment when it holds events it acknowledged (the relay marked them sent) that a consumer has
not applied yet. The embedded broker keeps everything in memory, so those are gone, as they
would be with a lost or rebuilt Kafka cluster; the restarted broker is empty and counts offsets
from 0 again, so a consumer may also skip what the new broker got before it noticed.

Then the runbook of docs/reliability.md: every outbox row is published again to the new broker,
``attune events replay --all-topics --since <when the lost broker started>`` marks the retained
rows for another publication, and every projection converges to the database:

- a work consumer counting its effects (no unique key: a duplicate would be a second row) has
  applied every launch and check-in event exactly once;
- the checkins roster (``course_roster``, from ``launch.completed``) holds every launched user
  of the course;
- the deployment-status projection (``checkin_deployment_status``, from registration events)
  matches the registration store's ``deployments`` for a deployment an admin kept switching
  on and off during the load;
- and no acknowledged launch or answer is missing or half-written in Postgres.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from devstack.embedded import EmbeddedBroker
from services.registration import store
from shared.events import topics
from shared.kafka import ensure_topics
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform
from tests.lti_support import start_stack
from tests.reliability.load import (
    LOAD_SETTINGS,
    Effects,
    Load,
    audit,
    load_figures,
    open_course,
    wait_for,
)
from tests.reliability.record import durability_of

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOAD_S = float(os.environ.get("ATTUNE_BROKER_LOSS_SECONDS", "12"))
TOGGLED = "d-toggled"


@dataclass(frozen=True)
class Gaps:
    """How far each projection is from the database."""

    effects: int  # launch and check-in events not applied by the work consumer
    roster: int  # launched users of the course missing from course_roster
    deployment: int  # 1 when the toggled deployment's projected state is not its stored one

    @property
    def total(self) -> int:
        return self.effects + self.roster + self.deployment


_ROSTER_GAP = """
SELECT count(*) FROM (SELECT DISTINCT platform_id, context_id, subject FROM launches
                      WHERE platform_id = $1 AND context_id IS NOT NULL
                        AND subject IS NOT NULL) l
WHERE NOT EXISTS (SELECT 1 FROM course_roster r WHERE r.platform_id = l.platform_id
                  AND r.context_id = l.context_id AND r.subject = l.subject)
"""
_DEPLOYMENT_GAP = """
SELECT (d.status = 'disabled') IS DISTINCT FROM s.read_only
FROM deployments d
LEFT JOIN checkin_deployment_status s USING (platform_id, deployment_id)
WHERE d.platform_id = $1 AND d.deployment_id = $2
"""


async def gaps(pool: asyncpg.Pool, effects: Effects, platform_id: int) -> Gaps:
    produced, applied, _, _ = await effects.counts()
    return Gaps(
        effects=produced - applied,
        roster=int(await pool.fetchval(_ROSTER_GAP, platform_id)),
        deployment=int(bool(await pool.fetchval(_DEPLOYMENT_GAP, platform_id, TOGGLED))),
    )


async def toggle_deployment(pool: asyncpg.Pool, platform_id: int, stop: asyncio.Event) -> int:
    """An admin switching a deployment off and on through the registration store (the same
    code as the admin API), until ``stop``; returns the changes made."""
    changes = 0
    while not stop.is_set():
        status = "disabled" if changes % 2 == 0 else "active"
        await store.change_deployment(
            pool, platform_id, TOGGLED, status=status, label=None, actor="reliability"
        )
        changes += 1
        await asyncio.sleep(0.3)
    return changes


def replay_cli(env: dict[str, str], since: datetime) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attune.cli", "events", "replay", "--all-topics",
         "--since", since.isoformat()],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.timeout(int(LOAD_S) + 240)
async def test_broker_killed_unannounced_under_load_then_replayed(
    infra: Infra, pool: asyncpg.Pool, own_broker: EmbeddedBroker, canvas: FakePlatform
) -> None:
    overrides = {
        "kafka_bootstrap_servers": own_broker.bootstrap_servers,
        "kafka_request_timeout_ms": 1000,
        "outbox_poll_interval_ms": 100,
        **LOAD_SETTINGS,
    }
    settings = infra.settings(**overrides)
    # The operator knows when the lost broker started: everything it was given since then.
    broker_started = datetime.now(UTC) - timedelta(seconds=1)
    await ensure_topics(settings, topics.ALL)
    effects = Effects(pool, settings)
    await effects.create()
    stack, exits = await start_stack(infra, pool, **overrides)
    consumer = asyncio.create_task(effects.consumer().run())
    started = time.monotonic()
    stop_toggling = asyncio.Event()
    try:
        course = await open_course(stack, canvas, learners=3)
        await pool.execute(
            "INSERT INTO deployments (platform_id, deployment_id, status)"
            " VALUES ($1, $2, 'active')",
            course.platform_id,
            TOGGLED,
        )
        load = Load(course, settings)
        await load.start()
        toggler = asyncio.create_task(toggle_deployment(pool, course.platform_id, stop_toggling))
        try:
            await asyncio.sleep(LOAD_S * 0.4)

            async def holds_unapplied_events() -> bool:
                return (await effects.counts())[3] > 0

            # No pause, no drain: the kill comes while the broker holds acknowledged events
            # the consumer has not applied (under this load that is nearly always at once).
            await wait_for(holds_unapplied_events, 30, "acknowledged events in the broker")
            own_broker.kill()
            unapplied_at_kill = (await effects.counts())[3]
            await asyncio.sleep(2)
            own_broker.restart()  # empty; not in a thread: PDEATHSIG follows the forking thread
            await asyncio.sleep(max(1.0, LOAD_S - (time.monotonic() - load.started)))
        finally:
            stop_toggling.set()
            toggles = await toggler
            seconds = await load.stop()

        async def all_published() -> bool:
            return not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")

        await wait_for(all_published, 60, "every outbox row published to the new broker")
        await asyncio.sleep(3)  # the consumers read what the new broker has
        before = await gaps(pool, effects, course.platform_id)

        env = {**os.environ, **infra.env}
        result = await asyncio.to_thread(replay_cli, env, broker_started)
        assert result.returncode == 0, result.stderr
        replayed = sum(int(line.split("\t")[1]) for line in result.stdout.splitlines())
        replay_started = time.monotonic()

        async def converged() -> bool:
            return (await gaps(pool, effects, course.platform_id)).total == 0

        await wait_for(converged, 120, "every projection equal to the database after replay")
        converge_s = time.monotonic() - replay_started
        await asyncio.sleep(1)  # room for a duplicate effect to show up
        produced, applied, rows, _ = await effects.counts()
        data = await audit(pool, load.tally, course)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await exits.aclose()
        await effects.drop()
    tally = load.tally
    load_figures(
        "broker killed unannounced under load, then replayed",
        "fault",
        tally,
        produced=produced,
        applied=applied,
        data_lost=data.data_lost,
        seconds=time.monotonic() - started,
        note=f"{unapplied_at_kill} acknowledged events unapplied when the broker was killed; "
        f"before the replay the work consumer missed {before.effects} events, the roster "
        f"{before.roster} launched users, the deployment projection "
        f"{'was' if before.deployment else 'was not'} stale after {toggles} admin changes; "
        f"replay marked {replayed} rows, every projection equal to the database "
        f"{converge_s:.1f} s later; duplicate effects {rows - applied}; "
        f"{len(tally.launches)} launches, {len(tally.answers)} answers acknowledged in "
        f"{seconds:.1f} s of load",
        postgres=await durability_of(pool),
    )
    assert unapplied_at_kill > 0
    assert replayed >= unapplied_at_kill
    assert produced == applied, f"{produced - applied} events never applied"
    assert rows == applied, f"{rows - applied} events applied twice"
    assert data.data_lost == 0, (data.missing[:5], data.half_written[:5])
    assert tally.server_errors == 0, tally.errors
    assert tally.errors == {}, tally.errors
