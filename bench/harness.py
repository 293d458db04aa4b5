"""Shared pieces of the benchmarks: embedded infrastructure, service processes, CPU accounting.

Everything listens on 127.0.0.1 and every load loop is bounded in count and time. The embedded
Postgres is durable (PostgreSQL's production settings: fsync, synchronous_commit and
full_page_writes on) unless a benchmark is run with ``--fast-postgres``; every benchmark prints
the settings the server reported (``durability``) above its table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    free_port,
    pdeathsig_preexec,
)
from shared.events import topics
from shared.kafka import ensure_topics
from shared.migrate import upgrade
from shared.settings import load_settings

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int, *, exited_children: bool = False) -> float:
    """User+system CPU of one process (0 if it is gone); with ``exited_children``, also that
    of its children that already exited (their time is in its cutime/cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(f) for f in fields[11 : 15 if exited_children else 13]) / CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except FileNotFoundError:
        return 0.0


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant (Postgres backends of a postmaster)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        result.append(pid)
        todo.extend(children.get(pid, []))
    return result


def tree_cpu(root: int) -> float:
    """CPU of a process tree, including children that already exited (a Postgres backend
    that closed, an autovacuum worker): their time is in their parent's cutime/cstime."""
    return sum(cpu_seconds(pid, exited_children=True) for pid in process_tree(root))


def tree_rss_mb(root: int) -> float:
    return sum(rss_mb(p) for p in process_tree(root))


def pin(root: int, cpus: set[int]) -> None:
    """Move a process tree to ``cpus`` (children forked later inherit it)."""
    for pid in process_tree(root):
        try:
            os.sched_setaffinity(pid, cpus)
        except (ProcessLookupError, PermissionError):
            pass


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


FAST_POSTGRES_HELP = (
    "embedded Postgres with fsync, synchronous_commit and full_page_writes off: NOT production "
    "durability (default: durable); the output says which was used"
)
_DURABILITY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


def add_postgres_options(parser: argparse.ArgumentParser) -> None:
    """``--database-url`` and ``--fast-postgres``, the same in every benchmark."""
    parser.add_argument("--database-url", help="an existing Postgres instead of an embedded one")
    parser.add_argument("--fast-postgres", action="store_true", help=FAST_POSTGRES_HELP)


def durability(database_url: str) -> str:
    """One line naming the durability settings the server runs with, as it reports them."""

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(database_url)
        try:
            return {
                name: str(await conn.fetchval("SELECT current_setting($1)", name))
                for name in _DURABILITY_SETTINGS
            }
        finally:
            await conn.close()

    values = asyncio.run(read())
    listed = ", ".join(f"{name} {values[name]}" for name in _DURABILITY_SETTINGS)
    durable = values["fsync"] == "on" and values["synchronous_commit"] != "off"
    kind = "durable" if durable else "NOT DURABLE (--fast-postgres; not production figures)"
    return f"Postgres: {kind}: {listed}"


@dataclass
class Stack:
    env: dict[str, str]
    database_url: str
    postgres_pid: int | None
    durability: str = ""
    broker_pid: int | None = None
    cpus: set[int] | None = None  # --pin: the services' CPUs
    services: dict[str, tuple[int, subprocess.Popen[bytes]]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.services[service][0]}"

    def pid(self, service: str) -> int:
        return self.services[service][1].pid


