"""Real infrastructure for the test suite, resolved once per session.

Postgres: ``ATTUNE_TEST_DATABASE_URL`` or ``DATABASE_URL`` (allowed to create databases),
else testcontainers when a Docker engine answers, else an embedded cluster in a temporary
directory: fast (fsync, synchronous_commit and full_page_writes off) unless
``ATTUNE_TEST_POSTGRES=durable`` (``scripts/reliability`` sets it: figures that say "nothing
lost" come from a durable cluster). Kafka: ``ATTUNE_TEST_KAFKA`` or
``KAFKA_BOOTSTRAP_SERVERS``, else testcontainers, else the embedded Tansu broker. Every run gets
a fresh database migrated with the real migrations.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.events import topics
from shared.kafka import ensure_topics
from shared.migrate import upgrade
from shared.settings import Settings, load_settings
from tests.tmpdirs import RunDirectory, open_run_directory

if TYPE_CHECKING:
    from tests.fakes.platform import FakePlatform
    from tests.fakes.registration_platform import RegistrationPlatform
    from tests.lti_support import LtiStack


RUN_DIRECTORY = pytest.StashKey[RunDirectory]()


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # pytest then tears every fixture down, as after Ctrl-C


def pytest_configure(config: pytest.Config) -> None:
    """The run's own temporary directory (tests/tmpdirs.py) before anything is collected, and
    SIGTERM (a CI or `timeout` limit) handled like Ctrl-C so that it is removed at the end."""
    config.stash[RUN_DIRECTORY] = open_run_directory()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_DIRECTORY, None)
    if run is not None:
        run.close()


def _docker_available() -> bool:
    """True when a Docker engine answers ``/_ping`` (then testcontainers can be used)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine was configured explicitly; let testcontainers use it
    path = host.removeprefix("unix://")
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


