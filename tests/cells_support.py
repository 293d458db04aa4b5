"""Regional cells on one machine: a home region and other cells, each with its own embedded
Postgres and Kafka-protocol broker, joined by ``devstack.wan.WanLink`` relays that add 150 ms
each way wherever a cell and the home region talk.

- home (``us-east-1``): the registration and jwks services behind its gateway. Its public URL
  (``ATTUNE_PUBLIC_URL``: the JWKS every registration names) is reached through ``public``, a
  link across the ocean from every cell.
- each cell: login, launch and checkins behind its gateway (its ``ATTUNE_REGIONS`` URL), its
  own database, broker, ``ATTUNE_SECRET_KEYS`` and KEK; its mirror reads the home cluster
  through ``links[cell].to_home``; the home region reads the cell's cluster (keys, sightings)
  through ``links[cell].from_home``.

Every service runs in the test's event loop (as ``tests/lti_support.py`` does). ``stop_home``
and ``start_home`` take the whole home region down and bring it back: its Postgres keeps its
data, its embedded broker comes back empty (memory storage), as after losing a cluster.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from devstack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from devstack.gateway import create_gateway
from devstack.wan import WanLink
from services.checkins.app import create_app as checkins_app
from services.jwks.app import create_app as jwks_app
from services.launch.app import create_app as launch_app
from services.login.app import create_app as login_app
from services.registration.app import create_app as registration_app
from services.registration.cli import create_token
from shared.events import topics
from shared.kafka import ensure_topics
from shared.migrate import upgrade
from shared.settings import Settings, load_settings
from tests.conftest import fast_postgres, private_tmpdir

HOME = "us-east-1"
CELLS = ("eu-west-1", "ap-southeast-2")
DELAY_S = 0.15
FACTORIES: dict[str, Callable[[Settings], web.Application]] = {
    "registration": registration_app,
    "jwks": jwks_app,
    "login": login_app,
    "launch": launch_app,
    "checkins": checkins_app,
}


def _secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass
class Region:
    name: str
    services: tuple[str, ...]
    port: int  # the gateway's, fixed for the region's life (its ATTUNE_REGIONS URL)
    pg: EmbeddedPostgres
    broker: EmbeddedBroker
    env: dict[str, str] = field(default_factory=dict)
    pool: asyncpg.Pool | None = None
    settings: Settings | None = None
    service_urls: dict[str, str] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None
        return self.pool


@dataclass
class Link:
    to_home: WanLink  # this cell's clients of the home cluster (the mirror)
    from_home: WanLink  # the home region's clients of this cell's cluster (keys, sightings)

    @property
    def all(self) -> tuple[WanLink, WanLink]:
        return self.to_home, self.from_home


@dataclass
class Cells:
    home: Region
    cells: dict[str, Region]
    links: dict[str, Link]
    public: WanLink  # the home region's public URL, as a cell (or an LMS) reaches it
    admin_token: str = ""
    exits: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def regions(self) -> list[Region]:
        return [self.home, *self.cells.values()]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def links_of(self, cell: str) -> tuple[WanLink, ...]:
        """Every link a cell's traffic with the home region may take."""
        return (*self.links[cell].all, self.public)

    async def start_region(self, region: Region) -> None:
        if not region.pg.running:
            region.pg.start()
        if not region.broker.running:
            region.broker.start()
        await asyncio.to_thread(upgrade, region.pg.url)
        region.settings = load_settings(region.env)
        await ensure_topics(region.settings, topics.ALL)
        region.pool = await asyncpg.create_pool(region.pg.url, min_size=1, max_size=5)
        upstreams = {}
        for service in region.services:
            runner, url = await _serve(FACTORIES[service](region.settings))
            region.runners.append(runner)
            region.service_urls[service] = url
            upstreams[service] = url
        runner, _ = await _serve(create_gateway(upstreams), region.port)
        region.runners.append(runner)

    async def stop_region(self, region: Region) -> None:
        await _stop_services(region)
        region.broker.stop()
        region.pg.stop()

    async def stop_home(self) -> None:
        await self.stop_region(self.home)

    async def start_home(self) -> None:
        await self.start_region(self.home)
        await wait_ready(self.home, "jwks")

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The home region's admin API, as an operator calls it."""
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, f"{self.home.url}{path}", json=body, headers=self.admin
            ) as resp,
        ):
            return resp.status, await resp.json()


