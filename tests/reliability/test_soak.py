"""Soak: a bounded mixed load of complete LTI launches, check-in creation and answers for
``ATTUNE_SOAK_SECONDS`` (20 in the normal suite; ``scripts/reliability`` sets 120), with one
broker restart in the middle. Afterwards: requests served, errors by code, events produced vs
applied by a real consumer, answers stored vs acknowledged; events lost and data lost are 0.
"""

from __future__ import annotations

import os

import asyncpg
import pytest

from devstack.embedded import EmbeddedBroker
from tests.conftest import Infra
from tests.fakes.platform import FakePlatform
from tests.reliability.load import broker_restart_scenario, load_figures
from tests.reliability.record import durability_of

pytestmark = pytest.mark.integration

SOAK_SECONDS = float(os.environ.get("ATTUNE_SOAK_SECONDS", "20"))


@pytest.mark.timeout(int(SOAK_SECONDS) + 150)
async def test_soak_mixed_load_with_a_broker_restart(
    infra: Infra, pool: asyncpg.Pool, own_broker: EmbeddedBroker, canvas: FakePlatform
) -> None:
    run, seconds = await broker_restart_scenario(
        infra,
        pool,
        own_broker,
        canvas,
        learners=4,
        total_s=SOAK_SECONDS,
        kill_at_s=SOAK_SECONDS * 0.4,
        outage_s=min(5.0, max(2.0, SOAK_SECONDS * 0.15)),
        settle_s=90,
    )
    tally = run.tally
    result = run.audit
    load_figures(
        f"soak {SOAK_SECONDS:g} s, mixed launches and answers, one broker restart",
        "soak",
        tally,
        produced=run.produced,
        applied=run.applied,
        data_lost=result.data_lost,
        seconds=seconds,
        note=f"load {run.seconds:.1f} s, {tally.requests / run.seconds:.0f} req/s; "
        f"launches stored/acked {result.launches_stored}/{result.launches_acked} "
        f"answers stored/acked {result.answers_stored}/{result.answers_acked}; "
        f"check-ins {len(tally.checkins)}; duplicate effects {run.duplicates}; "
        f"phases {run.phases}",
        postgres=await durability_of(pool),
    )
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
