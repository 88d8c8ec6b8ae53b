"""How fast one account transfers in one direction: requests in flight, and flood pauses.

FLOOD_WAIT_X / FLOOD_PREMIUM_WAIT_X on ``upload.getFile`` or ``upload.save*FilePart`` means the account
moves files faster than Telegram allows. The answer is to slow down, not to fail the item: every
transfer of the account in that direction pauses until the wait is over, and the number of requests
in flight is halved; it grows back by one after each run of successes (additive increase,
multiplicative decrease, as TCP does).

State changes are plain synchronous updates (one event loop, no locks), so a cancelled request can
never leave a slot taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress


class Pacer:
    """Shared by all transfers of one account in one direction (downloads or uploads)."""

    def __init__(self, ceiling: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling < 1:
            raise ValueError("at least one request must be allowed in flight")
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self.resume_at = 0.0
        self.floods = 0
        self._clock = clock
        self._successes = 0
        self._waiters: list[asyncio.Future[None]] = []

    def waiting(self) -> float:
        """Seconds left of the current flood pause (0 when none)."""
        return max(0.0, self.resume_at - self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` request slots, after any flood pause is over."""
        while True:
            pause = self.waiting()
            if pause <= 0 and self.in_flight < self.limit:
                break
            await self._changed(pause if pause > 0 else None)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._wake()

    def succeeded(self) -> None:
        self._successes += 1
        if self.limit < self.ceiling and self._successes >= self.limit:
            self.limit += 1
            self._successes = 0
            self._wake()

    def flooded(self, seconds: float) -> None:
        self.floods += 1
        now = self._clock()
        if now >= self.resume_at:  # one halving per pause, however many parts were in flight
            self.limit = max(1, self.limit // 2)
        self.resume_at = max(self.resume_at, now + seconds)
        self._successes = 0
        self._wake()

    async def _changed(self, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
