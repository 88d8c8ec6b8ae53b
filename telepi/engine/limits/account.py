"""Per-account pacing and flood waits: honoured per method, visible, and never a reason to skip a message.

A flood wait holds back only the method Telegram named (a wait on ``GetHistory`` does not stop sends);
``SEND_INTERVAL`` spaces the account's sends only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

from telepi.checkpoint.store import Store
from telepi.engine.limits.learned import LearnedPace
from telepi.engine.progress import Progress
from telepi.telegram.errors import ErrorKind, classify

log = logging.getLogger(__name__)
T = TypeVar("T")

# Above this, the account hands the leases it has not started sending to the other sessions.
LONG_WAIT_SECONDS = 30
# The methods that publish into the target: what ready_in() without a method is about.
SEND_METHODS = ("SendMessage", "SendMedia", "SendMultiMedia", "ForwardMessages")
# Set while a call runs under AccountLimiter.call, so the gateway below it does not wait a second time.
GOVERNED: ContextVar[bool] = ContextVar("telepi_governed", default=False)


class HandedBack(Exception):
    """A send was refused by a flood wait and its unit given to the other sessions instead of retried."""


class Stopping(Exception):
    """The session is stopping: a flood-waited call is given up instead of waited out."""


class LeaseLost(Stopping):
    """Right before the request, the session no longer held the unit's lease with time to spare: the
    send is not made (another session may hold the unit by the time it lands); nothing was sent."""


class AccountLimiter:
    """Spaces this account's sends (``SEND_INTERVAL``, and per method what flood waits taught it) and
    waits out FLOOD_WAIT / SLOWMODE_WAIT, then retries the same call."""

    def __init__(
        self,
        store: Store,
        session: str,
        progress: Progress,
        *,
        min_interval: float = 0.0,
        on_long_wait: Callable[[int], Awaitable[None]] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.progress = progress
        self.min_interval = min_interval
        self.on_long_wait = on_long_wait
        self.stop = stop or asyncio.Event()
        self._next_send = 0.0
        self._blocked_until: dict[str, float] = {}  # method -> monotonic end of its flood wait
        self._lock = asyncio.Lock()
        self.learned = LearnedPace()

    def ready_in(self, method: str | None = None) -> float:
        """Seconds until this account may call ``method`` again (without one: send), pacing and flood waits."""
        methods = (method,) if method is not None else SEND_METHODS
        blocked = max((self._blocked_until.get(m, 0.0) for m in methods), default=0.0)
        return max(self._next_send, blocked) - time.monotonic()

    def window_full_for(self, method: str | None = None) -> float:
        """Seconds until the window learned for ``method`` (without one: for every method) lets a call go."""
        return self.learned.ready_in(method) if method is not None else self.learned.ready_in_any()

    async def pace(self, method: str) -> None:
        async with self._lock:
            delay = self._next_send - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            delay = self.learned.book(method)
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_send = time.monotonic() + self.min_interval

    async def _sit_out(self, method: str) -> None:
        """Before any call: the rest of a flood wait Telegram gave this method (another task met it)."""
        delay = self._blocked_until.get(method, 0.0) - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stop.wait()
            if self.stop.is_set():
                raise Stopping(method)

    async def call(
        self,
        method: str,
        make: Callable[[], Awaitable[T]],
        *,
        paced: bool = True,
        hand_back: Callable[[], Awaitable[bool]] | None = None,
        guard: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``make()`` (a Telegram call of ``method``), waiting out flood limits as often as needed.

        With ``hand_back``, a flood wait first offers the call's work to the other sessions: when it
        returns True the wait is still sat out (this account cannot send anyway), then HandedBack.
        ``paced`` calls (the sends) keep ``SEND_INTERVAL`` and the learned windows. ``guard`` is asked
        after every wait, right before the request with no await in between: False raises LeaseLost."""
        while True:
            await self._sit_out(method)
            if paced:
                await self.pace(method)
            if guard is not None and not guard():
                raise LeaseLost(method)
            token = GOVERNED.set(True)
            try:
                return await make()
            except Exception as exc:
                kind = classify(exc)
                if kind.kind not in (ErrorKind.FLOOD_WAIT, ErrorKind.SLOWMODE):
                    raise
                if paced:
                    self._learn(method, kind.seconds)
                if self.stop.is_set():
                    raise Stopping(method) from exc
                handed = hand_back is not None and await hand_back()
                await self.wait(kind.seconds, method, kind.name)
                if handed:
                    raise HandedBack(method) from exc
            finally:
                GOVERNED.reset(token)

    def _learn(self, method: str, seconds: int) -> None:
        lesson = self.learned.flood_wait(method, seconds)
        if lesson is not None:
            log.info(
                "%s: from now on at most %d %s calls per %.1fs (learned from the flood wait)",
                self.session,
                lesson.limit,
                method,
                lesson.window,
                extra={"event": "pace_learned", "method": method},
            )

    async def wait(self, seconds: int, method: str, error: str) -> None:
        seconds = max(1, seconds)
        self._blocked_until[method] = max(self._blocked_until.get(method, 0.0), time.monotonic() + seconds)
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
        self.store.record_flood_wait(self.session, method, seconds)
        self.store.set_session_state(self.session, "flood_wait", detail, wait_until=until)
        if seconds > LONG_WAIT_SECONDS and self.on_long_wait is not None:
            await self.on_long_wait(seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()  # a stopping session does not sit out the wait
        self.progress.waiting("", None)
        self.store.set_session_state(self.session, "running")
        if self.stop.is_set():
            raise Stopping(method)
