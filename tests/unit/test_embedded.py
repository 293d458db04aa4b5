"""The embedded PostgreSQL and Kafka-protocol broker really start, serve, crash and stop."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack import embedded
from devstack.embedded import EmbeddedBroker, EmbeddedError, EmbeddedPostgres, free_port

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def traversable_dir() -> Iterator[pathlib.Path]:
    # pytest's tmp_path sits under a 0o700 /tmp/pytest-of-root, which the postgres user
    # (used when the tests run as root) cannot enter.
    path = pathlib.Path(tempfile.mkdtemp(prefix="attune-embedded-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return False
    # The container's PID 1 may never reap orphans, so a dead one can linger as a zombie.
    return fields[0] not in ("Z", "X")


def _wait_dead(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_postgres_serves_survives_a_crash_and_stops(traversable_dir: pathlib.Path) -> None:
    pg = EmbeddedPostgres(traversable_dir / "pgdata")
    try:
        pg.start()
        port, first_pid = pg.port, pg.pid
        assert first_pid is not None
        assert pg.url == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        assert pg.url_for("attune").endswith(f":{port}/attune")

        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            await conn.execute("CREATE TABLE survivor (id int)")
            await conn.execute("INSERT INTO survivor VALUES (42)")
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

        pg.kill()
        assert not pg.running
        assert _group_members(first_pid) == []
        with pytest.raises(OSError):
            await asyncpg.connect(pg.url, timeout=5)

        pg.restart()
        assert pg.port == port
        assert pg.pid not in (None, first_pid)
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT id FROM survivor") == 42
        finally:
            await conn.close()

        process = pg._process
        assert process is not None
        second_pid = process.pid
        pg.stop()
        assert process.returncode == 0  # fast shutdown, not SIGKILL
        assert not pg.running
        assert pg.pid is None
        assert _group_members(second_pid) == []
        pg.stop()  # idempotent
    finally:
        pg.stop()
    assert (traversable_dir / "postgres.log").stat().st_size > 0


async def test_postgres_is_durable_unless_asked_and_keeps_commits_through_a_crash(
    traversable_dir: pathlib.Path,
) -> None:
    """Regression: the embedded cluster ran with fsync, synchronous_commit and
    full_page_writes off by default, so a benchmark or scenario using it silently measured a
    non-durable database. Durable is the default now: every commit acknowledged before
    ``pg_ctl stop -m immediate`` (no checkpoint, crash recovery on the next start) is there
    afterwards. ``fast=True`` is the explicit opt-out."""
    durable = EmbeddedPostgres(traversable_dir / "durable")
    fast = EmbeddedPostgres(traversable_dir / "fast", fast=True)
    try:
        durable.start()
        fast.start()
        show = "SELECT current_setting($1)"
        for pg, expected in ((durable, "on"), (fast, "off")):
            conn = await asyncpg.connect(pg.url)
            try:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    assert await conn.fetchval(show, setting) == expected, (pg.fast, setting)
            finally:
                await conn.close()
        fast.stop()

        conn = await asyncpg.connect(durable.url)
        try:
            await conn.execute("CREATE TABLE acked (n int)")
            for n in range(200):  # each one its own acknowledged commit
                await conn.execute("INSERT INTO acked VALUES ($1)", n)
        finally:
            await conn.close()
        first_pid = durable.pid
        assert first_pid is not None
        durable.stop_immediate()
        assert not durable.running
        assert _group_members(first_pid) == []
        durable.start()
        conn = await asyncpg.connect(durable.url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM acked") == 200
        finally:
            await conn.close()
    finally:
        durable.stop()
        fast.stop()


async def test_broker_produces_and_consumes(tmp_path: pathlib.Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        servers = broker.bootstrap_servers
        assert servers == f"127.0.0.1:{broker.port}"

        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("embedded-test", 1, 1)])
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait("embedded-test", b"hello", key=b"k")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            "embedded-test", bootstrap_servers=servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=20)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"k", b"hello")

        process = broker._process
        assert process is not None
    assert not broker.running
    assert process.returncode is not None
    assert _group_members(process.pid) == []


async def test_broker_restart_keeps_port_and_loses_topics() -> None:
    broker = EmbeddedBroker()
    try:
        broker.start()
        port = broker.port
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("ephemeral", 1, 1)])
            assert "ephemeral" in await admin.list_topics()
        finally:
            await admin.close()

        broker.kill()
        assert not broker.running
        broker.restart()
        assert broker.port == port

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            assert "ephemeral" not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        broker.stop()
    broker.stop()  # idempotent


def test_servers_die_when_the_starting_process_is_killed(traversable_dir: pathlib.Path) -> None:
    # SIGKILL gives the starter no chance to clean up; the parent-death signal must, and
    # for PostgreSQL it must survive the switch to the postgres user.
    script = textwrap.dedent(
        f"""
        import json, pathlib, time
        from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
        pg = EmbeddedPostgres(pathlib.Path({str(traversable_dir / "pgdata")!r}))
        pg.start()
        broker = EmbeddedBroker()
        broker.start()
        print("PIDS", json.dumps([pg.pid, broker.pid]), flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    starter = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=PROJECT_ROOT,
    )
    try:
        assert starter.stdout is not None
        # structlog's default logger also writes to stdout; skip its lines.
        line = b""
        for line in starter.stdout:
            if line.startswith(b"PIDS "):
                break
        pids: list[int] = json.loads(line.removeprefix(b"PIDS "))
        assert all(_alive(pid) for pid in pids)
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        assert starter.stdout is not None
        starter.stdout.close()
    assert _wait_dead(pids, timeout=15) == []
    assert _group_members(pids[0]) == []  # no orphaned PostgreSQL backends either


def test_missing_postgres_binaries_are_reported(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_PG_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedError, match="apt-get install -y postgresql"):
        EmbeddedPostgres(tmp_path / "pgdata")


def test_missing_broker_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedError, match=r"pip install -e '\.\[dev\]'"):
        EmbeddedBroker()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to postgres")
def test_untraversable_parent_is_reported() -> None:
    private = pathlib.Path(tempfile.mkdtemp(prefix="attune-private-"))  # mode 0o700
    try:
        with pytest.raises(EmbeddedError, match="cannot traverse"):
            EmbeddedPostgres(private / "pgdata").start()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_busy_port_is_reported_not_mistaken_for_readiness() -> None:
    # Tansu does not exit when its bind fails, and a connect to someone else's listener
    # would succeed, so start() must refuse up front.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        broker = EmbeddedBroker(port=sock.getsockname()[1])
        with pytest.raises(EmbeddedError, match="already in use"):
            broker.start()
    assert not broker.running
