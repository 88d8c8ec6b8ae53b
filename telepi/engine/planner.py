"""What to copy: walk the source oldest → newest from the route's high-water mark and enqueue.

History and live are one pipeline: live events only wake the planner, which always reads from the
high-water mark, so the switch-over neither skips nor repeats a message, and a periodic poll
catches whatever updates never arrived. Enqueue is idempotent, so several sessions may plan at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types

from telepi.checkpoint.model import NewItem
from telepi.checkpoint.store import Store
from telepi.engine.limits.account import AccountLimiter, Stopping
from telepi.engine.messages import skip_reason, topic_of
from telepi.engine.routerules import RouteRules
from telepi.errors import SessionStopped
from telepi.telegram.errors import ErrorKind, classify, error_name

log = logging.getLogger(__name__)
BATCH = 200
ALBUM_SETTLE_SECONDS = 3.0  # members of a new album arrive within moments of each other
ANNOUNCED_ALBUMS_KEPT = 256
MAX_PLAN_FAILURES = 8  # consecutive; then the error ends the run (systemd restarts it)


@dataclass(frozen=True)
class PlanScope:
    source_peer: Any
    source_is_forum: bool
    source_topic: int | None
    from_id: int | None
    to_id: int | None
    rules: RouteRules = field(default_factory=RouteRules)  # a message its filters leave out lands skipped


class Planner:
    def __init__(
        self, client: Any, store: Store, route_id: int, session: str, scope: PlanScope, limiter: AccountLimiter
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.on_topic_renamed: Callable[[int, str], Awaitable[None]] | None = None
        self.on_topic_state: Callable[[int], Awaitable[None]] | None = None  # closed / hidden changed
        self.store = store
        self.route_id = route_id
        self.session = session
        self.scope = scope
        self.reached_end = False
        # Albums whose members came in one live update: Telegram creates an album in one call
        # (messages.sendMultiMedia) and delivers it in one updates container, so a read after that update
        # holds all of it. Other trailing albums wait ALBUM_SETTLE_SECONDS from their date.
        self.announced_albums: dict[int, None] = {}
        self.work_planned: asyncio.Event | None = None  # set after each plan: the worker claims at once
        self._replan_at: float | None = None  # when a held-back album settles (time.time())

    def album_announced(self, grouped_id: int) -> None:
        self.announced_albums[grouped_id] = None
        while len(self.announced_albums) > ANNOUNCED_ALBUMS_KEPT:
            del self.announced_albums[next(iter(self.announced_albums))]

    def _high_water(self) -> int:
        route = next(r for r in self.store.routes() if r.id == self.route_id)
        floor = (self.scope.from_id - 1) if self.scope.from_id else 0
        return max(route.high_water, floor)

    async def plan_once(self) -> int:
        """Enqueue everything new up to the end of the source (or TO_ID); returns how many were new."""
        added = 0
        while True:
            start = self._high_water()
            if self.scope.to_id is not None and start >= self.scope.to_id:
                self.reached_end = True
                return added
            batch = await self.limiter.call("GetHistory", lambda s=start: self._read(s))  # type: ignore[misc]
            at_end = len(batch) < BATCH
            ready = self._without_open_album(batch, at_end)
            if ready:
                added += self._enqueue(ready)
                await self._follow_topic_renames(ready)
                self.store.raise_high_water(self.route_id, ready[-1].id)
            if at_end:
                self.reached_end = True
                return added
            if not ready:  # one album larger than a batch cannot happen (≤ 10 members); guard anyway
                self.store.raise_high_water(self.route_id, batch[-1].id)

    async def _read(self, after_id: int) -> list[Any]:
        kwargs: dict[str, Any] = {"reverse": True, "min_id": after_id, "limit": BATCH}
        if self.scope.to_id is not None:
            kwargs["max_id"] = self.scope.to_id + 1
        if self.scope.source_topic is not None:
            kwargs["reply_to"] = self.scope.source_topic
        return [m async for m in self.client.iter_messages(self.scope.source_peer, **kwargs)]

    def _without_open_album(self, batch: list[Any], at_end: bool) -> list[Any]:
        """Hold back a trailing album that may still grow, so an album is always enqueued whole."""
        if not batch:
            return batch
        grouped = getattr(batch[-1], "grouped_id", None)
        if grouped is None:
            return batch
        if at_end:
            newest = batch[-1].date.timestamp() if batch[-1].date else 0.0
            if grouped in self.announced_albums or time.time() - newest >= ALBUM_SETTLE_SECONDS:
                return batch
            self._replan_at = newest + ALBUM_SETTLE_SECONDS
        cut = len(batch)
        while cut > 0 and getattr(batch[cut - 1], "grouped_id", None) == grouped:
            cut -= 1
        return batch[:cut]

    def _enqueue(self, messages: list[Any]) -> int:
        items = [
            NewItem(
                m.id,
                grouped_id=getattr(m, "grouped_id", None),
                topic_id=topic_of(m, self.scope.source_is_forum),
                skip_reason=self._skip_reason(m),
            )
            for m in messages
        ]
        added = self.store.enqueue(self.route_id, items)  # service and filtered messages land skipped
        if added:
            log.info(
                "planned %d new messages up to id %d",
                added,
                messages[-1].id,
                extra={"event": "planned", "msg_id": messages[-1].id},
            )
        return added

    def _skip_reason(self, message: Any) -> str | None:
        filtered = self.scope.rules.filtered(message)
        if filtered is not None:
            log.debug("%d %s", message.id, filtered, extra={"event": "filtered", "msg_id": message.id})
            return filtered
        return "service_message" if skip_reason(message) == "service_message" else None

    async def _follow_topic_renames(self, messages: list[Any]) -> None:
        for message in messages:
            action = getattr(message, "action", None)
            if not isinstance(action, types.MessageActionTopicEdit):
                continue
            topic = topic_of(message, self.scope.source_is_forum)
            if topic is None:
                continue
            if action.title and self.on_topic_renamed is not None:
                await self.on_topic_renamed(topic, action.title)
            if (action.closed is not None or action.hidden is not None) and self.on_topic_state is not None:
                await self.on_topic_state(topic)

    async def run(self, wake: asyncio.Event, *, live: bool, poll_seconds: float, stop: asyncio.Event) -> None:
        """Plan the history, then (when live) again on every wake-up and at least every ``poll_seconds``."""
        failures = 0
        while not stop.is_set():
            wake.clear()  # before the read: an update that lands during it wakes the next one
            self._replan_at = None
            try:
                await self.plan_once()
                failures = 0
            except Stopping:
                return
            except SessionStopped:
                raise
            except Exception as exc:
                # A dropped link or a Telegram hiccup: read again later; the high-water mark loses nothing.
                found = classify(exc)
                if found.kind is ErrorKind.CHAT:
                    raise SessionStopped(f"SOURCE_CHAT: Telegram answered {found.name}: {found.fix}.") from exc
                if failures >= MAX_PLAN_FAILURES:
                    raise
                failures += 1
                log.warning("reading the source failed (%s); retrying in %ds", error_name(exc), 2**failures)
                await asyncio.sleep(2**failures)
                continue
            if self.work_planned is not None:
                self.work_planned.set()  # another session may have enqueued it: claim either way
            if not live:
                return
            timeout = poll_seconds
            if self._replan_at is not None:  # a held-back album: read again the moment it settles
                timeout = min(timeout, max(0.0, self._replan_at - time.time()) + 0.05)
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
