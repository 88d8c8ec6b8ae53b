"""Pure facts about a source message: its topic, whether it is content, what it looks like."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from telethon.tl import types

GENERAL_TOPIC = 1


def topic_of(message: Any, source_is_forum: bool) -> int | None:
    """The forum topic a message belongs to (General = 1), or None outside forums."""
    if not source_is_forum:
        return None
    reply = getattr(message, "reply_to", None)
    if isinstance(reply, types.MessageReplyHeader) and reply.forum_topic:
        return int(reply.reply_to_top_id or reply.reply_to_msg_id)
    if isinstance(getattr(message, "action", None), types.MessageActionTopicCreate):
        return int(message.id)
    return GENERAL_TOPIC


def replied_id(message: Any) -> int | None:
    """The message this one answers, not counting the implicit reply to its topic's root."""
    reply = getattr(message, "reply_to", None)
    if not isinstance(reply, types.MessageReplyHeader) or reply.reply_to_msg_id is None:
        return None
    if reply.forum_topic and not reply.reply_to_top_id:
        return None  # reply_to_msg_id is the topic itself
    if reply.reply_to_peer_id is not None and reply.reply_to_peer_id != getattr(message, "peer_id", None):
        return None  # an id in another chat: it names no message of this one
    return int(reply.reply_to_msg_id)


def skip_reason(message: Any) -> str | None:
    """Why a message is not content to copy, or None when it is."""
    if message is None:
        return "deleted"
    if isinstance(message, types.MessageService):
        return "service_message"
    if isinstance(message, types.MessageEmpty):
        return "deleted"
    media = getattr(message, "media", None)  # media that cannot be sent again may still be forwarded
    if not message.message and media is None:
        return "empty"
    return None


def media_kind(message: Any) -> str:
    media = getattr(message, "media", None)
    if media is None or isinstance(media, types.MessageMediaWebPage):
        return "text"
    if isinstance(media, types.MessageMediaPhoto):
        return "photo"
    if isinstance(media, types.MessageMediaDocument):
        return "document"
    return type(media).__name__.removeprefix("MessageMedia").lower()


def signature(message: Any, *, shown_text: str | None = None) -> str:
    """A digest of what a copy of ``message`` shows (``shown_text``: the copy's text when it differs from
    the source's): used to find a copy a dead session may have sent."""
    text = (getattr(message, "message", "") or "") if shown_text is None else shown_text
    size = 0
    media = getattr(message, "media", None)
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        size = int(media.document.size)
    return hashlib.sha256(f"{media_kind(message)}\x00{size}\x00{text}".encode()).hexdigest()[:16]


def identity(message: Any, *, shown: tuple[str, Sequence[Any] | None] | None = None) -> str:
    """What a copy of ``message`` shows, whoever sent it: text, entities and the media's own facts (sizes,
    dimensions, duration, file name, photo sizes). A source message and its copy share it; ``telepi verify``
    pairs the two histories by it. ``shown``: the copy's text and entities when the route transforms them."""
    text, found = (
        shown if shown is not None else (getattr(message, "message", "") or "", getattr(message, "entities", None))
    )
    # Custom emoji are left out: Telegram drops them from a non-premium sender's copy, keeping the plain
    # emoji in the text (core.telegram.org/api/premium, tdesktop#28377), so a faithful copy may lack them.
    entities = [
        (type(e).__name__, e.offset, e.length, getattr(e, "url", None), getattr(e, "document_id", None))
        for e in found or []
        if not isinstance(e, types.MessageEntityCustomEmoji)
    ]
    parts: list[object] = [media_kind(message), text, entities, *_media_facts(getattr(message, "media", None))]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _media_facts(media: Any) -> list[object]:
    if media is None or isinstance(media, types.MessageMediaWebPage):
        return []  # Telegram builds a link preview itself from the text
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        # Telegram makes the smaller sizes of an uploaded photo itself: only the largest is the photo's own
        largest = max(((getattr(s, "w", 0), getattr(s, "h", 0)) for s in media.photo.sizes), default=(0, 0))
        return [largest]
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        document = media.document
        attributes = sorted(
            repr(
                sorted(
                    (k, v)
                    for k, v in attribute.to_dict().items()
                    if k != "_" and v not in (False, None) and not isinstance(v, bytes)
                )
            )
            for attribute in document.attributes
        )
        return [document.size, document.mime_type, attributes]
    if isinstance(media, types.MessageMediaDice):
        return [media.emoticon]  # Telegram rolls a sent dice itself
    if isinstance(media, types.MessageMediaPoll):
        # The words only: a recreated poll's TextWithEntities may carry entities=None where the source has [].
        question = getattr(media.poll.question, "text", media.poll.question)
        return [question, [getattr(answer.text, "text", answer.text) for answer in media.poll.answers]]
    return [repr(sorted((k, v) for k, v in media.to_dict().items() if not isinstance(v, bytes | dict)))]
