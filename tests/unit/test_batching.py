"""GroupWriter: a quiet service writes each item alone and at once; under load the items that
arrive during a statement share the next one; every caller gets its own result or the error."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

import pytest

from shared.batching import GroupWriter


class Store:
    """A write function that records its batches and can be held open or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self.short = False

    async def write(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        results = [item.upper() for item in items]
        return results[:-1] if self.short else results


async def test_a_quiet_writer_sends_each_item_alone_at_once() -> None:
    store = Store()
    writer = GroupWriter(store.write)
    assert await writer.write("a") == "A"
    assert await writer.write("b") == "B"
    assert store.batches == [["a"], ["b"]]


async def test_items_arriving_during_a_statement_share_the_next_one() -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write)
    first = asyncio.create_task(writer.write("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert store.batches == [["a"]]  # went out alone, is still in flight
    rest = [asyncio.create_task(writer.write(x)) for x in "bcd"]
    await asyncio.sleep(0)
    store.gate.set()
    assert await first == "A"
    assert [await t for t in rest] == ["B", "C", "D"]
    assert store.batches == [["a"], ["b", "c", "d"]]


async def test_batches_are_bounded() -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write, max_batch=2)
    tasks = [asyncio.create_task(writer.write(x)) for x in "abcde"]
    await asyncio.sleep(0)
    store.gate.set()
    assert [await t for t in tasks] == list("ABCDE")
    assert store.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_equal_keys_never_share_a_batch() -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write, key=lambda item: item[0])
    tasks = [asyncio.create_task(writer.write(x)) for x in ("a1", "b1", "a2", "a3", "c1")]
    await asyncio.sleep(0)
    store.gate.set()
    assert [await t for t in tasks] == ["A1", "B1", "A2", "A3", "C1"]
    assert store.batches == [["a1", "b1", "c1"], ["a2"], ["a3"]]


async def test_every_caller_of_a_failed_batch_gets_the_error_and_the_next_batch_runs() -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write, max_batch=2)
    store.fail_with = ConnectionResetError("database went away")
    tasks = [asyncio.create_task(writer.write(x)) for x in "abc"]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results[:2]] == [ConnectionResetError, ConnectionResetError]
    assert results[2] == "C"


async def test_a_write_function_that_loses_a_result_fails_the_batch_instead_of_hanging() -> None:
    store = Store()
    store.short = True
    writer = GroupWriter(store.write)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await asyncio.wait_for(writer.write("a"), 2)
    store.short = False
    assert await writer.write("b") == "B"


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write)
    first = asyncio.create_task(writer.write("a"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(writer.write(x)) for x in "bc"]
    await asyncio.sleep(0)
    waiting[0].cancel()  # gave up before its item went out: it is not written
    await asyncio.sleep(0)
    store.gate.set()
    assert await first == "A"
    assert await waiting[1] == "C"
    assert waiting[0].cancelled()
    assert store.batches == [["a"], ["c"]]


@pytest.mark.parametrize("started", [False, True])
async def test_close_waits_for_items_handed_over_and_a_cancelled_flusher_frees_its_callers(
    started: bool,
) -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write)
    task = asyncio.create_task(writer.write("a"))
    await asyncio.sleep(0)
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    store.gate.set()
    await closing
    assert await task == "A"

    writer = GroupWriter(store.write)
    store.gate.clear()
    stuck = [asyncio.create_task(writer.write(x)) for x in "xy"]
    await asyncio.sleep(0)
    if started:  # the statement is in flight, not only queued
        await asyncio.sleep(0)
        assert store.batches[-1] == ["x", "y"]
    flusher = writer._flusher
    assert flusher is not None
    flusher.cancel()  # process shutdown: nobody may wait forever
    results = await asyncio.gather(*stuck, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    store.gate.set()
    assert await writer.write("z") == "Z"  # and a later write starts a new flusher


async def test_an_exception_in_the_results_goes_to_its_caller_alone() -> None:
    async def write(items: Sequence[str]) -> list[str | Exception]:
        return [ValueError(item) if item == "bad" else item.upper() for item in items]

    writer = GroupWriter(write)
    results = await asyncio.gather(
        *(writer.write(x) for x in ("a", "bad", "c")), return_exceptions=True
    )
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)


async def test_an_unreachable_database_fails_the_queue_at_once() -> None:
    store = Store()
    store.gate.clear()
    writer = GroupWriter(
        store.write, max_batch=2, fails_queue=lambda exc: isinstance(exc, ConnectionRefusedError)
    )
    store.fail_with = ConnectionRefusedError("database down")
    tasks = [asyncio.create_task(writer.write(x)) for x in "abcde"]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results), results
    assert store.batches == [["a", "b"]]  # the queued three did not each try again


async def test_a_key_that_cannot_be_computed_fails_its_caller_not_the_writer() -> None:
    store = Store()
    writer = GroupWriter(store.write, key=lambda item: {"a": 1}[item])
    with pytest.raises(KeyError):
        await writer.write("zzz")
    assert await writer.write("a") == "A"


async def test_settings_and_closing() -> None:
    with pytest.raises(ValueError):
        GroupWriter(Store().write, max_batch=0)
    store = Store()
    store.gate.clear()
    writer = GroupWriter(store.write)
    stuck = asyncio.create_task(writer.write("a"))
    await asyncio.sleep(0)
    await writer.close(timeout_s=0.05)  # a statement that never ends does not hang shutdown
    with pytest.raises(asyncio.CancelledError):
        await stuck
    with pytest.raises(RuntimeError, match="closed"):
        await writer.write("b")


async def test_the_flusher_does_not_carry_the_first_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    seen: list[str] = []

    async def write(items: Sequence[str]) -> list[str]:
        seen.append(request_id.get())
        return list(items)

    writer = GroupWriter(write)
    request_id.set("first-request")
    await writer.write("a")
    assert seen == ["-"]
