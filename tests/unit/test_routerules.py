"""What each Telethon message is to a route's filters, and the placeholders its header and footer see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from telethon.tl import types

from telepi.engine.routerules import RouteRules, facts_of, kind_of
from telepi.rules import Transforms


def document(*attributes: Any, size: int = 5000) -> types.MessageMediaDocument:
    return types.MessageMediaDocument(
        document=types.Document(1, 2, b"", datetime.now(UTC), "application/octet-stream", size, 2, list(attributes))
    )


VIDEO = types.DocumentAttributeVideo(1.0, 10, 10)


@pytest.mark.parametrize(
    ("media", "kind"),
    [
        (None, "text"),
        (types.MessageMediaWebPage(types.WebPageEmpty(1)), "text"),
        (types.MessageMediaPhoto(photo=types.PhotoEmpty(1)), "photo"),
        (document(types.DocumentAttributeSticker("😀", types.InputStickerSetEmpty())), "sticker"),
        (document(VIDEO, types.DocumentAttributeAnimated()), "animation"),
        (document(types.DocumentAttributeVideo(1.0, 10, 10, round_message=True)), "round"),
        (document(VIDEO), "video"),
        (document(types.DocumentAttributeAudio(3, voice=True)), "voice"),
        (document(types.DocumentAttributeAudio(3)), "audio"),
        (document(types.DocumentAttributeFilename("a.pdf")), "document"),
        (types.MessageMediaGeo(types.GeoPointEmpty()), "geo"),
        (types.MessageMediaDice(3, "🎲"), "dice"),
        (types.MessageMediaStory(types.PeerUser(1), 5), "other"),
    ],
)
def test_each_kind_as_filter_kinds_names_it(media: Any, kind: str) -> None:
    message = types.Message(id=1, peer_id=types.PeerChannel(1), date=None, message="x", media=media)
    assert kind_of(message) == kind


def test_service_messages_are_a_kind_and_facts_carry_size_and_forwarding() -> None:
    service = types.MessageService(
        id=1, peer_id=types.PeerChannel(1), date=None, action=types.MessageActionPinMessage()
    )
    assert kind_of(service) == "service"
    message = types.Message(
        id=7,
        peer_id=types.PeerChannel(1),
        date=datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
        message="hi",
        media=document(size=1234),
        fwd_from=types.MessageFwdHeader(date=datetime(2024, 1, 1, tzinfo=UTC)),
        post_author="Ann",
    )
    facts = facts_of(message)
    assert (facts.id, facts.kind, facts.size, facts.forwarded) == (7, "document", 1234, True)
    rules = RouteRules(
        transforms=Transforms(header="{author} {date} {topic}", footer="{source_link}"),
        link_base="https://t.me/c/55",
        topic_title=lambda topic: f"T{topic}",
    )
    assert rules.shown(message, None, topic=3) == ("Ann 2024-01-02 03:04 T3\nhi\nhttps://t.me/c/55/7", None)
    assert RouteRules().shown(message, None, topic=None) == ("hi", None)  # no transforms: the source's text
