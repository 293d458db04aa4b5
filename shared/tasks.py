"""Stopping background tasks without ever hanging a shutdown."""

from __future__ import annotations

import asyncio
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
