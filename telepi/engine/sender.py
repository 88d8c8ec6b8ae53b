"""The final sends, always with the checkpoint's fixed random ids, and the target ids they produced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telethon.tl import functions, types

from telepi.engine.content import Outgoing

_OVERFLOW_SALT = 0x5A5A5A5A5A5A5A5A


@dataclass(frozen=True)
class Placement:
    """Where a copy goes: the target peer, its forum topic (None = no topic / General), the reply."""

    peer: Any
    topic_id: int | None = None
    reply_to_msg_id: int | None = None

    def reply_to(self) -> Any | None:
        if self.reply_to_msg_id is None and self.topic_id is None:
            return None
        return types.InputReplyToMessage(
            reply_to_msg_id=self.reply_to_msg_id or self.topic_id or 0, top_msg_id=self.topic_id
        )


def overflow_random_id(random_id: int) -> int:
    """A second fixed random id for a caption's follow-up message, derived so a resend dedups too."""
    value = random_id ^ _OVERFLOW_SALT
    return value if value else 1


def ids_by_random_id(result: Any) -> dict[int, int]:
    """Map random_id → new message id from an Updates result (UpdateMessageID)."""
    found: dict[int, int] = {}
    for update in getattr(result, "updates", None) or []:
        if isinstance(update, types.UpdateMessageID):
            found[int(update.random_id)] = int(update.id)
    return found


async def send_one(client: Any, placement: Placement, item_random_id: int, out: Outgoing) -> int:
    """Send a single message (text or media) and its caption overflow; returns the main message id."""
    reply_to = placement.reply_to()
    if out.media is None:
        request: Any = functions.messages.SendMessageRequest(
            peer=placement.peer,
            message=out.text,
            entities=out.entities,
            no_webpage=not out.web_preview,
            reply_to=reply_to,
            random_id=item_random_id,
        )
    else:
        request = functions.messages.SendMediaRequest(
            peer=placement.peer,
            media=out.media,
            message=out.text,
            entities=out.entities,
            reply_to=reply_to,
            random_id=item_random_id,
        )
    result = await client(request)
    target_id = _single_id(result, item_random_id)
    await _send_overflow(client, placement, target_id, item_random_id, out)
    return target_id


async def send_album(client: Any, placement: Placement, members: Sequence[tuple[int, Outgoing]]) -> dict[int, int]:
    """One sendMultiMedia for an album; returns random_id → message id for every member."""
    multi = [
        types.InputSingleMedia(media=out.media, message=out.text, entities=out.entities, random_id=random_id)
        for random_id, out in members
    ]
    result = await client(
        functions.messages.SendMultiMediaRequest(peer=placement.peer, multi_media=multi, reply_to=placement.reply_to())
    )
    found = ids_by_random_id(result)
    missing = [random_id for random_id, _ in members if random_id not in found]
    if missing:
        raise RuntimeError(f"album sent but {len(missing)} member ids missing from the result")
    for random_id, out in members:
        await _send_overflow(client, placement, found[random_id], random_id, out)
    return found


async def _send_overflow(client: Any, placement: Placement, target_id: int, random_id: int, out: Outgoing) -> None:
    """A caption too long for its media follows as a reply to it, with its own fixed random id."""
    if not out.overflow_text:
        return
    await client(
        functions.messages.SendMessageRequest(
            peer=placement.peer,
            message=out.overflow_text,
            entities=out.overflow_entities,
            no_webpage=True,
            reply_to=types.InputReplyToMessage(reply_to_msg_id=target_id, top_msg_id=placement.topic_id),
            random_id=overflow_random_id(random_id),
        )
    )


async def forward(
    client: Any, source_peer: Any, placement: Placement, source_ids: Sequence[int], random_ids: Sequence[int]
) -> dict[int, int]:
    """One forwardMessages call (≤ 100 ids) without the author; returns source id → target id.

    With ``placement.reply_to_msg_id`` every forwarded message replies to that target message (layer 229
    takes one ``reply_to`` per call)."""
    result = await client(
        functions.messages.ForwardMessagesRequest(
            from_peer=source_peer,
            id=list(source_ids),
            to_peer=placement.peer,
            random_id=list(random_ids),
            drop_author=True,
            top_msg_id=placement.topic_id,
            reply_to=placement.reply_to() if placement.reply_to_msg_id is not None else None,
        )
    )
    found = ids_by_random_id(result)
    return {source: found[random] for source, random in zip(source_ids, random_ids, strict=True) if random in found}


def _single_id(result: Any, random_id: int) -> int:
    if isinstance(result, types.UpdateShortSentMessage):
        return int(result.id)
    found = ids_by_random_id(result)
    if random_id in found:
        return found[random_id]
    for update in getattr(result, "updates", None) or []:
        message = getattr(update, "message", None)
        if isinstance(message, types.Message):
            return int(message.id)
    raise RuntimeError("message sent but its id is missing from the result")
