"""What verified launches show about a deployment (``deployment_observations``, migration 0014).

- **Page origins.** One hosted Canvas client_id serves many schools, each on its own domain (a
  vanity domain too), and Canvas frames every launch from the school's page. A verified launch
  proves that page's origin: its ``launch_presentation.return_url`` is signed with the
  platform's key (Canvas builds it on the host the page was served from). An origin the
  registration does not already allow is recorded for that deployment only — at most
  ``MAX_LEARNED`` each — with a ``deployment.frame_origin_learned`` event in the same
  transaction, so every service's registration cache drops the entry and the next login of
  that deployment may show its Platform Storage page framed by it. Nothing unverified is ever
  learned: not the login's parameters, not a request header.
- **What the LMS shares.** Whether the latest launch carried the Names and Role Provisioning
  claim (a course launch) and the user's name: Canvas applies the admin's edits of scopes and
  privacy after answering the registration, so the registration answer cannot tell; launches
  can. Shown to admins (``GET /api/admin/platforms``) and, per launch, to the teacher.
  In a cell outside the home region every write also goes home as a ``deployment.observed``
  event (``shared.cells.sightings``), so the home region's admin API shows what every cell's
  launches showed.

Each replica remembers what it last wrote per deployment, so a launch writes here only when
something changed (after a restart, once per deployment).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg

from shared.cells.sightings import MAX_ORIGINS, observed_event
from shared.db import DB_ERRORS
from shared.events import outbox, topics
from shared.events.envelope import Event
from shared.logs import get_logger
from shared.lti.frame import origin_allowed, secure_origin
from shared.lti.launch import VerifiedLaunch

log = get_logger(__name__)

MAX_LEARNED = MAX_ORIGINS  # deployment_observations CHECK (migration 0014)
MAX_REMEMBERED = 100_000
SOURCE = "launch"


@dataclass(frozen=True)
class Seen:
    roster_shared: bool | None  # None: a launch outside a course says nothing about a roster
    names_shared: bool
    origin: str | None  # a page origin the registration does not allow yet, to learn


@dataclass(frozen=True)
class Outcome:
    # The page origin this launch proved and that may now frame its pages (allowed already,
    # or learned); None when it proved none or the deployment has learned its maximum.
    page_origin: str | None


class Observations:
    def __init__(
        self, pool: asyncpg.Pool, *, allow_insecure: bool, remote_cell: str | None = None
    ) -> None:
        self._pool = pool
        self._allow_insecure = allow_insecure
        # The region of a cell outside the home region (its observations go home); None at home
        # (the admin API reads this database's observations directly).
        self._remote_cell = remote_cell
        # (platform, deployment) -> what this replica last wrote, and whether the origin in it
        # was learned (False: the deployment had learned its maximum).
        self._written: dict[tuple[int, str], tuple[Seen, bool]] = {}

    async def record(self, launch: VerifiedLaunch) -> Outcome:
        """Note what this verified launch showed; learn its page origin if it is new."""
        platform = launch.platform
        proven = secure_origin(launch.page_origin, allow_insecure=self._allow_insecure)
        allowed = platform.ancestors_for(launch.deployment_id)
        new_origin = proven if proven and not origin_allowed(proven, allowed) else None
        seen = Seen(
            roster_shared=launch.roster_shared if launch.context_id is not None else None,
            names_shared=launch.names_shared,
            origin=new_origin,
        )
        key = (platform.id, launch.deployment_id)
        known = self._written.get(key)
        if known is not None and seen.roster_shared is None:
            # A launch outside a course says nothing about the roster: what was noted stays.
            seen = replace(seen, roster_shared=known[0].roster_shared)
        if known is not None and known[0] == seen:
            learned = known[1]
        else:
            try:
                learned = await self._write(launch, seen)
            except DB_ERRORS as exc:
                # The launch is recorded already: it goes on, only without what it would have
                # learned (a later launch notes it).
                log.warning("launch_observation_failed", error=type(exc).__name__)
                return Outcome(None if new_origin is not None else proven)
            if len(self._written) >= MAX_REMEMBERED:
                self._written.clear()
            self._written[key] = (seen, learned)
        if new_origin is None:
            return Outcome(proven)
        return Outcome(new_origin if learned else None)

    async def _write(self, launch: VerifiedLaunch, seen: Seen) -> bool:
        """Upsert the observation; True when ``seen.origin`` is (now) among the deployment's
        learned origins."""
        platform = launch.platform
        async with self._pool.acquire() as conn, conn.transaction():
            before = await conn.fetchval(
                "SELECT frame_origins FROM deployment_observations "
                "WHERE platform_id = $1 AND deployment_id = $2 FOR UPDATE",
                platform.id,
                launch.deployment_id,
            )
            origins = list(before or [])
            added = seen.origin is not None and seen.origin not in origins
            if added and len(origins) >= MAX_LEARNED:
                added = False
            if added and seen.origin is not None:
                origins.append(seen.origin)
            await conn.execute(
                """
                INSERT INTO deployment_observations AS o (platform_id, deployment_id,
                    frame_origins, roster_shared, names_shared, observed_at)
                VALUES ($1, $2, $3, $4, $5, now())
                ON CONFLICT (platform_id, deployment_id) DO UPDATE
                    SET frame_origins = excluded.frame_origins,
                        roster_shared = coalesce(excluded.roster_shared, o.roster_shared),
                        names_shared = excluded.names_shared, observed_at = now()
                """,
                platform.id,
                launch.deployment_id,
                origins,
                seen.roster_shared,
                seen.names_shared,
            )
            if added:
                await outbox.enqueue(
                    conn,
                    topics.REGISTRATION,
                    Event(
                        type="deployment.frame_origin_learned",
                        source=SOURCE,
                        subject=f"platform:{platform.id}",
                        data={
                            "platform_id": platform.id,
                            "issuer": platform.issuer,
                            "client_id": platform.client_id,
                            "deployment_id": launch.deployment_id,
                            "frame_origin": seen.origin,
                        },
                    ),
                )
            if self._remote_cell is not None:
                # The home region's admin API shows what every cell's launches showed
                # (shared/cells/sightings.py): the deployment, the LMS's page origins and two
                # flags; nothing about the person who launched.
                await outbox.enqueue(
                    conn,
                    topics.SIGHTING,
                    observed_event(
                        platform.id,
                        launch.deployment_id,
                        frame_origins=origins,
                        roster_shared=seen.roster_shared,
                        names_shared=seen.names_shared,
                        region=self._remote_cell,
                        source=SOURCE,
                    ),
                )
        return seen.origin is not None and seen.origin in origins
