"""Recurring check-ins: validation through the API, the next-opening arithmetic (local time,
weekdays, daylight saving) and the scheduler creating each successor once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.checkins import recurrence
from tests.fakes.platform import Client, FakePlatform
from tests.integration.test_checkins import Api, course, launch_token
from tests.lti_support import LtiStack

pytestmark = pytest.mark.integration

__all__ = ["course"]  # a fixture shared with the check-in tests


def test_next_opening_keeps_local_time_and_weekdays() -> None:
    paris = ZoneInfo("Europe/Paris")
    # Friday 2026-03-27 09:00 Paris (UTC+1); DST starts Sunday 29th.
    friday = datetime(2026, 3, 27, 9, 0, tzinfo=paris)
    nxt = recurrence.next_opening(friday, "weekly", [1, 3], "Europe/Paris")
    assert nxt == datetime(2026, 3, 30, 9, 0, tzinfo=paris)  # Monday, now UTC+2
    assert nxt.astimezone(UTC).hour == 7
    daily = recurrence.next_opening(friday, "daily", [], "Europe/Paris")
    assert daily.astimezone(UTC) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    # Missed openings are skipped, not created in bulk.
    now = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
    later = recurrence.next_after(friday, "daily", [], "Europe/Paris", now)
    assert later == datetime(2026, 4, 11, 9, 0, tzinfo=paris)


async def test_recurring_checkins(
    stack: LtiStack, canvas: FakePlatform, course: Client, pool: asyncpg.Pool
) -> None:
    teacher = Api(stack.url, await launch_token(stack.url, canvas, course, "t-1", teacher=True))
    for bad, code in (
        ({"every": "hourly", "timezone": "UTC"}, "invalid_choice"),
        ({"every": "daily"}, "timezone_required"),
        ({"every": "daily", "timezone": "Mars/Olympus"}, "timezone_required"),
        ({"every": "weekly", "days": [], "timezone": "UTC"}, "invalid"),
        ({"every": "weekly", "days": [8], "timezone": "UTC"}, "invalid"),
        ("daily", "invalid"),
    ):
        status, body = await teacher.call("POST", "/checkins", {"question": "Q", "recurrence": bad})
        assert status == 422 and body["error"]["fields"] == {"recurrence": code}, bad

    opens = datetime.now(UTC) - timedelta(minutes=5)
    status, created = await teacher.call(
        "POST",
        "/checkins",
        {
            "question": "Weekly mood",
            "opens_at": opens.isoformat(),
            "closes_at": (opens + timedelta(hours=2)).isoformat(),
            "recurrence": {"every": "weekly", "days": [5, 1, 1], "timezone": "Europe/Paris"},
        },
    )
    assert status == 201, created
    assert created["recurrence"] == {"every": "weekly", "days": [1, 5], "timezone": "Europe/Paris"}

    # (The service's own scheduler may get there first: either way, one successor.)
    await recurrence.create_due(pool, "test")
    assert await recurrence.create_due(pool, "test") == 0  # each successor once
    _, listing = await teacher.call("GET", "/checkins")
    items = listing["checkins"]
    assert [c["question"] for c in items] == ["Weekly mood", "Weekly mood"]
    successor, first = items  # newest opening first
    assert first["id"] == created["id"]
    nxt = datetime.fromisoformat(successor["opens_at"])
    assert nxt > datetime.now(UTC) and nxt.astimezone(ZoneInfo("Europe/Paris")).isoweekday() in (
        1,
        5,
    )
    assert datetime.fromisoformat(successor["closes_at"]) - nxt == timedelta(hours=2)
    assert successor["status"] == "scheduled" and successor["recurrence"] == created["recurrence"]
    event = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_type = 'checkin.created'"
        " AND convert_from(value, 'UTF8') ~ ('\"recurs_from\": ?' || $1 || '[,}]')",
        str(created["id"]),
    )
    assert event == 1

    # Stopping the series: no recurrence on the successor, nothing more is created.
    status, edited = await teacher.call(
        "PATCH", f"/checkins/{successor['id']}", {"recurrence": None}
    )
    assert status == 200 and edited["recurrence"] is None
    # An edit without the field keeps the recurrence.
    status, kept = await teacher.call("PATCH", f"/checkins/{first['id']}", {"question": "W2"})
    assert status == 200 and kept["recurrence"] == created["recurrence"]
