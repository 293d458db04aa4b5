"""Released results: everything anyone but the teacher of an identified check-in sees about
answers (docs/checkins.md, *Anonymity*).

A check-in's results are released once it has ``ATTUNE_CHECKIN_MIN_CLASS_SIZE`` answers and
again only with that many more (``queries.released_results``); these shape them for the
teacher's view of an anonymous check-in, the export, the insights trend and the students'
class picture.
"""

from __future__ import annotations

import json
from datetime import UTC, date
from typing import Any

import asyncpg
from aiohttp import web

from services.checkins import emotions, queries
from services.checkins.queries import Course
from shared.web import SETTINGS_KEY


def group_size(request: web.Request) -> int:
    """ATTUNE_CHECKIN_MIN_CLASS_SIZE: the fewest answers a release of results covers, and the
    fewest new answers the next release needs."""
    return request.app[SETTINGS_KEY].checkin_min_class_size


async def read(
    request: web.Request, conn: asyncpg.Connection, course: Course, ids: list[int]
) -> dict[int, asyncpg.Record]:
    """These check-ins' released results, by id (releasing due ones first)."""
    return await queries.released_results(conn, course, ids, group_size(request))


def emotions_json(counts: dict[str, int]) -> list[dict[str, Any]]:
    """Emotions with their band and count, most chosen first."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        {"emotion": e, "pleasantness": emotions.PLEASANTNESS[e], "count": n} for e, n in ordered
    ]


def distribution(counts: dict[str, int]) -> dict[str, Any]:
    bands = [0] * len(emotions.BANDS)
    for e, n in counts.items():
        bands[emotions.PLEASANTNESS[e] - 1] += n
    return {"pleasantness": bands, "emotions": emotions_json(counts)}


def released_emotions(released: asyncpg.Record) -> dict[str, int]:
    counts: dict[str, int] = json.loads(released["emotions"])
    return counts


def state(released: asyncpg.Record | None, answers: int, group: int) -> dict[str, Any]:
    """What the released results cover: ``answers`` of them, ``not_shown`` newer ones (a
    changed answer shows with the next release too), ``next_in`` more answers release them."""
    shown = released["answers"] if released is not None else 0
    return {
        "answers": shown,
        "group_size": group,
        "next_in": max(shown + group - answers, 1),
        "not_shown": max(answers - shown, 0),
    }


def class_view(released: asyncpg.Record | None, answered: bool) -> dict[str, Any] | None:
    """The class picture for a student: after answering, from the released results only."""
    if not answered or released is None:
        return None
    return {"pleasantness": list(released["pleasantness"]), "total": released["answers"]}


def trend(
    identified: list[asyncpg.Record],
    anonymous: list[asyncpg.Record],
    released: dict[int, asyncpg.Record],
) -> list[dict[str, Any]]:
    """Daily average pleasantness: identified answers on the day they were given, anonymous
    check-ins' released results on the day the check-in opened (so the figures move only when
    a group is released)."""
    days: dict[date, list[int]] = {p["day"]: [p["total"], p["n"]] for p in identified}
    for r in anonymous:
        res = released.get(r["id"])
        if res is None or not res["answers"]:
            continue
        day = days.setdefault(r["opens_at"].astimezone(UTC).date(), [0, 0])
        day[0] += sum(band * n for band, n in enumerate(res["pleasantness"], start=1))
        day[1] += res["answers"]
    return [
        {"day": d.isoformat(), "average": round(total / n, 2), "answers": n}
        for d, (total, n) in sorted(days.items())
    ]
