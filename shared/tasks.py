"""Background loops that outlive their dependencies' outages, and stopping them without ever
hanging a shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.logs import get_logger

log = get_logger(__name__)


async def stop_task(task: asyncio.Task[Any], *, timeout_s: float = 10.0) -> None:
    """Cancel ``task`` and wait for it, at most ``timeout_s``.

    A task that swallows its cancellation (a library catching ``CancelledError``, or
    ``asyncio.wait_for`` racing it on Python 3.11) is cancelled again until the deadline, then
    abandoned with an error log naming it, so a cleanup context always finishes.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not task.done():
        task.cancel()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            log.error("background_task_did_not_stop", task=task.get_name())
            return
        await asyncio.wait({task}, timeout=min(1.0, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_failed", task=task.get_name(), error=repr(task.exception()))


async def repeat(
    work: Callable[[], Awaitable[bool]],
    *,
    every_s: float,
    errors: tuple[type[BaseException], ...],
    event: str,
    first_delay_s: float = 0.0,
) -> None:
    """Run ``work`` until cancelled: again at once when it returns True (more is waiting),
    otherwise after ``every_s``. An error in ``errors`` (a dependency down, restarting or timing
    out) is logged as ``event`` with its type and retried next round: the loop never ends on
    its own, so one outage cannot stop a background job for the life of the process."""
    if first_delay_s:
        await asyncio.sleep(first_delay_s)
    while True:
        try:
            busy = await work()
        except errors as exc:
            log.warning(event, reason=type(exc).__name__)
            busy = False
        if not busy:
            await asyncio.sleep(every_s)