@contextmanager
def infrastructure(
    database_url: str | None, kafka: str | None, *, fast_postgres: bool = False
) -> Iterator[Stack]:
    """Embedded Postgres (durable unless ``fast_postgres``) and broker unless URLs are given;
    a fresh migrated database."""
    with ExitStack() as stack:
        pg_pid = broker_pid = None
        if database_url is None:
            tmp = Path(tempfile.mkdtemp(prefix="attune-bench-"))
            tmp.chmod(0o755)
            stack.callback(shutil.rmtree, tmp, True)
            pg = stack.enter_context(EmbeddedPostgres(tmp / "pg", fast=fast_postgres))
            database_url = pg.url
            pg_pid = pg.pid
        if kafka is None:
            broker = stack.enter_context(EmbeddedBroker())
            kafka = broker.bootstrap_servers
            broker_pid = broker.pid
        upgrade(database_url)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "ATTUNE_KAFKA_CREATE_TOPICS": "true",
            "ATTUNE_ENV": "development",
            "ATTUNE_ALLOW_INSECURE_URLS": "true",
            "ATTUNE_LOG_LEVEL": os.environ.get("ATTUNE_LOG_LEVEL", "WARNING"),
            # One generator address sends every launch: per-IP/per-platform limits off.
            "ATTUNE_RATE_LIMIT_IP_PER_S": "1000000",
            "ATTUNE_RATE_LIMIT_IP_BURST": "1000000",
            "ATTUNE_RATE_LIMIT_PLATFORM_PER_S": "1000000",
            "ATTUNE_RATE_LIMIT_PLATFORM_BURST": "1000000",
            "ATTUNE_SECRET_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ATTUNE_KEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
        }
        asyncio.run(ensure_topics(load_settings(env), topics.ALL))
        result = Stack(
            env=env,
            database_url=database_url,
            postgres_pid=pg_pid,
            broker_pid=broker_pid,
            durability=durability(database_url),
        )
        print(result.durability, flush=True)
        try:
            yield result
        finally:
            for _port, proc in result.services.values():
                proc.terminate()
            for _port, proc in result.services.values():
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def child_preexec(cpus: set[int] | None) -> Callable[[], None]:
    """``preexec_fn`` for a server the benchmark starts: SIGTERM when the benchmark dies, and
    (``--pin``) the given CPUs."""
    death = pdeathsig_preexec(signal.SIGTERM)

    def preexec() -> None:
        if death:
            death()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return preexec


@dataclass
class Measured:
    """What ``measure`` saw: each client process's result, the wall time between the start
    barrier and the last result, and CPU seconds per group and of the client processes."""

    results: list[Any]
    seconds: float
    cpu: dict[str, float]
    generator_cpu: float


def measure(
    target: Callable[..., None], args: Sequence[tuple[Any, ...]], groups: dict[str, int]
) -> Measured:
    """Run one client process per ``args`` entry (``target(*args, barrier, out)``: wait on the
    barrier, then put its result on ``out``), all released together, and account the CPU of
    every process tree in ``groups`` (name -> root pid) and of the clients over that window."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(args) + 1)
    out = ctx.Queue()
    workers = [ctx.Process(target=target, args=(*a, barrier, out)) for a in args]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    cpu0 = {name: tree_cpu(pid) for name, pid in groups.items()}
    gen0 = sum(cpu_seconds(w.pid) for w in workers if w.pid)
    results = [out.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    cpu1 = {name: tree_cpu(pid) for name, pid in groups.items()}
    gen1 = sum(cpu_seconds(w.pid) for w in workers if w.pid)
    for w in workers:
        w.join(30)
    return Measured(
        results=results,
        seconds=elapsed,
        cpu={name: cpu1[name] - cpu0[name] for name in groups},
        generator_cpu=gen1 - gen0,
    )


def start_service(
    stack: Stack,
    name: str,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    *,
    service: str | None = None,
) -> None:
    """Run ``attune serve <service>`` (default: ``name``) as ``stack.services[name]``."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "attune.cli", "serve", service or name, "--port", str(port)],
        env={**stack.env, **(extra_env or {})},
        cwd=ROOT,
        preexec_fn=child_preexec(stack.cpus),
    )
    stack.services[name] = (port, proc)


async def wait_ready(stack: Stack, timeout: float = 60) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        for name in stack.services:
            while True:
                try:
                    async with session.get(f"{stack.url(name)}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not become ready")
                await asyncio.sleep(0.2)


async def execute(database_url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()
