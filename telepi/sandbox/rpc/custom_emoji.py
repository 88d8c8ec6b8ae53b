"""Which custom emoji of a send Telegram keeps (``messageEntityCustomEmoji``, https://core.telegram.org/api/custom-emoji).

- Custom emoji are a Premium feature (https://core.telegram.org/api/premium; tdesktop#28377, a maintainer to a
  user whose custom emoji arrived as standard ones: "You need premium for that"): from a non-premium sender
  the entity is dropped and the text keeps the plain emoji it wraps. Everyone may try them in Saved Messages
  (https://telegram.org/blog/custom-emoji, 2022-08). Emoji marked ``free`` in their set are usable by anyone;
  the sandbox holds no emoji sets, so it takes the harsher rule: no custom emoji from a non-premium sender.
- The entity "must wrap exactly one regular emoji (...) otherwise the server will ignore it" (the page above):
  one wrapping letters, digits or spaces is dropped for everyone. (Telling one emoji from two needs the
  emoji tables; the sandbox refuses what is plainly not an emoji.)
- At most ``message_animated_emoji_max`` (the app config, 100 today) per message: tdesktop#24919, "a server
  side limitation, only 100 custom emoji can be in a single message"; the ones past it show as plain emoji.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

ANIMATED_EMOJI_MAX = 100  # the app config's message_animated_emoji_max


def _utf16_slice(text: str, offset: int, length: int) -> str:
    units = text.encode("utf-16-le")
    return units[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def wraps_an_emoji(text: str, offset: int, length: int) -> bool:
    wrapped = _utf16_slice(text, offset, length)
    if not wrapped or length <= 0:
        return False
    # keycaps (1️⃣, #️⃣) start with a digit or sign followed by U+20E3; anything else with letters, digits
    # or spaces is no emoji
    if "\u20e3" in wrapped:
        return True
    return not any(unicodedata.category(c)[0] in "LNZ" for c in wrapped)


def kept(text: str, entities: Sequence[dict[str, Any]], *, premium: bool, saved_messages: bool) -> list[dict[str, Any]]:
    """``entities`` (stored form) with the custom emoji Telegram would drop taken out."""
    out: list[dict[str, Any]] = []
    count = 0
    for entity in entities:
        if entity.get("type") == "custom_emoji":
            if not (premium or saved_messages):
                continue
            if not wraps_an_emoji(text, int(entity["offset"]), int(entity["length"])):
                continue
            count += 1
            if count > ANIMATED_EMOJI_MAX:
                continue
        out.append(entity)
    return out
