"""Per-account pacing and flood waits: honoured per method, visible, and never a reason to skip a message.

A flood wait holds back only the method group Telegram named (a wait on ``GetHistory`` does not stop sends;
one on ``SendMessage`` holds ``SendMedia`` too); ``SEND_INTERVAL`` spaces the account's sends and forwards
per message, ``READ_INTERVAL`` its history reads, until a refusal teaches the group a slower spread
(``budget.py``), which the checkpoint keeps for the account. A group has one call in flight at a time
(``ONE_IN_FLIGHT``), so no call is refused during the penalty another call of it just met.
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
from telepi.engine.limits.budget import GROUPS, READ_INTERVAL, SEND_GROUPS, Budget, group_of
from telepi.engine.progress import Progress
from telepi.telegram.errors import ErrorKind, classify

log = logging.getLogger(__name__)
T = TypeVar("T")

# Above this, the account hands the leases it has not started sending to the other sessions.
LONG_WAIT_SECONDS = 30
# The methods that publish into the target: what ready_in() without a method is about.
SEND_METHODS = ("SendMessage", "SendMedia", "SendMultiMedia", "ForwardMessages")
# Groups whose quotas the field reports (sends, forwards, history reads): one call of each in flight at a time
# from the start, for two calls in flight together meet a quota together and the second is refused during the
# penalty the first just started, lengthening it (sandbox/limits/flood.py's escalation).
ONE_IN_FLIGHT = frozenset(GROUPS.values()) | SEND_GROUPS
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
        read_interval: float = READ_INTERVAL,
        on_long_wait: Callable[[int], Awaitable[None]] | None = None,
        stop: asyncio.Event | None = None,
        user_id: int | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.progress = progress
        self.on_long_wait = on_long_wait
        self.stop = stop or asyncio.Event()
        self._blocked_until: dict[str, float] = {}  # method group -> monotonic end of its flood wait
        self._locks: dict[str, asyncio.Lock] = {}
        self._flights: dict[str, asyncio.Lock] = {}  # method group -> its one call in flight
        self.budget = Budget(min_interval, read_interval)
        self.user_id: int | None = None
        if user_id is not None:
            self.know_account(user_id)

    def know_account(self, user_id: int) -> None:
        """The account is known: what it learned before, in any session on any host, holds from now on."""
        self.user_id = user_id
        for pace in self.store.paces(user_id):
            self.budget.adopt(pace)
            log.info(
                "%s: %s paced to %.1f/min (learned from %s), from the checkpoint",
                self.session,
                pace.group,
                pace.per_minute,
                pace.reason,
                extra={"event": "pace_loaded", "method": pace.group},
            )

    def ready_in(self, method: str | None = None) -> float:
        """Seconds until this account may call ``method`` again (without one: send), pacing and flood waits."""
        methods = (method,) if method is not None else SEND_METHODS
        return max(
            max(self._blocked_until.get(group_of(m), 0.0) - time.monotonic(), self.budget.ready_in(m)) for m in methods
        )

    async def pace(self, method: str, messages: int = 1) -> None:
        async with self._locks.setdefault(group_of(method), asyncio.Lock()):
            delay = self.budget.book(method, messages)
            if delay > 0:
                await asyncio.sleep(delay)

    def _in_flight(self, method: str) -> contextlib.AbstractAsyncContextManager[object]:
        """The group's one call in flight, for the groups with known quotas and any group that has learned a
        budget or is waiting one out; other groups' calls run side by side."""
        group = group_of(method)
        if (
            group in ONE_IN_FLIGHT
            or group in self._flights
            or self.budget.lesson(method) is not None
            or self._blocked_until.get(group, 0.0) > time.monotonic()
        ):
            return self._flights.setdefault(group, asyncio.Lock())
        return contextlib.nullcontext()

    async def _sit_out(self, method: str) -> None:
        """Before any call: the rest of a flood wait Telegram gave this method's group (another task met it)."""
        delay = self._blocked_until.get(group_of(method), 0.0) - time.monotonic()
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
        messages: int = 1,
        hand_back: Callable[[], Awaitable[bool]] | None = None,
        guard: Callable[[], bool] | None = None,
        refused: Callable[[], object] | None = None,
    ) -> T:
        """Run ``make()`` (a Telegram call of ``method`` publishing ``messages``), waiting out flood limits as
        often as needed.

        With ``hand_back``, a flood wait first offers the call's work to the other sessions: when it
        returns True the wait is still sat out (this account cannot send anyway), then HandedBack.
        Every call keeps its group's learned spread, and the send groups ``SEND_INTERVAL`` (the budget knows
        which groups send). ``guard`` is asked after every wait, right before the request with no await in
        between: False raises LeaseLost. ``refused`` is told of each flood refusal at once, before any wait:
        Telegram answered with an error, so the request was not executed."""
        while True:
            await self._sit_out(method)
            async with self._in_flight(method):
                await self._sit_out(method)  # a wait the call before met while this one queued: stop ends it
                await self.pace(method, messages)  # reads too: their run-up is what a refusal teaches
                if guard is not None and not guard():
                    raise LeaseLost(method)
                token = GOVERNED.set(True)
                try:
                    return await make()
                except Exception as exc:
                    kind = classify(exc)
                    if kind.kind not in (ErrorKind.FLOOD_WAIT, ErrorKind.SLOWMODE):
                        raise
                    refusal = exc
                    if refused is not None:
                        refused()
                    # Before the next call of the group may start: it books after the wait.
                    self._learn(method, kind.seconds, kind.name.rstrip("0123456789").rstrip("_"))  # FLOOD_WAIT
                    self._blocked_until[group_of(method)] = max(
                        self._blocked_until.get(group_of(method), 0.0), time.monotonic() + max(1, kind.seconds)
                    )
                finally:
                    GOVERNED.reset(token)
            if self.stop.is_set():
                raise Stopping(method) from refusal
            handed = hand_back is not None and await hand_back()
            await self.wait(kind.seconds, method, kind.name)
            if handed:
                raise HandedBack(method) from refusal

    def _learn(self, method: str, seconds: int, error: str) -> None:
        pace = self.budget.refused(method, seconds, error, self.session)
        if pace is None:
            return
        log.info(
            "%s: paced to %.1f/min on %s (%d calls per %.0fs), learned from %s",
            self.session,
            pace.per_minute,
            pace.group,
            pace.calls,
            pace.period,
            pace.reason,
            extra={"event": "pace_learned", "method": pace.group},
        )
        if self.user_id is not None:
            self.store.save_pace(self.user_id, pace)

    async def wait(self, seconds: int, method: str, error: str) -> None:
        seconds = max(1, seconds)
        group = group_of(method)
        self._blocked_until[group] = max(self._blocked_until.get(group, 0.0), time.monotonic() + seconds)
        until = time.time() + seconds
        detail = f"{seconds}s on {method} ({error.rstrip('0123456789').rstrip('_')})"  # telepi status names it
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
