"""What to send for a source message: its text, entities and media as Telegram input objects.

Media that is a file (photo, document) is sent by reference here (``MODE=copy``); the streaming
reupload builds uploaded media instead. Everything else (polls, geo, venues, contacts, dice) is
recreated, which is the same in every mode. Some content cannot be sent again at all (stories,
giveaways, paid media, games, invoices, to-do lists, quizzes whose answer the account cannot see):
``cannot_copy`` says why, and such a message is forwarded or skipped, never sent. Lengths are
counted as Telegram counts them, in UTF-16 code units.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telethon.tl import types

from telepi.rules.entities import utf16_length

# The app config's caption_length_limit_default / _premium as of 2026; the account's own config wins.
CAPTION_LIMIT = 1024
CAPTION_LIMIT_PREMIUM = 4096

# Media a source message may carry that no input form can send again: only forwarding copies it.
_UNSENDABLE: dict[type, str] = {
    types.MessageMediaStory: "story",
    types.MessageMediaGiveaway: "giveaway",
    types.MessageMediaGiveawayResults: "giveaway_results",
    types.MessageMediaPaidMedia: "paid_media",
    types.MessageMediaGame: "game",
    types.MessageMediaInvoice: "invoice",
    types.MessageMediaToDo: "todo",
    types.MessageMediaUnsupported: "unsupported",
}
_SENDABLE = (
    types.MessageMediaPhoto,
    types.MessageMediaDocument,
    types.MessageMediaPoll,
    types.MessageMediaGeo,
    types.MessageMediaGeoLive,
    types.MessageMediaVenue,
    types.MessageMediaContact,
    types.MessageMediaDice,
    types.MessageMediaWebPage,
)


def unsendable_kind(media: Any) -> str | None:
    """``story``, ``giveaway``, … for media that can only be forwarded (anything unknown too), else None."""
    if media is None or isinstance(media, _SENDABLE):
        return None
    known = _UNSENDABLE.get(type(media))
    if known is not None:
        return known
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(media).__name__.removeprefix("MessageMedia")).lower()


def quiz_answer_unknown(media: Any) -> bool:
    """A quiz whose correct answer this account cannot see (Telegram shows it only to voters)."""
    if not isinstance(media, types.MessageMediaPoll) or not media.poll.quiz:
        return False
    results = media.results.results if media.results is not None else None
    return not any(r.correct for r in results or [])


def cannot_copy(media: Any) -> str | None:
    """Why media cannot be sent again (the skip reason when it is not forwarded), or None."""
    kind = unsendable_kind(media)
    if kind is not None:
        return f"unsupported:{kind}"
    if quiz_answer_unknown(media):
        return "quiz_answer_unknown"
    return None


@dataclass(frozen=True)
class Outgoing:
    """One send: media (None for text), caption/text with entities, and text that did not fit."""

    media: Any | None
    text: str
    entities: list[Any] | None
    overflow_text: str = ""
    overflow_entities: list[Any] | None = None
    web_preview: bool = False


def mentioned_users(message: Any) -> list[int]:
    """The users a message mentions by id (``MessageEntityMentionName``)."""
    entities = getattr(message, "entities", None) or []
    return [int(e.user_id) for e in entities if isinstance(e, types.MessageEntityMentionName)]


def text_entities(message: Any, mentions: Mapping[int, Any] | None = None) -> list[Any] | None:
    """Entities as they may be sent back. A mention by id is sent in its input form, with the user's
    access hash (``mentions``: user id → InputUser); a user not in ``mentions`` stays plain text."""
    entities = getattr(message, "entities", None)
    if not entities:
        return None
    result = []
    for entity in entities:
        if isinstance(entity, types.MessageEntityMentionName):
            user = (mentions or {}).get(int(entity.user_id))
            if user is not None:
                result.append(types.InputMessageEntityMentionName(entity.offset, entity.length, user))
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
            options = [a.option for a in poll.answers]
            correct = [options.index(r.option) for r in results.results if r.correct and r.option in options]
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
            correct_answers=correct or None,  # layer 229: answer indices
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


def outgoing(
    message: Any,
    media: Any | None,
    *,
    caption_limit: int = CAPTION_LIMIT,
    mentions: Mapping[int, Any] | None = None,
    shown: tuple[str, list[Any] | None] | None = None,
) -> Outgoing:
    """Pair the message's text (``shown``: the route's transforms made it already) with ``media``; a caption
    over the limit moves to a follow-up message."""
    text, entities = shown if shown is not None else (message.message or "", text_entities(message, mentions))
    web_preview = isinstance(getattr(message, "media", None), types.MessageMediaWebPage)
    out = Outgoing(media, text, entities, web_preview=web_preview)
    return caption_apart(out) if media is not None and utf16_length(text) > caption_limit else out


def caption_apart(out: Outgoing) -> Outgoing:
    """The media without its caption; the caption follows as a reply (``Outgoing.overflow_text``)."""
    if out.media is None or not out.text:
        return out
    return dataclasses.replace(out, text="", entities=None, overflow_text=out.text, overflow_entities=out.entities)
