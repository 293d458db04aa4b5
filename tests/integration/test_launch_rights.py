"""Launch records are personal data (who launched what, with which roles): the launch service
deletes them after ATTUNE_LAUNCH_RETENTION_DAYS, and `attune launches erase` deletes one user's
or one course's on demand."""

from __future__ import annotations

import argparse
import asyncio
import json
import types
import uuid

import asyncpg
import pytest
from aiohttp import web

import shared.tasks as shared_tasks
from services.launch import app as launch_service
from services.launch import queries
from services.launch.cli import run_erase
from shared.db import POOL_KEY
from shared.settings import Settings
from shared.web import SETTINGS_KEY
from tests.conftest import Infra

pytestmark = pytest.mark.integration


async def add_launches(
    pool: asyncpg.Pool,
    n: int,
    *,
    platform_id: int,
    subject: str,
    context_id: str = "course-1",
    age: str = "0 s",
) -> None:
    await pool.execute(
        "INSERT INTO launches (id, platform_id, deployment_id, message_type, subject, context_id,"
        " resource_link_id, roles, region, created_at)"
        " SELECT gen_random_uuid(), $1, 'd', 'LtiResourceLinkRequest', $2, $3, 'rl',"
        " '{Learner}', 'r', now() - $4::text::interval FROM generate_series(1, $5)",
        platform_id,
        subject,
        context_id,
        age,
        n,
    )


async def count(pool: asyncpg.Pool, platform_id: int, subject: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM launches WHERE platform_id = $1 AND subject = $2",
            platform_id,
            subject,
        )
    )


def platform() -> int:
    return 20_000_000 + uuid.uuid4().int % 1_000_000


async def test_records_past_retention_are_purged_in_bounded_batches(pool: asyncpg.Pool) -> None:
    p = platform()
    old = queries.PURGE_BATCH * 2 + 7
    await add_launches(pool, old, platform_id=p, subject="old", age="91 days")
    await add_launches(pool, 5, platform_id=p, subject="young", age="89 days")
    assert await queries.purge_expired_launches(pool, 90, pause_s=0) >= old  # several batches
    assert await count(pool, p, "old") == 0
    assert await count(pool, p, "young") == 5


@pytest.mark.parametrize("days", [90, 0])
async def test_the_launch_service_purges_them_every_minute_unless_kept(
    infra: Infra, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, days: int
) -> None:
    real_sleep = asyncio.sleep

    async def quick(_: float) -> None:
        await real_sleep(0.05)

    monkeypatch.setattr(shared_tasks, "asyncio", types.SimpleNamespace(sleep=quick))
    p = platform()
    await add_launches(pool, 3, platform_id=p, subject="old", age="91 days")
    await add_launches(pool, 3, platform_id=p, subject="young")
    app = web.Application()
    app[POOL_KEY] = pool
    app[SETTINGS_KEY] = infra.settings(launch_retention_days=days)
    task = asyncio.create_task(launch_service._purge_expired(app))
    try:
        for _ in range(100):
            if days and not await count(pool, p, "old"):
                break
            await real_sleep(0.05)
        assert await count(pool, p, "old") == (0 if days else 3)  # 0: kept for ever
        assert await count(pool, p, "young") == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_erase_one_user_or_one_course_on_one_platform(
    pool: asyncpg.Pool, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    p, other = platform(), platform()
    await add_launches(pool, 3, platform_id=p, subject="alice")
    await add_launches(pool, 2, platform_id=p, subject="bob")
    await add_launches(pool, 4, platform_id=other, subject="alice")  # same sub, other LMS
    args = argparse.Namespace(platform_id=p, subject="alice", context_id=None)
    assert await run_erase(args, settings) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"launches": 3}
    assert (await count(pool, p, "alice"), await count(pool, p, "bob")) == (0, 2)
    assert await count(pool, other, "alice") == 4

    await add_launches(pool, 2, platform_id=p, subject="carol", context_id="course-2")
    args = argparse.Namespace(platform_id=p, subject=None, context_id="course-1")
    assert await run_erase(args, settings) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "launches": 2
    }  # bob's, in course-1
    assert (await count(pool, p, "bob"), await count(pool, p, "carol")) == (0, 2)

    for subject, context in ((None, None), ("alice", "course-1")):
        with pytest.raises(ValueError, match="subject or a context"):
            await queries.erase_launches(pool, p, subject=subject, context_id=context)
