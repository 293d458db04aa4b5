"""Group commit: many concurrent requests' writes in one statement, without waiting for a timer.

``GroupWriter.write(item)`` hands the item to one writer task per process. When no statement
is in flight the item goes out at once, alone (no added latency when the service is quiet);
items that arrive while a statement is in flight wait for it and then go out together in the
next one. Under load a batch is as large as the number of requests that arrived during one
statement, so the fixed cost of a statement (round trip, parse, commit, WAL flush) is shared
instead of paid per request. Each caller gets its own item's result, or its own error, or the
batch's error.

The caller's response is sent only after the statement carrying its item committed, so the
durability of each write is the same as with one statement per request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]],
        *,
        max_batch: int = 64,
        key: Callable[[T], Hashable] | None = None,
        fails_queue: Callable[[Exception], bool] | None = None,
    ) -> None:
        """``write_batch(items)`` writes the items in one statement and returns one result per
        item, in order; an ``Exception`` in the results is raised to that item's caller alone.

        Items with equal ``key`` never share a batch (a later one waits for the next), so a
        batch statement never meets the same key twice. When a batch fails with an error for
        which ``fails_queue`` is true (the database is unreachable), the items queued behind
        it fail with it at once instead of each waiting for its own attempt to time out.
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._key = key
        self._fails_queue = fails_queue
        self._queue: list[tuple[T, Hashable, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def write(self, item: T) -> R:
        if self._closed:
            raise RuntimeError("the writer is closed")
        key = self._key(item) if self._key is not None else None
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, key, future))
        if self._flusher is None:
            # Its own empty context: the first caller's context variables (its request id in
            # every log line) must not follow every later batch.
            self._flusher = asyncio.create_task(
                self._flush(), name="group-writer", context=contextvars.Context()
            )
            self._flusher.add_done_callback(self._flusher_done)
        return await future

    def _next_batch(self) -> list[tuple[T, Hashable, asyncio.Future[R]]]:
        batch: list[tuple[T, Hashable, asyncio.Future[R]]] = []
        rest: list[tuple[T, Hashable, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._queue:
            if entry[2].done():  # the caller was cancelled before its item went out
                continue
            if len(batch) >= self._max_batch or (self._key is not None and entry[1] in keys):
                rest.append(entry)
                continue
            keys.add(entry[1])
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
                    results = await self._write_batch([item for item, _, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} items")
                except asyncio.CancelledError:
                    for _, _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # every caller in the batch sees the statement's error
                    failed = batch
                    if self._fails_queue is not None and self._fails_queue(exc):
                        failed, self._queue = batch + self._queue, []
                    for _, _, future in failed:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
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
        for _, _, future in queue:
            future.cancel()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new items and wait, at most ``timeout_s``, for those already handed over
        (shutdown, after the last request); then cancel what is left."""
        self._closed = True
        flusher = self._flusher
        if flusher is None:
            return
        done, _ = await asyncio.wait({flusher}, timeout=timeout_s)
        if not done:
            flusher.cancel()
            await asyncio.wait({flusher})
