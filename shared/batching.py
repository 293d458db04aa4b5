"""Group commit: many concurrent requests' writes in one statement, without waiting for a timer.

``GroupWriter.write(item)`` hands the item to one writer task per process. When no statement
is in flight the item goes out at once, alone (no added latency when the service is quiet);
items that arrive while a statement is in flight wait for it and then go out together in the
next one. Under load a batch is as large as the number of requests that arrived during one
statement, so the fixed cost of a statement (round trip, parse, commit, WAL flush) is shared
instead of paid per request. Each caller gets its own item's result, or the batch's error.

The caller's response is sent only after the statement carrying its item committed, so the
durability of each write is the same as with one statement per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 64,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        """``write_batch(items)`` writes the items in one statement and returns one result per
        item, in order. Items with equal ``key`` never share a batch (a later one waits for the
        next), so a batch statement never meets the same key twice."""
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._key = key
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="group-writer")
            self._flusher.add_done_callback(self._flusher_done)
        return await future

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        rest: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._queue:
            if entry[1].done():  # the caller was cancelled before its item went out
                continue
            if len(batch) >= self._max_batch:
                rest.append(entry)
                continue
            if self._key is not None:
                key = self._key(entry[0])
                if key in keys:
                    rest.append(entry)
                    continue
                keys.add(key)
            batch.append(entry)
        self._queue = rest
        return batch

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._next_batch()
                if not batch:
                    continue
                try:
                    results = await self._write_batch([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} items")
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # every caller in the batch sees the statement's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._abandon()

    def _flusher_done(self, task: asyncio.Task[None]) -> None:
        # Also covers a flusher cancelled before its first step, whose ``finally`` never ran.
        if self._flusher is task:
            self._abandon()

    def _abandon(self) -> None:
        """The flusher is gone: whatever is still queued (only at shutdown) is cancelled, so
        nobody waits forever; the next write starts a new flusher."""
        self._flusher = None
        queue, self._queue = self._queue, []
        for _, future in queue:
            future.cancel()

    async def close(self) -> None:
        """Wait for the items already handed over (shutdown after the last request)."""
        while self._flusher is not None:
            await asyncio.wait({self._flusher})
