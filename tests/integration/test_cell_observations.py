"""What a cell's launches showed about a deployment, as the home region records it
(``shared.cells.sightings``: ``deployment.observed`` into ``cell_observations``).

The end-to-end path (a cell's launch → its outbox → its broker → home's admin API) is in
``test_cells.py``; here the handler's own rules: it keeps the newest observation per region,
and a malformed event is refused whole.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from shared.cells.sightings import apply_sighting, observed_event


def _event(platform_id: int, deployment_id: str, **over: Any) -> Any:
    base = {
        "frame_origins": ["https://school.example"],
        "roster_shared": True,
        "names_shared": True,
        "region": "eu-west-1",
        "source": "launch",
    }
    return observed_event(platform_id, deployment_id, **{**base, **over})


async def _rows(pool: asyncpg.Pool, deployment_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT region, frame_origins, roster_shared, names_shared FROM cell_observations "
        "WHERE deployment_id = $1 ORDER BY region",
        deployment_id,
    )


async def test_newest_observation_per_region_wins(pool: asyncpg.Pool) -> None:
    deployment = f"d-{secrets.token_hex(4)}"
    eu, ap = apply_sighting("eu-west-1"), apply_sighting("ap-southeast-2")
    newer = _event(7, deployment, frame_origins=["https://a.example", "https://b.example"])
    older = _event(7, deployment, roster_shared=False, names_shared=False)
    older = replace(older, occurred_at=newer.occurred_at - timedelta(days=1))
    async with pool.acquire() as conn:
        await eu(conn, newer)
        await eu(conn, older)  # replayed late: changes nothing
        # Recorded under the cluster's region, whatever the event says.
        await ap(conn, _event(7, deployment, roster_shared=None, region="eu-west-1"))
    rows = await _rows(pool, deployment)
    assert [tuple(r) for r in rows] == [
        ("ap-southeast-2", ["https://school.example"], None, True),
        ("eu-west-1", ["https://a.example", "https://b.example"], True, True),
    ]


@pytest.mark.parametrize(
    "data",
    [
        {"platform_id": "7"},
        {"deployment_id": None},
        {"frame_origins": "https://school.example"},
        {"frame_origins": [1]},
        {"frame_origins": [f"https://{i}.example" for i in range(11)]},
        {"roster_shared": "yes"},
        {"names_shared": None},
    ],
    ids=lambda d: next(iter(d)),
)
async def test_a_malformed_observation_is_refused_whole(
    pool: asyncpg.Pool, data: dict[str, Any]
) -> None:
    deployment = f"d-{secrets.token_hex(4)}"
    event = _event(7, deployment)
    event.data.update({"deployment_id": deployment, **data})
    async with pool.acquire() as conn:
        with pytest.raises(ValueError):
            await apply_sighting("eu-west-1")(conn, event)
    assert await _rows(pool, deployment) == []
