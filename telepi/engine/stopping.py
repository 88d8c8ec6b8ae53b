"""A stop that cannot be held up by Telegram: once ``stop`` is set the session's work gets a short grace
to finish what is in flight, and is cancelled after it, at once when Telegram is out of reach.

Why cancel at all: every Telethon call waits for its answer, and while the transport is down Telethon
keeps the request queued and reconnects for ever (``connection_retries=-1``); a call made just before
the stop would hold the run — and SIGTERM — until Telegram came back (seen: 30 minutes, ~1,000
reconnect attempts, then SIGKILL). Cancelling is safe: a cancelled request is dropped from the
client's queue (telepi.telegram.client) so it never goes out later, and a unit whose send was in
flight keeps its sending mark, which the takeover rules settle by looking in the target first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from telepi.checkpoint.model import SEND_TIMEOUT_SECONDS

log = logging.getLogger(__name__)
T = TypeVar("T")

# Connected, a send in flight has its answer or is withdrawn within SEND_TIMEOUT_SECONDS anyway.
STOP_GRACE_SECONDS = SEND_TIMEOUT_SECONDS + 1.0
LINK_LOOK_SECONDS = 0.1  # how often the grace looks whether Telegram is still reachable


async def until_stopped(
    work: Coroutine[Any, Any, T],
    stop: asyncio.Event,
    link_up: Callable[[], bool],
    *,
    grace: float = STOP_GRACE_SECONDS,
) -> T | None:
    """``work``'s result, or None when it was cancelled after ``stop``; its errors are raised."""
    task = asyncio.create_task(work, name="session")
    try:
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while not task.done() and link_up() and loop.time() < deadline:
            await asyncio.wait([task], timeout=min(LINK_LOOK_SECONDS, max(0.0, deadline - loop.time())))
        if not task.done():
            why = "Telegram is out of reach" if not link_up() else f"still busy after {grace:.0f}s"
            log.info("stopping: %s, cancelling the calls in flight", why, extra={"event": "stop_cancel"})
            task.cancel()
        await asyncio.wait([task])
    finally:
        if not task.done():  # we were cancelled ourselves: so is the work, and it cleans up first
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()
