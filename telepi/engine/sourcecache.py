"""Source messages read ahead, so that a claim of one message is not one ``GetMessages`` of its own.

With several accounts on an ordered route the route's next message goes to whichever account can send it
first, one message at a time; reading each claim alone would cost a history read per message, against the
history quota (30 reads per 30 s: Telethon#565, notes/telegram.md). So a read takes the claimed ids and the
ids after them, up to one call's 100, and claims are served from what was read while it is fresh.

A copy made from a read up to ``FRESH_SECONDS`` old is what a read at claim time gives when the message changes
just after it: an edit or delete of a message not yet copied waits for its copy and is applied to it then
(``changes.py``); the catch-up that finds edits a copy may have missed takes every edit from 120 s before
the claim as one (``changes.CLOCK_SLACK``), which covers a read this much older. An id that read as nothing
(not posted yet, deleted) is never kept: it is read again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telethon.tl import types

READ_AHEAD = 100  # ids per GetMessages: Telegram's limit for one call
FRESH_SECONDS = 30.0
KEPT = 1000  # messages at most; the oldest reads go first


class SourceCache:
    def __init__(self, read: Callable[[list[int]], Awaitable[list[Any]]], clock: Callable[[], float] = time.monotonic):
        self._read = read
        self._clock = clock
        self._kept: dict[int, tuple[float, Any]] = {}  # id -> (when read, message), oldest read first
        self.reads = 0

    async def messages(self, ids: Sequence[int], *, ahead: Sequence[int] = ()) -> list[Any]:
        """``ids``' messages (None for one that does not exist), read in one call together with ``ahead``
        when any of them is not fresh here. A message served here is forgotten: a later claim of it (handed
        back, retried) reads it anew."""
        now = self._clock()
        found = {i: self._kept.pop(i)[1] for i in ids if self._fresh(i, now)}  # taken before any await
        missing = [i for i in ids if i not in found]
        for i in missing:
            self._kept.pop(i, None)
        if missing:
            extra = [i for i in ahead if i not in ids and not self._fresh(i, now)]
            wanted = [*missing, *extra][: max(READ_AHEAD, len(missing))]
            self.reads += 1
            for message_id, message in zip(wanted, await self._read(wanted), strict=True):
                if message_id in found or message_id in missing:
                    found[message_id] = message
                elif message is not None and not isinstance(message, types.MessageEmpty):
                    self._kept.pop(message_id, None)
                    self._kept[message_id] = (now, message)
            while len(self._kept) > KEPT:
                del self._kept[next(iter(self._kept))]
        return [found[i] for i in ids]

    def _fresh(self, message_id: int, now: float) -> bool:
        kept = self._kept.get(message_id)
        return kept is not None and now - kept[0] <= FRESH_SECONDS
