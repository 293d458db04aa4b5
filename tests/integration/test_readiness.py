"""Every service starts, reports ready with real Postgres and Kafka, and goes not-ready (then
recovers by itself) when either dependency goes away."""

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from attune.cli import app_factory
from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.routes import SERVICES
from tests.conftest import Infra


async def wait_status(client: TestClient, status: int, timeout: float = 20) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await client.get("/readyz")
        body = await resp.json()
        if resp.status == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"readyz stayed {resp.status}: {body}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("service", SERVICES)
async def test_service_ready_with_real_dependencies(aiohttp_client, infra: Infra, service: str):
    client = await aiohttp_client(app_factory(service)(infra.settings()))
    body = await wait_status(client, 200)
    assert body["service"] == service
    assert body["checks"]["postgres"]["ok"] is True
    assert body["checks"]["kafka"]["ok"] is True
    assert (await client.get("/healthz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert f'attune_dependency_up{{dependency="postgres",service="{service}"}} 1.0' in metrics


async def test_not_ready_while_postgres_is_down(
    aiohttp_client, infra: Infra, own_postgres: EmbeddedPostgres
):
    settings = infra.settings(database_url=own_postgres.url)
    client = await aiohttp_client(app_factory("launch")(settings))
    await wait_status(client, 200)
    own_postgres.stop()
    body = await wait_status(client, 503)
    assert body["checks"]["postgres"]["ok"] is False
    assert body["checks"]["kafka"]["ok"] is True
    assert (await client.get("/healthz")).status == 200  # alive, just not ready
    own_postgres.start()  # not in a thread: PDEATHSIG follows the forking thread
    await wait_status(client, 200)


async def test_not_ready_while_broker_is_down(
    aiohttp_client, infra: Infra, own_broker: EmbeddedBroker
):
    settings = infra.settings(
        kafka_bootstrap_servers=own_broker.bootstrap_servers, kafka_request_timeout_ms=1000
    )
    client = await aiohttp_client(app_factory("checkins")(settings))
    await wait_status(client, 200)
    own_broker.kill()
    body = await wait_status(client, 503)
    assert body["checks"]["kafka"]["ok"] is False
    assert body["checks"]["postgres"]["ok"] is True
    own_broker.restart()  # not in a thread: PDEATHSIG follows the forking thread
    await wait_status(client, 200)


async def test_broker_outage_can_be_made_non_fatal(
    aiohttp_client, infra: Infra, own_broker: EmbeddedBroker
):
    """ATTUNE_READY_REQUIRES_KAFKA=false: the outbox holds events, so keep serving."""
    settings = infra.settings(
        kafka_bootstrap_servers=own_broker.bootstrap_servers,
        kafka_request_timeout_ms=1000,
        ready_requires_kafka=False,
    )
    client = await aiohttp_client(app_factory("launch")(settings))
    await wait_status(client, 200)
    own_broker.kill()
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 200
        if not body["checks"]["kafka"]["ok"]:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
