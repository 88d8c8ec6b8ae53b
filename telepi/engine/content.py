"""What to send for a source message: its text, entities and media as Telegram input objects.

Media that is a file (photo, document) is sent by reference here (``MODE=copy``); the streaming
reupload builds uploaded media instead. Everything else (polls, geo, venues, contacts, dice) is
recreated, which is the same in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telethon.tl import types

CAPTION_LIMIT = 1024
CAPTION_LIMIT_PREMIUM = 2048


@dataclass(frozen=True)
class Outgoing:
    """One send: media (None for text), caption/text with entities, and text that did not fit."""

    media: Any | None
    text: str
    entities: list[Any] | None
    overflow_text: str = ""
    overflow_entities: list[Any] | None = None
    web_preview: bool = False


def text_entities(message: Any) -> list[Any] | None:
    """Entities as they may be sent back: mention-by-id needs the input form."""
    entities = getattr(message, "entities", None)
    if not entities:
        return None
    result = []
    for entity in entities:
        if isinstance(entity, types.MessageEntityMentionName):
            # Sending needs the user's access hash, which a copy rarely has; keep the text, drop the link.
            continue
        result.append(entity)
    return result or None


def is_file_media(media: Any) -> bool:
    return isinstance(media, (types.MessageMediaPhoto, types.MessageMediaDocument))


def reference_media(media: Any) -> Any:
    """``InputMedia*`` that re-sends a file without transferring it (fails on protected chats)."""
    spoiler = bool(getattr(media, "spoiler", False)) or None
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        photo = media.photo
        return types.InputMediaPhoto(
            types.InputPhoto(photo.id, photo.access_hash, photo.file_reference), spoiler=spoiler
        )
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        document = media.document
        return types.InputMediaDocument(
            types.InputDocument(document.id, document.access_hash, document.file_reference), spoiler=spoiler
        )
    raise ValueError(f"not file media: {type(media).__name__}")


def recreated_media(media: Any) -> Any | None:
    """Input media for content that is not a file, or None when the message has none to send."""
    if media is None or isinstance(media, types.MessageMediaWebPage):
        return None
    if isinstance(media, types.MessageMediaPoll):
        poll = media.poll
        answers = [types.PollAnswer(text=a.text, option=a.option) for a in poll.answers]
        correct = None
        results = media.results
        if poll.quiz and results is not None and results.results:
            correct = [i for i, r in enumerate(results.results) if r.correct]
        return types.InputMediaPoll(
            poll=types.Poll(
                id=0,
                question=poll.question,
                answers=answers,
                hash=0,
                public_voters=poll.public_voters,
                multiple_choice=poll.multiple_choice,
                quiz=poll.quiz,
                close_period=poll.close_period,
            ),
            correct_answers=[answers[i].option for i in correct] if correct else None,
            solution=getattr(results, "solution", None) if poll.quiz else None,
            solution_entities=getattr(results, "solution_entities", None) if poll.quiz else None,
        )
    if isinstance(media, types.MessageMediaVenue):
        return types.InputMediaVenue(
            geo_point=_input_geo(media.geo),
            title=media.title,
            address=media.address,
            provider=media.provider,
            venue_id=media.venue_id,
            venue_type=media.venue_type,
        )
    if isinstance(media, (types.MessageMediaGeo, types.MessageMediaGeoLive)):
        return types.InputMediaGeoPoint(_input_geo(media.geo))
    if isinstance(media, types.MessageMediaContact):
        return types.InputMediaContact(media.phone_number, media.first_name, media.last_name, media.vcard)
    if isinstance(media, types.MessageMediaDice):
        return types.InputMediaDice(media.emoticon)
    raise ValueError(f"unsupported media: {type(media).__name__}")


def _input_geo(geo: Any) -> Any:
    if isinstance(geo, types.GeoPoint):
        return types.InputGeoPoint(lat=geo.lat, long=geo.long, accuracy_radius=geo.accuracy_radius)
    return types.InputGeoPointEmpty()


def outgoing(message: Any, media: Any | None, *, caption_limit: int = CAPTION_LIMIT) -> Outgoing:
    """Pair the message's text with ``media``; a caption over the limit moves to a follow-up message."""
    text = message.message or ""
    entities = text_entities(message)
    web_preview = isinstance(getattr(message, "media", None), types.MessageMediaWebPage)
    if media is not None and len(text) > caption_limit:
        return Outgoing(media, "", None, overflow_text=text, overflow_entities=entities)
    return Outgoing(media, text, entities, web_preview=web_preview)
