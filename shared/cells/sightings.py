"""First sightings of deployments: from every cell to the home region's admin API.

A launch of a deployment the registration does not list records a row in its cell's
``deployment_sightings`` (accepted under the ``accept`` policy, held under ``hold``). The same
statement writes a ``deployment.sighted`` event to the cell's ``attune.sighting.v1`` through
the outbox: platform id, deployment id, policy, when, and the cell's region; nothing about the
person who launched. The home region's registration service reads that topic on every other
cell's cluster (``sightings_ctx``; read remote, write local) into ``cell_sightings``, so an
administrator sees and approves a held deployment wherever it launched. The approval travels
back as registration state (``shared.cells.registrations``).

What verified launches show about a deployment (``deployment_observations``, written by
``services/launch/observations.py``) takes the same way as a ``deployment.observed`` event:
the LMS page origins the deployment's launches proved and whether the LMS shared the roster
and names, into ``cell_observations``, so the admin API's ``launches_show`` and
``learned_frame_origins`` cover every cell.

The sighting event is built in SQL (``sighting_events``) because only the statement knows
whether its insert found the deployment new; ``tests`` decode it with ``Event.decode``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from shared.cells.remote import each_cell
from shared.events import topics
from shared.events.envelope import SCHEMA_VERSION, Event

SIGHTED = "deployment.sighted"
OBSERVED = "deployment.observed"
MAX_ORIGINS = 10  # deployment_observations holds at most 10 per deployment (0014)


def sighting_events(sightings: str, *, topic: str, region: str, source: str) -> str:
    """SQL (a statement or a CTE body) inserting one ``deployment.sighted`` outbox row per
    row of the relation ``sightings`` (platform_id, deployment_id, policy, first_seen_at).
    ``topic`` and ``region`` are SQL expressions (parameters); ``source`` a literal name."""
    assert source.isidentifier()
    return f"""
    INSERT INTO outbox (id, topic, key, event_type, value)
    SELECT e.id, {topic}, convert_to(e.subject, 'UTF8'), '{SIGHTED}',
           convert_to(jsonb_build_object(
               'id', e.id, 'type', '{SIGHTED}', 'source', '{source}',
               'occurred_at', e.first_seen_at, 'subject', e.subject,
               'schema_version', {SCHEMA_VERSION},
               'data', jsonb_build_object(
                   'platform_id', e.platform_id, 'deployment_id', e.deployment_id,
                   'policy', e.policy, 'first_seen_at', e.first_seen_at,
                   'region', {region}::text))::text, 'UTF8')
    FROM (SELECT gen_random_uuid() AS id, 'platform:' || s.platform_id AS subject, s.*
          FROM {sightings} s) e
    """  # noqa: S608 - constant identifiers only


_CELL_SIGHTING = """
INSERT INTO cell_sightings AS c (platform_id, deployment_id, region, policy, first_seen_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (platform_id, deployment_id, region) DO UPDATE
    SET first_seen_at = least(c.first_seen_at, excluded.first_seen_at)
"""


def observed_event(
    platform_id: int,
    deployment_id: str,
    *,
    frame_origins: list[str],
    roster_shared: bool | None,
    names_shared: bool,
    region: str,
    source: str,
) -> Event:
    """A cell's latest observation of a deployment, for the home region's admin API."""
    return Event(
        type=OBSERVED,
        source=source,
        subject=f"platform:{platform_id}",
        data={
            "platform_id": platform_id,
            "deployment_id": deployment_id,
            "frame_origins": list(frame_origins),
            "roster_shared": roster_shared,
            "names_shared": names_shared,
            "region": region,
        },
    )


_CELL_OBSERVATION = """
INSERT INTO cell_observations AS c (platform_id, deployment_id, region, frame_origins,
    roster_shared, names_shared, observed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (platform_id, deployment_id, region) DO UPDATE
    SET frame_origins = excluded.frame_origins,
        roster_shared = coalesce(excluded.roster_shared, c.roster_shared),
        names_shared = excluded.names_shared, observed_at = excluded.observed_at
    WHERE c.observed_at <= excluded.observed_at
"""


async def _apply_observation(conn: asyncpg.Connection, event: Event, region: str) -> None:
    data = event.data
    platform_id, deployment_id = data.get("platform_id"), data.get("deployment_id")
    origins, roster, names = (
        data.get("frame_origins"),
        data.get("roster_shared"),
        data.get("names_shared"),
    )
    if not isinstance(platform_id, int) or not isinstance(deployment_id, str):
        raise ValueError("an observation names a platform id and a deployment id")
    if (
        not isinstance(origins, list)
        or len(origins) > MAX_ORIGINS
        or not all(isinstance(o, str) for o in origins)
    ):
        raise ValueError("an observation's frame origins are a short list of strings")
    if not (roster is None or isinstance(roster, bool)) or not isinstance(names, bool):
        raise ValueError("an observation's roster_shared and names_shared are flags")
    await conn.execute(
        _CELL_OBSERVATION,
        platform_id,
        deployment_id,
        region,
        origins,
        roster,
        names,
        event.occurred_at,
    )


def apply_sighting(region: str) -> Callable[[asyncpg.Connection, Event], Awaitable[None]]:
    """The handler for one cell's sightings and observations: recorded under that cell's
    region (the cluster it came from, not what the event says)."""

    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == OBSERVED:
            await _apply_observation(conn, event, region)
            return
        if event.type != SIGHTED:
            return
        data = event.data
        platform_id, deployment_id = data.get("platform_id"), data.get("deployment_id")
        policy = data.get("policy")
        if not isinstance(platform_id, int) or not isinstance(deployment_id, str):
            raise ValueError("a sighting names a platform id and a deployment id")
        if policy not in ("accept", "hold"):
            raise ValueError("a sighting's policy is accept or hold")
        await conn.execute(
            _CELL_SIGHTING, platform_id, deployment_id, region, policy, event.occurred_at
        )

    return handle


# Home region (registration service): every other cell's sightings.
sightings_ctx = each_cell(
    "cell-sightings",
    topics.SIGHTING,
    apply_sighting,
    group_id="attune.home.cell-sightings",  # on each cell's cluster
)
