"""A wide-area link on one machine: a TCP relay that delays every byte, for cells and benches.

``WanLink`` listens on 127.0.0.1 and forwards each connection to a target, delivering every
chunk ``delay_s`` after it arrived, in each direction (150 ms each way is a trans-ocean round
trip of 300 ms). A connection costs one round trip to open, as over a real WAN. It counts what
crosses it (connections opened, bytes each way, with times) and can keep a copy of every byte,
so a test can show what did and did not cross between regions. ``freeze`` holds all traffic
(a link that silently stops delivering, the nastiest partition); ``cut`` closes every
connection and refuses new ones; ``heal`` undoes both.

With ``kafka=True`` it speaks enough of the Kafka protocol to stay in the path: a client
bootstraps through the relay, but the broker's Metadata and FindCoordinator answers name the
broker's own address, which the client would then connect to directly. The relay rewrites
those answers (the versions aiokafka uses, none of them "flexible") to name the relay itself.
That assumes a one-broker cluster behind it (the embedded one); ``unrewritten`` counts answers
it could not rewrite (a test asserts there are none: else clients went around it).

Development and test tooling only: nothing in production runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.protocol import coordination, metadata

_HOST = "127.0.0.1"
_METADATA, _FIND_COORDINATOR = 3, 10
_RESPONSES: dict[tuple[int, int], Any] = {
    **{(_METADATA, v): getattr(metadata, f"MetadataResponse_v{v}") for v in range(6)},
    **{
        (_FIND_COORDINATOR, v): getattr(coordination, f"FindCoordinatorResponse_v{v}")
        for v in range(2)
    },
}


@dataclass
class Crossing:
    """What crossed the link: connections opened and chunks delivered, with their times
    (``time.monotonic()``), and (``record=True``) a copy of every byte."""

    opened: list[float] = field(default_factory=list)
    chunks: list[tuple[float, str, int]] = field(default_factory=list)  # (when, "up"/"down", n)
    copy: bytearray = field(default_factory=bytearray)

    def bytes(self, direction: str | None = None, *, since: float = 0.0) -> int:
        return sum(n for t, d, n in self.chunks if t >= since and direction in (None, d))

    def opened_since(self, since: float) -> int:
        return sum(1 for t in self.opened if t >= since)


class _KafkaFrames:
    """Splits one direction of a Kafka connection into frames; rewrites broker addresses in
    the answers (``down``) to the requests it saw (``up``)."""

    def __init__(self, link: WanLink, inflight: dict[int, tuple[int, int]], direction: str):
        self._link = link
        self._inflight = inflight
        self._direction = direction
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        while len(self._buffer) >= 4:
            (size,) = struct.unpack(">i", self._buffer[:4])
            if len(self._buffer) < 4 + size:
                return
            frame = bytes(self._buffer[4 : 4 + size])
            del self._buffer[: 4 + size]
            yield self._frame(frame)

    def _frame(self, frame: bytes) -> bytes:
        if self._direction == "up":
            if len(frame) >= 8:
                api_key, version, correlation = struct.unpack(">hhi", frame[:8])
                self._inflight[correlation] = (api_key, version)
            return struct.pack(">i", len(frame)) + frame
        (correlation,) = struct.unpack(">i", frame[:4])
        request = self._inflight.pop(correlation, None)
        if request is not None and request[0] in (_METADATA, _FIND_COORDINATOR):
            frame = frame[:4] + self._link._rewrite(request, frame[4:])
        return struct.pack(">i", len(frame)) + frame


class WanLink:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay_s: float = 0.15,
        kafka: bool = False,
        record: bool = False,
        name: str = "wan",
    ) -> None:
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self.kafka = kafka
        self.record = record
        self.name = name
        self.crossing = Crossing()
        self.unrewritten = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut = False
        self._connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the link is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        return f"{_HOST}:{self.port}"

    async def start(self, port: int = 0) -> WanLink:
        self._server = await asyncio.start_server(self._accept, _HOST, port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.cut()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def freeze(self) -> None:
        """Hold every byte (nothing is delivered, nothing is closed) until ``heal``."""
        self._flowing.clear()

    async def cut(self) -> None:
        """Close every connection across the link and refuse new ones until ``heal``."""
        self._cut = True
        for task in list(self._tasks):
            task.cancel()
        for a, b in list(self._connections):
            for writer in (a, b):
                writer.close()
        self._connections.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def heal(self) -> None:
        self._cut = False
        self._flowing.set()

    def _rewrite(self, request: tuple[int, int], body: bytes) -> bytes:
        kind = _RESPONSES.get(request)
        if kind is None:
            self.unrewritten += 1
            return body
        names = kind.SCHEMA.names
        decoded = kind.decode(body)
        values = [decoded.get_item(n) for n in names]
        if request[0] == _METADATA:
            index = names.index("brokers")
            values[index] = [(b[0], _HOST, self.port, *b[3:]) for b in values[index]]
        else:
            values[names.index("host")] = _HOST
            values[names.index("port")] = self.port
        encoded: bytes = kind(*values).encode()
        return encoded

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.crossing.opened.append(time.monotonic())
        if self._cut:
            client_w.close()
            return
        try:
            await asyncio.sleep(2 * self.delay_s)  # the handshake's round trip
            await self._flowing.wait()
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        pair = (client_w, server_w)
        self._connections.add(pair)
        inflight: dict[int, tuple[int, int]] = {}
        up = _KafkaFrames(self, inflight, "up").feed if self.kafka else _whole
        down = _KafkaFrames(self, inflight, "down").feed if self.kafka else _whole
        tasks = [
            asyncio.create_task(self._pump(client_r, server_w, "up", up)),
            asyncio.create_task(self._pump(server_r, client_w, "down", down)),
        ]
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in pair:
                writer.close()
            self._connections.discard(pair)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        frames: Callable[[bytes], Iterator[bytes]],
    ) -> None:
        """Deliver what ``reader`` yields to ``writer``, each chunk ``delay_s`` late, in order."""
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def receive() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    for chunk in frames(data):
                        queue.put_nowait((time.monotonic() + self.delay_s, chunk))
            queue.put_nowait((time.monotonic() + self.delay_s, None))

        receiving = asyncio.create_task(receive())
        try:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._flowing.wait()
                if chunk is None:
                    return
                self.crossing.chunks.append((time.monotonic(), direction, len(chunk)))
                if self.record:
                    self.crossing.copy += chunk
                writer.write(chunk)
                await writer.drain()
        except OSError:
            return
        finally:
            receiving.cancel()


def _whole(data: bytes) -> Iterator[bytes]:
    yield data