async def _serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 120, what: str = "condition"
) -> float:
    """Wait until ``predicate`` holds; returns the seconds it took. The bound only stops a
    test that would hang: a busy machine slows everything down."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def wait_ready(region: Region, service: str) -> None:
    async def ready() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{region.service_urls[service]}/readyz") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(ready, what=f"{region.name} {service} ready")


async def start_cells(exits: AsyncExitStack) -> Cells:
    """Home and two cells, running; everything is stopped by ``exits``."""
    fast = fast_postgres()

    def region(name: str, services: tuple[str, ...]) -> Region:
        tmp = private_tmpdir(f"attune-cell-{name}-")
        exits.callback(shutil.rmtree, tmp, True)
        return Region(
            name,
            services,
            free_port(),
            EmbeddedPostgres(Path(tmp) / "data", fast=fast),
            EmbeddedBroker(),
        )

    home = region(HOME, ("registration", "jwks"))
    cells = {name: region(name, ("login", "launch", "checkins")) for name in CELLS}
    for r in (home, *cells.values()):
        r.pg.start()
        exits.callback(r.pg.stop)
        r.broker.start()
        exits.callback(r.broker.stop)
    public = await WanLink("127.0.0.1", home.port, delay_s=DELAY_S, name="public").start()
    exits.push_async_callback(public.stop)
    links = {}
    for name, cell in cells.items():
        to_home = WanLink(
            "127.0.0.1", home.broker.port, delay_s=DELAY_S, kafka=True, record=True, name=name
        )
        from_home = WanLink(
            "127.0.0.1", cell.broker.port, delay_s=DELAY_S, kafka=True, record=True, name=name
        )
        links[name] = Link(await to_home.start(), await from_home.start())
        exits.push_async_callback(to_home.stop)
        exits.push_async_callback(from_home.stop)
    public.record = True
    stack = Cells(home, cells, links, public, exits=exits)
    region_map = ",".join(f"{r.name}={r.url}" for r in stack.regions)
    for r in stack.regions:
        r.env = {
            "ATTUNE_ENV": "test",
            "DATABASE_URL": r.pg.url,
            "KAFKA_BOOTSTRAP_SERVERS": r.broker.bootstrap_servers,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "ATTUNE_KAFKA_CREATE_TOPICS": "true",
            "ATTUNE_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "ATTUNE_OUTBOX_POLL_INTERVAL_MS": "200",
            "ATTUNE_LOG_FORMAT": "json",
            "ATTUNE_LOG_LEVEL": "WARNING",
            "ATTUNE_PUBLIC_URL": f"http://127.0.0.1:{public.port}",
            "ATTUNE_REGIONS": region_map,
            "ATTUNE_REGION": r.name,
            "ATTUNE_ALLOW_INSECURE_URLS": "true",
            "ATTUNE_HTTP_TIMEOUT_S": "3",
            # Each cell its own: nothing signed in one cell is accepted by another.
            "ATTUNE_SECRET_KEYS": _secret(),
            "ATTUNE_KEY_ENCRYPTION_KEYS": f"{r.name}:" + base64.b64encode(os.urandom(32)).decode(),
        }
    home.env["ATTUNE_CELL_KAFKA"] = ";".join(
        f"{name}={links[name].from_home.address}" for name in cells
    )
    for name, cell in cells.items():
        cell.env["ATTUNE_HOME_KAFKA_BOOTSTRAP_SERVERS"] = links[name].to_home.address
    for r in stack.regions:
        await stack.start_region(r)
        exits.push_async_callback(_stop_services, r)
    stack.admin_token = await create_token(home.db, "cells-test")
    await wait_ready(home, "jwks")
    for cell in cells.values():
        await wait_ready(cell, "launch")  # its mirror has applied a snapshot
    return stack


async def _stop_services(region: Region) -> None:
    for runner in reversed(region.runners):
        await runner.cleanup()
    region.runners.clear()
    if region.pool is not None:
        await region.pool.close()
        region.pool = None
