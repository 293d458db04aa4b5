"""A service SIGKILLed under load in a running ``attune dev``, restarted by its supervisor.

The whole stack as a developer runs it (``python -m attune.cli dev``: supervisor, gateway,
the five service processes, the embedded broker), on a database of a durable Postgres cluster
(``DATABASE_URL``, production durability settings). Complete launches and check-in answers go
through the gateway while the checkins process and then the launch process are killed with
SIGKILL. The supervisor restarts each (on a new port) and the gateway holds the requests that
arrive meanwhile until the new process is ready. Afterwards:

- the stack is still running (a crash no longer takes it down), each service restarted once;
- only the requests in flight at a kill failed (their outcome unknown to the client: a reset
  connection or the gateway's 502 ``upstream_unavailable``); requests sent during the restart
  succeeded after a wait;
- nothing acknowledged is missing or half-written, every launch and answer event was applied
  exactly once by a work consumer, and the roster holds every launched user.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devstack.embedded import EmbeddedPostgres, free_port
from shared.settings import load_settings
from tests.conftest import Infra, private_tmpdir
from tests.fakes.platform import FakePlatform
from tests.integration.test_dev_stack import _descendants, _proc_cmdline, _wait_all_ready
from tests.lti_support import LtiStack, Region
from tests.reliability.load import (
    Effects,
    Load,
    audit,
    load_figures,
    migrated_database,
    open_course,
    wait_for,
)
from tests.reliability.record import durability_of
from tests.reliability.test_broker_loss import _ROSTER_GAP

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# What a client may see for a request in flight when its service is killed.
IN_FLIGHT_CODES = {"connection", "upstream_unavailable"}
KILLED = ("checkins", "launch")


def _service_pid(root: int, name: str) -> int | None:
    for pid in _descendants(root):
        argv = _proc_cmdline(pid).split()
        if "serve" in argv and name in argv:
            return pid
    return None


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


@pytest.fixture
def work_dir() -> Iterator[Path]:
    path = private_tmpdir("attune-supervised-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(300)
async def test_service_sigkill_under_load_is_restarted_by_the_supervisor(
    infra: Infra,
    durable_postgres: EmbeddedPostgres,
    canvas: FakePlatform,
    work_dir: Path,
) -> None:
    url = await migrated_database(durable_postgres, "attune_supervised")
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
        "DATABASE_URL": url,
        "ATTUNE_PUBLIC_URL": gateway,
        "ATTUNE_SECRET_KEYS": infra.env["ATTUNE_SECRET_KEYS"],
        "ATTUNE_KEY_ENCRYPTION_KEYS": infra.env["ATTUNE_KEY_ENCRYPTION_KEYS"],
        "ATTUNE_RATE_LIMIT_IP_PER_S": "100000",
        "ATTUNE_RATE_LIMIT_IP_BURST": "100000",
        "ATTUNE_OUTBOX_POLL_INTERVAL_MS": "200",
    }
    data_dir = work_dir / "data"
    log = work_dir / "dev.log"
    argv = [sys.executable, "-m", "attune.cli", "dev", "--no-emulator", "--port", str(port),
            "--data-dir", str(data_dir)]  # fmt: skip
    dev = _start(argv, env, log)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    assert pool is not None
    started = time.monotonic()
    try:
        await asyncio.to_thread(_wait_all_ready, dev, port, log)
        state = json.loads((data_dir / "dev-state.json").read_text())["env"]
        settings = load_settings(
            {**infra.env, "DATABASE_URL": url,
             "KAFKA_BOOTSTRAP_SERVERS": state["KAFKA_BOOTSTRAP_SERVERS"]}
        )  # fmt: skip
        effects = Effects(pool, settings)
        await effects.create()
        consumer = asyncio.create_task(effects.consumer().run())
        try:
            stack = LtiStack(regions=[Region("default", gateway)], settings={}, pool=pool)
            course = await open_course(stack, canvas, learners=3)
            load = Load(course, settings)
            await load.start()
            kills: dict[str, float] = {}
            try:
                for name in KILLED:
                    await asyncio.sleep(3)
                    pid = _service_pid(dev.pid, name)
                    assert pid is not None, f"no {name} process"
                    os.kill(pid, signal.SIGKILL)
                    kills[name] = time.monotonic()

                    async def restarted(name: str = name, killed: int = pid) -> bool:
                        assert dev.poll() is None, log.read_text()[-3000:]
                        new = _service_pid(dev.pid, name)
                        return new not in (None, killed) and (
                            log.read_text().count("service_restarted") == len(kills)
                        )

                    await wait_for(restarted, 60, f"{name} restarted by the supervisor")
                await asyncio.sleep(3)
            finally:
                seconds = await load.stop()

            async def all_applied() -> bool:
                return await effects.all_applied()

            await wait_for(all_applied, 60, "every event applied")
            await asyncio.sleep(1)  # room for a duplicate effect to show up
            produced, applied, rows, _ = await effects.counts()
            roster_gap = int(await pool.fetchval(_ROSTER_GAP, course.platform_id))
            data = await audit(pool, load.tally, course)
            durability = await durability_of(pool)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await effects.drop()
        still_running = dev.poll() is None
        dev.send_signal(signal.SIGINT)
        exit_code = await asyncio.to_thread(dev.wait, 60)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        await pool.close()
    text = log.read_text()
    tally = load.tally
    served_after = {n: tally.successes_since(t, "answer" if n == "checkins" else "launch")
                    for n, t in kills.items()}  # fmt: skip
    load_figures(
        "service SIGKILL under attune dev, restarted by the supervisor",
        "fault",
        tally,
        produced=produced,
        applied=applied,
        data_lost=data.data_lost,
        seconds=time.monotonic() - started,
        note=f"killed {', '.join(KILLED)} once each under load; restarted "
        f"{text.count('service_restarted')} times, the stack kept running; "
        f"{len(tally.launches)} launches, {len(tally.answers)} answers acknowledged in "
        f"{seconds:.1f} s; served after each kill {served_after}; "
        f"{sum(tally.errors.values())} requests failed (in flight at a kill); roster gap "
        f"{roster_gap}; duplicate effects {rows - applied}",
        postgres=durability,
    )
    assert durability == "durable"
    assert still_running, text[-3000:]
    assert exit_code == 0, text[-3000:]
    assert text.count("service_exited") == len(KILLED)
    assert data.data_lost == 0, (data.missing[:5], data.half_written[:5])
    assert produced == applied, f"{produced - applied} events never applied"
    assert rows == applied, f"{rows - applied} events applied twice"
    assert roster_gap == 0
    unexpected = {code: n for code, n in tally.errors.items() if code not in IN_FLIGHT_CODES}
    assert unexpected == {}, f"errors beyond the requests in flight at a kill: {unexpected}"
    assert all(n > 0 for n in served_after.values()), served_after
    assert "Traceback" not in text.split("service_exited")[0]  # nothing before the first kill
