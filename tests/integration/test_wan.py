"""devstack.wan.WanLink, the relay the cells tests and the cell benchmark put between regions:
it delays, counts, records, freezes and cuts, and Kafka clients stay behind it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from devstack.embedded import EmbeddedBroker
from devstack.wan import WanLink
from tests.fakes.registration_platform import serve_app

pytestmark = pytest.mark.integration

DELAY = 0.2


async def _http_target() -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello " + request.query.get("who", ""))

    app = web.Application()
    app.router.add_get("/", hello)
    runner, url = await serve_app(app)
    return runner, int(url.rsplit(":", 1)[1])


async def test_a_link_delays_counts_records_freezes_and_cuts() -> None:
    runner, port = await _http_target()
    link = await WanLink("127.0.0.1", port, delay_s=DELAY, record=True).start()
    try:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.get(f"http://{link.address}/?who=alice") as resp:
                assert await resp.text() == "hello alice"
            # A new connection's round trip, then the request's.
            assert time.monotonic() - started >= 4 * DELAY
            assert link.crossing.opened_since(started) == 1
            assert link.crossing.bytes("up", since=started) > 0
            assert b"who=alice" in link.crossing.copy and b"hello alice" in link.crossing.copy

            started = time.monotonic()
            async with session.get(f"http://{link.address}/?who=bob") as resp:
                assert await resp.text() == "hello bob"
            assert link.crossing.opened_since(started) == 0  # kept alive: no new connection
            assert time.monotonic() - started >= 2 * DELAY

            link.freeze()  # nothing is delivered, nothing is closed
            request = asyncio.ensure_future(session.get(f"http://{link.address}/?who=carol"))
            await asyncio.sleep(6 * DELAY)
            assert not request.done()
            link.heal()
            async with await request as resp:
                assert await resp.text() == "hello carol"

            await link.cut()  # every connection closed, new ones refused
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://{link.address}/?who=dave") as resp:
                    await resp.read()
            link.heal()
            async with session.get(f"http://{link.address}/?who=erin") as resp:
                assert await resp.text() == "hello erin"
    finally:
        await link.stop()
        await runner.cleanup()


async def test_kafka_clients_stay_behind_the_link(own_broker: EmbeddedBroker) -> None:
    """The broker names its own address in metadata; the link names itself instead, so once
    it is cut the clients that bootstrapped through it cannot reach the broker any more."""
    link = await WanLink("127.0.0.1", own_broker.port, delay_s=0.05, kafka=True).start()
    producer = AIOKafkaProducer(
        bootstrap_servers=link.address, enable_idempotence=False, request_timeout_ms=3000
    )
    consumer = AIOKafkaConsumer(
        "wan-test",
        bootstrap_servers=link.address,
        group_id="wan-test",
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    try:
        await producer.start()
        await producer.send_and_wait("wan-test", b"across the ocean")
        await consumer.start()
        message = await asyncio.wait_for(consumer.getone(), 60)
        assert message.value == b"across the ocean"
        await consumer.commit()  # through the group coordinator the link named
        assert link.unrewritten == 0
        assert len(link.crossing.opened) >= 3  # bootstrap + broker + coordinator connections
        await link.cut()
        started = time.monotonic()
        with pytest.raises((KafkaError, TimeoutError)):
            await asyncio.wait_for(producer.send_and_wait("wan-test", b"cut off"), 5)
        assert time.monotonic() - started < 60
        link.heal()
        await asyncio.wait_for(producer.send_and_wait("wan-test", b"healed"), 60)
    finally:
        link.heal()  # let the clients leave cleanly
        await consumer.stop()
        await producer.stop()
        await link.stop()
