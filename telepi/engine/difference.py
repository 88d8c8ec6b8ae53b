"""Nothing missed while down: a channel source's edits and deletes from Telegram's own record of it.

A channel or supergroup numbers its updates with its own ``pts`` (https://core.telegram.org/api/updates).
The route keeps the pts up to which the source's edits and deletes are recorded in the checkpoint
(``routes.source_pts``). On start, after a gap in the live updates, after the link to Telegram came back,
and once a minute anyway, a session asks ``updates.getChannelDifference`` from it (as Telethon's
``catch_up`` does, but from the checkpoint, so a SIGKILL loses nothing) and records the edits
(``updateEditChannelMessage``) and deletes (``updateDeleteChannelMessages``) of each slice as change rows
before it advances the pts, one short transaction after them. New messages need no record: the planner
reads them from the route's high-water mark (a slice with some only wakes it).

Live updates advance the pts too, while they come without a hole (``pts - pts_count`` is where the last
one ended, the rule of https://core.telegram.org/api/updates#update-handling); an update past a hole
waits a moment for the missing ones (Telethon may hand them over out of order), then the difference is
asked. Any session of the route may do this: change rows are idempotent and the stored pts only moves on.

Where Telegram answers ``updates.channelDifferenceTooLong`` (the updates since our pts are gone from the
channel's box: https://core.telegram.org/constructor/updates.channelDifferenceTooLong), the history's
copied range is read again instead (:meth:`ChangeApplier.reread_window`) and the state restarts from the
dialog's pts; the log says so. The first start of a route (no pts yet) does the same from the channel's
current pts (``channelFull.pts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from telethon.tl import functions, types

from telepi.checkpoint.store import Store
from telepi.engine.changes import ChangeApplier, timestamp
from telepi.errors import SessionStopped
from telepi.telegram.errors import classify

log = logging.getLogger(__name__)

# "Ordinary (non-bot) users are supposed to pass 10-100" (core.telegram.org/method/updates.getChannelDifference)
SLICE_LIMIT = 100
GAP_GRACE_SECONDS = 0.5  # an update past a hole waits this long for the missing ones before asking
IDLE_SECONDS = 60.0  # asked at least this often: an update Telegram never pushed is found within a minute
LINK_SAMPLE_SECONDS = 1.0
# Our pts is unknown to the channel (a checkpoint restored from another world, or reset): start over.
RESTART_ERRORS = ("PERSISTENT_TIMESTAMP_INVALID", "PERSISTENT_TIMESTAMP_EMPTY")


class SourceDifference:
    """The route's source channel's update state: what is recorded up to which pts, and asking for the rest."""

    def __init__(
        self,
        client: Any,
        store: Store,
        route_id: int,
        channel: types.InputChannel,
        changes: ChangeApplier,
        new_messages: Callable[[], None] = lambda: None,
    ) -> None:
        self.client, self.store, self.route_id, self.channel = client, store, route_id, channel
        self.changes, self.new_messages = changes, new_messages
        self.gap = asyncio.Event()
        self.applied: int | None = None  # every update up to this pts is recorded (None: not asked yet)
        self._saved = 0
        self._ahead: dict[int, int] = {}  # live updates past a hole: start pts → end pts
        self._lock = asyncio.Lock()

    # ---- live ---------------------------------------------------------------------------------

    def live(self, update: Any) -> None:
        """A pushed update (Telethon's raw update): record an edit or delete of the source, move the pts."""
        if _channel_of(update) != self.channel.channel_id:
            return
        if isinstance(update, types.UpdateChannelTooLong):
            self.gap.set()  # Telegram says there is more than it pushes
            return
        pts, count = getattr(update, "pts", None), getattr(update, "pts_count", None)
        if not pts or not count:
            return  # no pts of its own (read marks), or a slice of Telethon's own difference: a hole shows it
        if not self._record([update]):
            self.applied = None  # ask again from what the checkpoint has
            self.gap.set()
            return
        self._ahead[pts - count] = max(pts, self._ahead.get(pts - count, 0))
        # A new message records nothing: its pts is saved with the next change or the next round.
        self._advance(save=isinstance(update, types.UpdateEditChannelMessage | types.UpdateDeleteChannelMessages))
        if self._ahead:
            self.gap.set()

    def _advance(self, *, save: bool) -> None:
        if self.applied is None:
            return
        moved = True
        while moved:
            moved = False
            for start, end in list(self._ahead.items()):
                if start <= self.applied:
                    self.applied = max(self.applied, end)
                    del self._ahead[start]
                    moved = True
        if save and self.applied > self._saved:
            self._save(self.applied)

    def _save(self, pts: int, *, restart: bool = False) -> None:
        try:
            stored = self.store.advance_source_pts(self.route_id, pts, restart=restart)
        except Exception as exc:  # recorded anyway: a later save, or a difference asked again, covers it
            log.warning("source pts %d not saved (%s)", pts, type(exc).__name__)
            return
        self._saved = stored
        self.applied = stored if self.applied is None else max(self.applied, stored)

    # ---- asking Telegram ----------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Ask for the difference from the recorded pts until Telegram says it is final."""
        async with self._lock:
            stored = self.store.source_pts(self.route_id)
            if stored is None:
                await self._start_over("no update state recorded yet", restart=False)
                return
            pts = stored if self.applied is None else max(stored, self.applied)
            edits = deletes = 0
            while True:
                try:
                    diff = await self.client(
                        functions.updates.GetChannelDifferenceRequest(
                            channel=self.channel,
                            filter=types.ChannelMessagesFilterEmpty(),
                            pts=pts,
                            limit=SLICE_LIMIT,
                            force=False,
                        )
                    )
                except Exception as exc:
                    if classify(exc).name not in RESTART_ERRORS:
                        raise
                    await self._start_over(f"Telegram answered {classify(exc).name} for pts {pts}", restart=True)
                    return
                if isinstance(diff, types.updates.ChannelDifferenceEmpty):
                    self._reach(diff.pts)
                    break
                if isinstance(diff, types.updates.ChannelDifferenceTooLong) and diff.dialog.pts is None:
                    await self._start_over(f"the difference since pts {pts} is too long", restart=False)
                    return  # Dialog.pts is optional in the schema: the channel's own pts then
                if isinstance(diff, types.updates.ChannelDifferenceTooLong):
                    log.warning(
                        "the source's difference since pts %d is too long for Telegram to give: reading the "
                        "copied range of its history again (edits by edit_date, deletes by absence)",
                        pts,
                        extra={"event": "difference_too_long"},
                    )
                    await self.changes.reread_window()
                    self._reach(diff.dialog.pts)
                    break
                if not self._record(diff.other_updates):
                    self.applied = None  # nothing saved past what is recorded: ask again from the checkpoint
                    self.gap.set()
                    return
                edits += sum(isinstance(u, types.UpdateEditChannelMessage) for u in diff.other_updates)
                deletes += sum(
                    len(u.messages) for u in diff.other_updates if isinstance(u, types.UpdateDeleteChannelMessages)
                )
                if diff.new_messages:
                    self.new_messages()
                self._reach(diff.pts)
                pts = diff.pts
                if diff.final:
                    break
            if edits or deletes:
                log.info(
                    "difference to pts %d: %d edits and %d deleted messages recorded",
                    pts,
                    edits,
                    deletes,
                    extra={"event": "changes"},
                )

    def _reach(self, pts: int) -> None:
        self.applied = pts if self.applied is None else max(self.applied, pts)
        self._advance(save=True)

    async def _start_over(self, why: str, *, restart: bool) -> None:
        """No usable pts: the channel's current one, then the history read for what came before it.
        ``restart``: Telegram refused the stored pts, which must not stay (otherwise another session's
        later pts wins)."""
        full = await self.client(functions.channels.GetFullChannelRequest(self.channel))
        pts = int(full.full_chat.pts)
        log.info("%s: reading the copied range of the source, update state from pts %d", why, pts)
        await self.changes.reread_window()
        self._ahead = {start: end for start, end in self._ahead.items() if end > pts}
        self.applied = None
        self._save(pts, restart=restart)
        self._advance(save=False)

    def _record(self, updates: list[Any]) -> bool:
        """Edits and deletes of a run of updates into the checkpoint. Recorded together, not one by one in
        pts order: a delete closes the message's edits whenever they were recorded, and nothing edits a
        deleted message, so the outcome is the same."""
        edits: dict[int, int | None] = {}
        deleted: list[int] = []
        for update in updates:
            if isinstance(update, types.UpdateEditChannelMessage) and _channel_of(update) == self.channel.channel_id:
                message = update.message
                if isinstance(message, types.Message):
                    stamp = timestamp(message.edit_date)
                    edits[message.id] = max(stamp or 0, edits.get(message.id) or 0) or None
            elif isinstance(update, types.UpdateDeleteChannelMessages) and update.channel_id == self.channel.channel_id:
                deleted.extend(update.messages)
        return self.changes.record_edits(edits) and self.changes.record_deletes(deleted)

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, link_up: Callable[[], bool] = lambda: True) -> None:
        """Catch up now, then after each gap, after the link came back, and at least every minute."""
        loop = asyncio.get_running_loop()
        was_up = True
        while not stop.is_set():
            self.gap.clear()
            try:
                await self.catch_up()
            except SessionStopped:
                raise
            except Exception as exc:  # Telegram or the checkpoint busy: the next round asks again
                log.warning("asking the source's difference failed (%s): asked again later", classify(exc).name)
            if self.applied is not None and self.applied > self._saved:
                self._save(self.applied)  # new messages only since the last save
            due = loop.time() + IDLE_SECONDS
            while not stop.is_set() and loop.time() < due:
                if self.gap.is_set():
                    await asyncio.sleep(GAP_GRACE_SECONDS)  # the missing updates may just be late
                    if self._ahead or self.applied is None:
                        break
                    self.gap.clear()
                up = link_up()
                if up and not was_up:
                    was_up = True
                    break  # back from an outage: what happened meanwhile
                was_up = up
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LINK_SAMPLE_SECONDS):
                        await self.gap.wait()


def _channel_of(update: Any) -> int | None:
    channel_id = getattr(update, "channel_id", None)
    if channel_id is not None:
        return int(channel_id)
    peer = getattr(getattr(update, "message", None), "peer_id", None)
    return int(peer.channel_id) if isinstance(peer, types.PeerChannel) else None
