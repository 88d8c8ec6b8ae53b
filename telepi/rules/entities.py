"""Text edits and what they do to message entities, in UTF-16 code units as Telegram counts them.

An edit is a set of non-overlapping spans of the old text, each replaced by new text (an empty span
inserts, an empty replacement removes). What happens to each entity (the rules the README states):

- an entity no span touches is moved and covers exactly the same characters;
- an entity whose characters are all replaced is dropped;
- an entity a span cuts at one edge shrinks to the characters that survive; a span wholly inside it is
  covered by it, so bold text stays bold around a replaced word (an insertion at an edge stays outside);
- an entity whose meaning is its own text (a URL, an @mention, a #hashtag, a custom emoji, …) is dropped
  as soon as any span touches its characters: shrunk or widened it would name something else.

Offsets are UTF-16 code units throughout; spans from regular expressions always fall between code points,
so an astral character (an emoji, U+1F600) is never split by an edit.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telethon.tl import types

# Entities Telegram derives from the characters they cover: their meaning is their text.
TEXT_DEFINED: tuple[type, ...] = (
    types.MessageEntityUrl,
    types.MessageEntityEmail,
    types.MessageEntityMention,
    types.MessageEntityHashtag,
    types.MessageEntityCashtag,
    types.MessageEntityBotCommand,
    types.MessageEntityPhone,
    types.MessageEntityBankCard,
    types.MessageEntityCustomEmoji,
)


def utf16_length(text: str) -> int:
    """Telegram's length of a text: UTF-16 code units (a character outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def utf16_offsets(text: str) -> list[int]:
    """The UTF-16 offset of each code point of ``text``, and the total length at the end."""
    offsets = [0] * (len(text) + 1)
    position = 0
    for index, character in enumerate(text):
        offsets[index] = position
        position += 2 if ord(character) > 0xFFFF else 1
    offsets[len(text)] = position
    return offsets


def utf16_slice(text: str, offset: int, length: int) -> str:
    """The characters ``offset``..``offset+length`` in UTF-16 units cover (a split pair decodes lossily)."""
    units = text.encode("utf-16-le")[2 * offset : 2 * (offset + length)]
    return units.decode("utf-16-le", errors="replace")


@dataclass(frozen=True)
class Span:
    """Replace old UTF-16 units ``start``..``end`` with ``text``."""

    start: int
    end: int
    text: str


def apply_spans(text: str, entities: Sequence[Any], spans: Sequence[Span]) -> tuple[str, list[Any]]:
    """``text`` with ``spans`` replaced (sorted, non-overlapping) and ``entities`` carried over by the rules
    above; the entities given are never changed (each surviving one is a moved copy)."""
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise ValueError("spans overlap")
    units = text.encode("utf-16-le")
    pieces: list[bytes] = []
    position = 0
    for span in ordered:
        pieces.append(units[2 * position : 2 * span.start])
        pieces.append(span.text.encode("utf-16-le"))
        position = span.end
    pieces.append(units[2 * position :])
    new_text = b"".join(pieces).decode("utf-16-le", errors="surrogatepass")
    return new_text, [moved for e in entities if (moved := _carry(e, ordered)) is not None]


def _carry(entity: Any, spans: Sequence[Span]) -> Any | None:
    start, end = int(entity.offset), int(entity.offset) + int(entity.length)
    if end <= start:
        return None
    touched = [s for s in spans if (s.start < end and s.end > start) or (s.start == s.end and start < s.start < end)]
    if touched and isinstance(entity, TEXT_DEFINED):
        return None
    # Characters in a span at the entity's edge are gone: the entity begins after it, or ends before it.
    for span in spans:  # ascending: a span ending where the next begins moves the start past both
        if span.start <= start < span.end:
            start = span.end
    for span in reversed(spans):
        if span.start < end <= span.end:
            end = span.start
    if end <= start:
        return None  # every character it covered was replaced
    new_start, new_end = _moved(start, spans, at_start=True), _moved(end, spans, at_start=False)
    moved = copy.copy(entity)
    moved.offset, moved.length = new_start, new_end - new_start
    return moved


def _moved(position: int, spans: Sequence[Span], *, at_start: bool) -> int:
    """Where an old position lands: spans wholly before it shift it; an insertion right at an entity's start
    goes before the entity, one right at its end after it."""
    shift = 0
    for span in spans:
        before = span.end < position or (span.end == position and (span.start < position or at_start))
        if before:
            shift += utf16_length(span.text) - (span.end - span.start)
    return position + shift
