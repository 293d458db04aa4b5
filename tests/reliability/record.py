"""Figures of the reliability suites (faults, fuzz, soak), for ``scripts/reliability``'s table.

A scenario calls :func:`record` once with what it observed. When ``ATTUNE_RELIABILITY_OUT``
names a file, one JSON line per scenario is appended to it; otherwise nothing is written (the
scenario's own assertions still hold the zeros). ``python -m tests.reliability.report FILE``
prints the table.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import asyncpg

OUT_ENV = "ATTUNE_RELIABILITY_OUT"


@dataclass
class Figures:
    """What one scenario observed.

    ``errors`` counts responses by their stable error code (``"rate_limited"``,
    ``"jwks_unavailable"``, ``"http_503"`` when there is no code, ``"connection"`` for a
    refused/reset connection); ``server_errors`` counts 5xx answers; ``events_lost`` is events
    committed but never seen by the consumer; ``data_lost`` is acknowledged writes missing from
    the database (or half-written rows).
    """

    scenario: str
    suite: str  # "fault" | "fuzz" | "soak" | "abuse"
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    events_produced: int | None = None
    events_consumed: int | None = None
    events_lost: int = 0
    data_lost: int = 0
    seconds: float = 0.0
    note: str = ""
    # The durability of the Postgres the scenario ran on, as the server reported it
    # (``durability_of``): "durable" or "fast: fsync off, ...". "" when it did not look.
    postgres: str = ""

    def count(self, code: str, n: int = 1) -> None:
        self.errors[code] += n


_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


async def durability_of(pool: asyncpg.Pool) -> str:
    """ "durable" when the server keeps every acknowledged commit through a crash (fsync and
    full_page_writes on, synchronous_commit not off); otherwise what is off."""
    values = {name: await pool.fetchval("SELECT current_setting($1)", name) for name in _SETTINGS}
    off = [name for name, value in values.items() if value == "off"]
    return "durable" if not off else "fast: " + ", ".join(f"{name} off" for name in off)


def record(figures: Figures) -> None:
    path = os.environ.get(OUT_ENV)
    if not path:
        return
    row = asdict(figures)
    row["errors"] = dict(figures.errors)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, sort_keys=True) + "\n")


def load(path: str) -> list[Mapping[str, object]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
