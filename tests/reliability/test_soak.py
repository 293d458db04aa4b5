"""Soak: a bounded mixed load of complete LTI launches, check-in creation and answers for
``ATTUNE_SOAK_SECONDS`` (20 in the normal suite; ``scripts/reliability`` sets 120), with one
broker restart in the middle. Afterwards: requests served, errors by code, events produced vs
applied by a real consumer, answers stored vs acknowledged; events lost and data lost are 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.dev.embedded import EmbeddedBroker
from shared.events import topics
from shared.kafka import ensure_topics
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform
from tests.lti_support import platform_server, start_stack
from tests.reliability.load import LOAD_SETTINGS, broker_restart_under_load, open_course
from tests.reliability.record import Figures, record

pytestmark = pytest.mark.integration

SOAK_SECONDS = float(os.environ.get("ATTUNE_SOAK_SECONDS", "20"))


@pytest.fixture
async def canvas() -> AsyncIterator[FakePlatform]:
    async for p in platform_server("canvas"):
        yield p


@pytest.mark.timeout(int(SOAK_SECONDS) + 150)
async def test_soak_mixed_load_with_a_broker_restart(
    infra: Infra, pool: asyncpg.Pool, own_broker: EmbeddedBroker, canvas: FakePlatform
) -> None:
    overrides = {
        "kafka_bootstrap_servers": own_broker.bootstrap_servers,
        "kafka_request_timeout_ms": 1000,
        "outbox_poll_interval_ms": 100,
        **LOAD_SETTINGS,
    }
    settings = infra.settings(**overrides)
    await ensure_topics(settings, topics.ALL)
    stack, exits = await start_stack(infra, pool, **overrides)
    started = time.monotonic()
    try:
        course = await open_course(stack, canvas, learners=4)

        def restart() -> None:
            own_broker.restart()

        run = await broker_restart_under_load(
            course,
            settings,
            pool,
            restart=restart,
            kill=own_broker.kill,
            total_s=SOAK_SECONDS,
            kill_at_s=SOAK_SECONDS * 0.4,
            outage_s=min(5.0, max(2.0, SOAK_SECONDS * 0.15)),
            settle_s=90,
        )
    finally:
        await exits.aclose()
    tally = run.tally
    result = run.audit
    figures = Figures(
        scenario=f"soak {SOAK_SECONDS:g} s, mixed launches and answers, one broker restart",
        suite="soak",
        requests=tally.requests,
        errors=tally.errors,
        server_errors=tally.server_errors,
        events_produced=run.produced,
        events_consumed=run.applied,
        events_lost=run.lost,
        data_lost=result.data_lost,
        seconds=round(time.monotonic() - started, 1),
        note=f"load {run.seconds:.1f} s, {tally.requests / run.seconds:.0f} req/s; "
        f"launches stored/acked {result.launches_stored}/{result.launches_acked} "
        f"answers stored/acked {result.answers_stored}/{result.answers_acked}; "
        f"check-ins {len(tally.checkins)}; duplicate effects {run.duplicates}; "
        f"phases {run.phases}",
    )
    record(figures)
    print(
        f"\nsoak: {tally.requests} requests in {run.seconds:.1f} s, errors {dict(tally.errors)}, "
        f"5xx {tally.server_errors}; events produced {run.produced}, applied {run.applied}, "
        f"lost {run.lost}, duplicated {run.duplicates}; answers stored {result.answers_stored}"
        f" vs acknowledged {result.answers_acked}; launches stored {result.launches_stored} vs "
        f"acknowledged {result.launches_acked}; data lost {result.data_lost}; {run.phases}"
    )
    assert run.lost == 0, f"{run.lost} of {run.produced} events never applied"
    assert run.duplicates == 0, f"{run.duplicates} events applied twice"
    assert result.data_lost == 0, (result.missing[:5], result.half_written[:5])
    assert run.unsent_during_outage > 0  # the broker restart really held events back
    assert tally.server_errors == 0, tally.errors
    assert tally.errors == {}, tally.errors
    # Nothing acknowledged is missing, and no failed answer was stored behind the client's back.
    assert result.answers_stored == result.answers_acked
    assert result.launches_stored == result.launches_acked
