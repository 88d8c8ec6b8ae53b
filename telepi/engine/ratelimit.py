"""Per-account pacing and flood waits: honoured, visible, and never a reason to skip a message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telepi.checkpoint.store import Store
from telepi.engine.progress import Progress
from telepi.telegram import ErrorKind, classify

log = logging.getLogger(__name__)
T = TypeVar("T")

# Above this, the account hands the leases it has not started sending to the other sessions.
LONG_WAIT_SECONDS = 30


class AccountLimiter:
    """Spaces this account's sends and waits out FLOOD_WAIT / SLOWMODE_WAIT, then retries the same call."""

    def __init__(
        self,
        store: Store,
        session: str,
        progress: Progress,
        *,
        min_interval: float = 0.0,
        on_long_wait: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.progress = progress
        self.min_interval = min_interval
        self.on_long_wait = on_long_wait
        self._next_send = 0.0
        self._lock = asyncio.Lock()

    async def pace(self) -> None:
        async with self._lock:
            delay = self._next_send - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_send = time.monotonic() + self.min_interval

    async def call(self, method: str, make: Callable[[], Awaitable[T]], *, paced: bool = True) -> T:
        """Run ``make()`` (a Telegram call of ``method``), waiting out flood limits as often as needed."""
        while True:
            if paced:
                await self.pace()
            try:
                return await make()
            except Exception as exc:
                kind = classify(exc)
                if kind.kind not in (ErrorKind.FLOOD_WAIT, ErrorKind.SLOWMODE):
                    raise
                await self.wait(kind.seconds, method, kind.name)

    async def wait(self, seconds: int, method: str, error: str) -> None:
        seconds = max(1, seconds)
        until = time.time() + seconds
        detail = f"{seconds}s on {method}"
        log.warning(
            "%s: %s — waiting %ds on %s (the message is retried, never skipped)",
            self.session,
            error,
            seconds,
            method,
            extra={"event": "flood_wait", "seconds": seconds, "method": method},
        )
        self.progress.waiting(method, until)
        self.store.set_session_state(self.session, "flood_wait", detail, wait_until=until)
        if seconds > LONG_WAIT_SECONDS and self.on_long_wait is not None:
            await self.on_long_wait(seconds)
        await asyncio.sleep(seconds)
        self.progress.waiting("", None)
        self.store.set_session_state(self.session, "running")