@dataclass
class Infra:
    admin_url: str
    database_url: str
    bootstrap_servers: str
    embedded_broker: bool
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.env, **overrides)

    async def new_database(self, prefix: str = "attune_db") -> str:
        """An empty database of its own next to the run's; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        await _create_database(self.admin_url, name)
        return _with_database(self.admin_url, name)

    async def drop_database(self, url: str) -> None:
        await _drop_database(self.admin_url, url.rpartition("/")[2])


DURABILITY_ENV = "ATTUNE_TEST_POSTGRES"


def fast_postgres() -> bool:
    """Whether the embedded clusters of this run trade durability for speed."""
    value = os.environ.get(DURABILITY_ENV, "fast").strip().lower()
    if value not in ("fast", "durable"):
        raise pytest.UsageError(f"{DURABILITY_ENV} must be fast or durable, not {value!r}")
    return value == "fast"


def private_tmpdir(prefix: str) -> Path:
    """A temporary directory the ``postgres`` user can traverse (initdb runs as it under root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with ExitStack() as stack:
        docker = _docker_available()
        admin_url = os.environ.get("ATTUNE_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
        if not admin_url and docker:
            from testcontainers.postgres import PostgresContainer

            pg = stack.enter_context(PostgresContainer("postgres:15", driver=None))
            admin_url = pg.get_connection_url()
        if not admin_url:
            tmp = private_tmpdir("attune-test-pg-")
            stack.callback(shutil.rmtree, tmp, True)
            embedded_pg = stack.enter_context(EmbeddedPostgres(tmp / "data", fast=fast_postgres()))
            admin_url = embedded_pg.url

        bootstrap = os.environ.get("ATTUNE_TEST_KAFKA") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        embedded_broker = False
        if not bootstrap and docker:
            from testcontainers.kafka import KafkaContainer

            kafka = stack.enter_context(KafkaContainer())
            bootstrap = kafka.get_bootstrap_server()
        if not bootstrap:
            broker = stack.enter_context(EmbeddedBroker())
            bootstrap = broker.bootstrap_servers
            embedded_broker = True

        dbname = f"attune_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_create_database(admin_url, dbname))
        stack.callback(lambda: asyncio.run(_drop_database(admin_url, dbname)))
        database_url = _with_database(admin_url, dbname)
        upgrade(database_url)

        env = {
            "ATTUNE_ENV": "test",
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false" if embedded_broker else "true",
            "ATTUNE_KAFKA_CREATE_TOPICS": "true",
            "ATTUNE_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "ATTUNE_OUTBOX_POLL_INTERVAL_MS": "200",
            "ATTUNE_LOG_FORMAT": "json",
            "ATTUNE_PUBLIC_URL": "http://127.0.0.1:8000",
            # The region the stacks' first region and the tokens tests mint name: a checkins
            # service accepts launch tokens of its own region only.
            "ATTUNE_REGION": "us-east-1",
            "ATTUNE_ALLOW_INSECURE_URLS": "true",
            # Test-only secrets, made fresh per run.
            "ATTUNE_SECRET_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ATTUNE_KEY_ENCRYPTION_KEYS": "test1:" + base64.b64encode(os.urandom(32)).decode(),
        }
        result = Infra(admin_url, database_url, bootstrap, embedded_broker, env)
        asyncio.run(ensure_topics(result.settings(), topics.ALL))
        yield result


def _with_database(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


async def _create_database(admin_url: str, dbname: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()


async def _drop_database(admin_url: str, dbname: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def settings(infra: Infra) -> Settings:
    return infra.settings()


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(infra.database_url, min_size=1, max_size=10)
    assert p is not None
    # Each test starts with an empty event pipeline; tests run one at a time.
    await p.execute("TRUNCATE outbox, consumed_events, dead_letters")
    yield p
    await p.close()


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker this test alone may kill and restart."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A Postgres cluster this test alone may stop and restart (fast unless the run is
    durable, as the session's)."""
    yield from _own_cluster(fast=fast_postgres())


@pytest.fixture
def durable_postgres() -> Iterator[EmbeddedPostgres]:
    """A durable cluster (production settings) this test alone may stop, crash and restart:
    for the scenarios whose claim is that nothing acknowledged is lost."""
    yield from _own_cluster(fast=False)


def _own_cluster(*, fast: bool) -> Iterator[EmbeddedPostgres]:
    tmp = private_tmpdir("attune-own-pg-")
    try:
        with EmbeddedPostgres(tmp / "data", fast=fast) as pg:
            yield pg
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# The LTI fixtures most test files share; a module needing other settings (or a platform with
# more set up) defines its own under the same name. tests.lti_support imports this module (for
# ``Infra``), so it is imported where it is used.


@pytest.fixture
async def stack(infra: Infra, pool: asyncpg.Pool) -> AsyncIterator[LtiStack]:
    """The real gateway, login, launch and checkins services, one region, default settings."""
    from tests.lti_support import start_stack

    s, exits = await start_stack(infra, pool)
    try:
        yield s
    finally:
        await exits.aclose()


@pytest.fixture
async def canvas() -> AsyncIterator[FakePlatform]:
    """A fake Canvas of this test's own."""
    from tests.lti_support import platform_server

    async for p in platform_server("canvas"):
        yield p


@pytest.fixture
async def moodle() -> AsyncIterator[FakePlatform]:
    """A fake Moodle of this test's own."""
    from tests.lti_support import platform_server

    async for p in platform_server("moodle"):
        yield p


@pytest.fixture
async def moodle_registration() -> AsyncIterator[RegistrationPlatform]:
    """A fake Moodle of this test's own that registers Attune dynamically."""
    from tests.fakes.registration_platform import registration_platform

    async for p in registration_platform("moodle"):
        yield p


@pytest.fixture
async def canvas_registration() -> AsyncIterator[RegistrationPlatform]:
    """A fake Canvas of this test's own that registers Attune dynamically."""
    from tests.fakes.registration_platform import registration_platform

    async for p in registration_platform("canvas"):
        yield p
