"""A route's filters: which source messages it copies. A message a filter leaves out is recorded with its
reason (``filtered: kind=sticker``), never silently absent.

Pure: the engine describes each message as :class:`Facts`; this module knows nothing of Telegram's client
nor of the checkpoint. Checks run in a fixed order and the first that fails names the reason: ids, date,
kind, sender, forwarded, file size, excluded words, excluded pattern, included words or pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

KINDS = (
    "text",
    "photo",
    "video",
    "document",
    "audio",
    "voice",
    "round",  # a round video message
    "sticker",
    "animation",  # a GIF
    "poll",
    "geo",
    "contact",
    "dice",
    "service",
    "other",
)
Forwarded = Literal["any", "only", "exclude"]
FORWARDED: tuple[Forwarded, ...] = ("any", "only", "exclude")
SHOWN = 40  # a pattern quoted in a reason is cut: status lines stay readable


@dataclass(frozen=True)
class Facts:
    """What the filters look at in one source message."""

    id: int
    kind: str
    text: str = ""
    date: datetime | None = None
    sender_id: int | None = None
    sender_username: str | None = None  # without the @
    forwarded: bool = False
    size: int | None = None  # bytes of the file, None without one


@dataclass(frozen=True)
class Filters:
    kinds: frozenset[str] | None = None  # None: every kind
    exclude_kinds: frozenset[str] = frozenset()
    include_words: tuple[str, ...] = ()  # case-insensitive; any one lets the message through
    exclude_words: tuple[str, ...] = ()
    include_regex: re.Pattern[str] | None = None
    exclude_regex: re.Pattern[str] | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    min_id: int | None = None
    max_id: int | None = None
    senders: frozenset[str] = frozenset()  # ids as digits (-100… for channels) or lower-case usernames
    exclude_senders: frozenset[str] = frozenset()
    forwarded: Forwarded = "any"
    min_size: int | None = None
    max_size: int | None = None  # a size range applies to messages with a file; the others pass it

    @property
    def active(self) -> bool:
        return self != Filters()

    def reason(self, facts: Facts) -> str | None:
        """``filtered: …`` naming the first check ``facts`` fails, or None when the message is copied."""
        found = self._first_failed(facts)
        return None if found is None else f"filtered: {found}"

    def _first_failed(self, facts: Facts) -> str | None:
        if (self.min_id is not None and facts.id < self.min_id) or (self.max_id is not None and facts.id > self.max_id):
            return "id"
        if facts.date is not None and (
            (self.since is not None and facts.date < self.since)
            or (self.until is not None and facts.date >= self.until)
        ):
            return "date"
        if (self.kinds is not None and facts.kind not in self.kinds) or facts.kind in self.exclude_kinds:
            return f"kind={facts.kind}"
        names = _sender_names(facts)
        if (self.senders and not names & self.senders) or names & self.exclude_senders:
            return "sender"
        if (self.forwarded == "only" and not facts.forwarded) or (self.forwarded == "exclude" and facts.forwarded):
            return "forwarded" if facts.forwarded else "not_forwarded"
        if facts.size is not None and (
            (self.min_size is not None and facts.size < self.min_size)
            or (self.max_size is not None and facts.size > self.max_size)
        ):
            return "size"
        folded = facts.text.casefold()
        for word in self.exclude_words:
            if word.casefold() in folded:
                return f"exclude_word={word[:SHOWN]}"
        if self.exclude_regex is not None and self.exclude_regex.search(facts.text):
            return f"exclude_regex={self.exclude_regex.pattern[:SHOWN]}"
        if self.include_words or self.include_regex is not None:
            words = any(word.casefold() in folded for word in self.include_words)
            pattern = self.include_regex is not None and self.include_regex.search(facts.text) is not None
            if not (words or pattern):
                return "include"
        return None


def _sender_names(facts: Facts) -> frozenset[str]:
    names = set()
    if facts.sender_id is not None:
        names.add(str(facts.sender_id))
    if facts.sender_username:
        names.add(facts.sender_username.lower().lstrip("@"))
    return frozenset(names)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}
_UNITS |= {"g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """``10MB``, ``512KiB``, ``2000``: bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    unit = (match.group(2) or "").lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError("is not a size such as 2000, 512KiB or 10MB")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_sender(text: str) -> str:
    """An id (digits, ``-100…`` for a channel) or a @username, as :attr:`Filters.senders` holds it."""
    value = text.strip()
    if re.fullmatch(r"-?\d+", value):
        return str(int(value))
    if re.fullmatch(r"@?[A-Za-z][A-Za-z0-9_]{3,31}", value):
        return value.lstrip("@").lower()
    raise ValueError(f"names {value[:SHOWN]!r}, which is neither a numeric id nor a @username")
