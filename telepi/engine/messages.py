"""Pure facts about a source message: its topic, whether it is content, what it looks like."""

from __future__ import annotations

import hashlib
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
