"""A route's filters and transforms (telepi/rules/) applied to Telethon's messages: what each message is to
the filters, and what its copy's text becomes. The planner, the worker, the edits and ``telepi verify``
all ask here, so a message is judged and shown the same way by each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types

from telepi.rules import Context, Facts, Filters, Transforms


def kind_of(message: Any) -> str:
    """The message's kind as FILTER_KINDS names it."""
    if isinstance(message, types.MessageService):
        return "service"
    media = getattr(message, "media", None)
    if media is None or isinstance(media, types.MessageMediaWebPage):
        return "text"
    if isinstance(media, types.MessageMediaPhoto):
        return "photo"
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        attributes = media.document.attributes
        if any(isinstance(a, types.DocumentAttributeSticker) for a in attributes):
            return "sticker"
        if any(isinstance(a, types.DocumentAttributeAnimated) for a in attributes):
            return "animation"
        video = next((a for a in attributes if isinstance(a, types.DocumentAttributeVideo)), None)
        if video is not None:
            return "round" if video.round_message else "video"
        audio = next((a for a in attributes if isinstance(a, types.DocumentAttributeAudio)), None)
        if audio is not None:
            return "voice" if audio.voice else "audio"
        return "document"
    if isinstance(media, types.MessageMediaPoll):
        return "poll"
    if isinstance(media, (types.MessageMediaGeo, types.MessageMediaGeoLive, types.MessageMediaVenue)):
        return "geo"
    if isinstance(media, types.MessageMediaContact):
        return "contact"
    if isinstance(media, types.MessageMediaDice):
        return "dice"
    return "other"


def file_size(message: Any) -> int | None:
    media = getattr(message, "media", None)
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        return int(media.document.size)
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        sizes = [getattr(s, "size", 0) or max(getattr(s, "sizes", None) or [0]) for s in media.photo.sizes]
        return int(max(sizes, default=0))
    return None


def facts_of(message: Any) -> Facts:
    sender = getattr(message, "sender", None)
    return Facts(
        id=int(message.id),
        kind=kind_of(message),
        text=getattr(message, "message", "") or "",
        date=getattr(message, "date", None),
        sender_id=getattr(message, "sender_id", None),
        sender_username=getattr(sender, "username", None),
        forwarded=getattr(message, "fwd_from", None) is not None,
        size=file_size(message),
    )


def source_link_base(chat: Any) -> str:
    """``https://t.me/name`` for a public chat, ``https://t.me/c/<id>`` otherwise; a message's link adds ``/id``."""
    username = getattr(chat, "username", None)
    return f"https://t.me/{username}" if username else f"https://t.me/c/{getattr(chat, 'id', 0)}"


def _author(message: Any) -> str:
    signature = getattr(message, "post_author", None)
    if signature:
        return str(signature)
    sender = getattr(message, "sender", None)
    if sender is None:
        return ""
    title = getattr(sender, "title", None)
    if title:
        return str(title)
    names = [getattr(sender, "first_name", None), getattr(sender, "last_name", None)]
    return " ".join(str(n) for n in names if n)


@dataclass(frozen=True)
class RouteRules:
    filters: Filters = field(default_factory=Filters)
    transforms: Transforms = field(default_factory=Transforms)
    link_base: str = ""
    topic_title: Callable[[int | None], str] = lambda _topic: ""

    def filtered(self, message: Any) -> str | None:
        """``filtered: …`` when the filters leave this message out (a deleted one is not judged)."""
        if message is None or isinstance(message, types.MessageEmpty) or not self.filters.active:
            return None
        return self.filters.reason(facts_of(message))

    def shown(self, message: Any, entities: Sequence[Any] | None, *, topic: int | None) -> tuple[str, list[Any] | None]:
        """The copy's text and entities (``entities``: the source's, as they may be sent)."""
        text = getattr(message, "message", "") or ""
        if not self.transforms.active:
            return text, list(entities) if entities else None
        date = getattr(message, "date", None)
        context = Context(
            source_link=f"{self.link_base}/{message.id}" if self.link_base else "",
            date=date.strftime("%Y-%m-%d %H:%M") if date is not None else "",
            topic=self.topic_title(topic) if topic is not None else "",
            author=_author(message),
        )
        media = getattr(message, "media", None)
        has_media = media is not None and not isinstance(media, types.MessageMediaWebPage)
        new_text, new_entities = self.transforms.apply(text, entities, has_media=has_media, context=context)
        return new_text, new_entities or None
