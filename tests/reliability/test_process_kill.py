"""The checkins service SIGKILLed while students' answers are in flight, then restarted.

The service runs as a real process (``python -m attune.cli serve checkins``, as deployed) on
the session's Postgres and broker. Students answer one check-in concurrently and retry on a
refused connection or a reset, as the app's page does; the process is killed twice mid-load and
started again on the same port. Whatever the timing:

- each client ends with a success (or, bounded, an error), never a duplicate: exactly one
  stored answer per student, with the emotion that student sent;
- events match the stored answers: every answer has exactly one first-answer event
  (``changed: false``), a retry whose first attempt had committed only adds a ``changed``
  event with the same emotion, and no event names a student without a stored answer;
- no orphan outbox row: after the restart the relay publishes every committed event, and each
  one is read back from the broker (none lost).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from devstack.embedded import free_port, pdeathsig_preexec
from shared.events import topics
from shared.lti.launch_token import LaunchTokens
from shared.signing import parse_secrets
from tests.conftest import Infra
from tests.reliability.record import Figures, durability_of, record

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = 40
KILLS = 2
EMOTIONS = ["sad", "happy", "okay", "calm", "proud", "tired", "curious", "relaxed"]
CLIENT_DEADLINE_S = 45.0
READY_TIMEOUT_S = 30.0


class Service:
    """One ``checkins`` process on a fixed port, killable and restartable."""

    def __init__(self, infra: Infra, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **infra.env,
            "ATTUNE_LOG_FORMAT": "json",
            "ATTUNE_LOG_LEVEL": "INFO",
            "ATTUNE_SHUTDOWN_TIMEOUT_S": "2",
            "ATTUNE_RATE_LIMIT_IP_PER_S": "1000000",
            "ATTUNE_RATE_LIMIT_IP_BURST": "1000000",
        }
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"checkins-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "attune.cli", "serve", "checkins", "--port", str(self.port)],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pdeathsig_preexec(signal.SIGKILL),
        )
        log.close()

    async def ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.proc is not None and self.proc.poll() is None, "service exited"
                try:
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "checkins did not start"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for path in sorted(self.log_dir.glob("checkins-*.log")):
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    continue
        return lines


@pytest.fixture
def service(infra: Infra, tmp_path: Path) -> Iterator[Service]:
    svc = Service(infra, tmp_path)
    try:
        yield svc
    finally:
        svc.stop()


def token(infra: Infra, platform_id: int, context: str, subject: str, role: str) -> str:
    settings = infra.settings()
    tokens = LaunchTokens(parse_secrets(settings.secret_keys), ttl_s=3600)
    return tokens.issue(
        launch_id=str(uuid.uuid4()),
        platform_id=platform_id,
        deployment_id="d-kill",
        subject=subject,
        context_id=context,
        resource_link_id="rl-kill",
        roles=(role,),
        message_type="LtiResourceLinkRequest",
        region="us-east-1",
    )


async def consume_ids(infra: Infra, subject: str, want: set[str], timeout: float) -> set[str]:
    """Event ids with ``subject`` read from the check-in topic, until ``want`` is seen."""
    consumer = AIOKafkaConsumer(
        topics.CHECKIN,
        bootstrap_servers=infra.bootstrap_servers,
        group_id=f"kill-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + timeout
        while not want <= seen and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for rec in records:
                    event = json.loads(rec.value)
                    if event.get("subject") == subject:
                        seen.add(event["id"])
    finally:
        await consumer.stop()
    return seen


async def test_sigkill_mid_answers_no_duplicate_no_orphan(
    infra: Infra, pool: asyncpg.Pool, service: Service
) -> None:
    fig = Figures(
        scenario="checkins_sigkill_mid_answers", suite="fault", postgres=await durability_of(pool)
    )
    started = time.monotonic()
    context = f"course-kill-{uuid.uuid4().hex[:8]}"
    platform_id = await pool.fetchval(
        "INSERT INTO platforms (issuer, client_id, auth_url, jwks_url, token_url, product,"
        " deployment_policy) VALUES ($1, 'kill', $2, $2, $2, 'canvas', 'accept') RETURNING id",
        f"https://{context}.example",
        "https://lms.example/x",
    )
    teacher = token(infra, platform_id, context, "kill-teacher", "instructor")
    students = {f"kill-s{i:02d}": EMOTIONS[i % len(EMOTIONS)] for i in range(STUDENTS)}
    service.start()
    await service.ready()

    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{service.url}/api/checkins/checkins",
            json={"question": "How are you, under fire?"},
            headers={"Authorization": f"Bearer {teacher}"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            checkin_id = (await resp.json())["id"]
        answer_url = f"{service.url}/api/checkins/checkins/{checkin_id}/response"

        outcomes: dict[str, str] = {}
        attempts: Counter[str] = Counter()
        in_flight = 0
        in_flight_at_kill: list[int] = []

        async def student(subject: str, emotion: str) -> None:
            nonlocal in_flight
            headers = {
                "Authorization": f"Bearer {token(infra, platform_id, context, subject, 'learner')}"
            }
            deadline = time.monotonic() + CLIENT_DEADLINE_S
            while time.monotonic() < deadline:
                attempts[subject] += 1
                fig.requests += 1
                in_flight += 1
                try:
                    async with session.put(
                        answer_url,
                        json={"emotion": emotion},
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as resp:
                        body = await resp.text()
                        if resp.status in (200, 201):
                            outcomes[subject] = f"ok_{resp.status}"
                            return
                        code = json.loads(body)["error"]["code"] if body.startswith("{") else None
                        fig.count(code or f"http_{resp.status}")
                        if resp.status >= 500:
                            fig.server_errors += 1
                        else:
                            outcomes[subject] = f"refused_{code}"
                            return
                except (aiohttp.ClientConnectionError, TimeoutError):
                    fig.count("connection")
                finally:
                    in_flight -= 1
                await asyncio.sleep(0.05 + 0.01 * (attempts[subject] % 5))
            outcomes[subject] = "gave_up"

        async def killer() -> None:
            for _ in range(KILLS):
                # Kill once some answers are committed and others are still in flight.
                floor = min(len(outcomes) + 3, STUDENTS - 5)
                for _ in range(2000):  # at most 20 s
                    if len(outcomes) >= floor:
                        break
                    await asyncio.sleep(0.01)
                in_flight_at_kill.append(in_flight)
                service.kill()
                await asyncio.sleep(0.3)
                service.start()
                await service.ready()

        clients = [student(s, e) for s, e in students.items()]
        await asyncio.gather(killer(), *clients)

    # Every client ended with a success: a kill costs retries, never the answer.
    assert Counter(o.split("_")[0] for o in outcomes.values()) == {"ok": STUDENTS}, outcomes

    rows = await pool.fetch(
        "SELECT respondent, emotion FROM checkin_responses WHERE checkin_id = $1", checkin_id
    )
    stored = {r["respondent"]: r["emotion"] for r in rows}
    assert len(rows) == len(stored) == STUDENTS, "a student has no answer or more than one"
    assert stored == students, "a stored answer differs from what its student sent"

    # The relay of the restarted process publishes what the killed ones committed.
    deadline = time.monotonic() + 20
    while await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND key = $1",
        f"course:{platform_id}:{context}".encode(),
    ):
        assert time.monotonic() < deadline, "committed events were never published"
        await asyncio.sleep(0.2)
    events = await pool.fetch(
        "SELECT id, value FROM outbox WHERE event_type = 'checkin.answered' AND key = $1",
        f"course:{platform_id}:{context}".encode(),
    )
    by_student: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in events:
        data = json.loads(row["value"])["data"]
        by_student[data["respondent"]].append(data)
    assert set(by_student) == set(stored), "an event names a student without an answer"
    for subject, seen in by_student.items():
        assert sum(1 for d in seen if not d["changed"]) == 1, (subject, seen)
        assert {d["emotion"] for d in seen} == {stored[subject]}, (subject, seen)
    retried_commits = sum(len(v) - 1 for v in by_student.values())

    want = {str(r["id"]) for r in events}
    got = await consume_ids(infra, f"checkin:{checkin_id}", want, timeout=30)
    fig.events_produced = len(want)
    fig.events_consumed = len(want & got)
    fig.events_lost = len(want - got)
    fig.data_lost = STUDENTS - len(stored)
    fig.seconds = round(time.monotonic() - started, 3)
    unhandled = [x for x in service.log_lines() if x.get("event") == "unhandled_error"]
    fig.note = (
        f"{KILLS} SIGKILLs, {STUDENTS} students, {sum(attempts.values())} attempts; "
        f"{retried_commits} retries re-sent an answer whose first attempt had committed; "
        f"requests in flight at each kill: {in_flight_at_kill}"
    )
    record(fig)
    assert fig.events_lost == 0, want - got
    assert fig.server_errors == 0
    assert not unhandled, unhandled[0]
    assert service.starts == KILLS + 1
    assert in_flight_at_kill[0] > 0, "the first kill found no request in flight"
