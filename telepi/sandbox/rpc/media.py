"""Media in and out: ``InputMedia*`` → world media descriptors, and download locations → stored files
(https://core.telegram.org/type/InputMedia, https://core.telegram.org/api/files).

World media descriptors are JSON dicts with a ``kind``: ``photo`` (``photo_id``), the document
kinds ``video``/``round``/``gif``/``sticker``/``voice``/``audio``/``document`` (``document_id``),
``poll``, ``geo``, ``venue``, ``contact``, ``dice``, ``webpage`` and the kinds that can only be forwarded
(``worldfile.UNSENDABLE_KINDS``); see ``world/worldfile.py``.
"""

from __future__ import annotations

import random
from typing import Any

from telethon.tl import types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.cdn import OnCdn
from telepi.sandbox.dcs.centres import upload_owner
from telepi.sandbox.rpc.common import Env, bad
from telepi.sandbox.rpc.dispatch import RpcContext, RpcError
from telepi.sandbox.rpc.render import (
    attribute_to_dict,
    check_file_reference,
    document_kind,
)
from telepi.sandbox.world.photos import downloadable, image_size, reencode

_DICE_FACES = {"🎰": 64, "🏀": 5, "⚽": 5}


class MediaInput:
    """Builds world media descriptors from what a client sends."""

    def __init__(self, env: Env) -> None:
        self.env = env

    def _uploaded(self, user_id: int, input_file: TLObject, dc_id: int) -> int:
        if not isinstance(input_file, types.InputFile | types.InputFileBig):
            raise bad("MEDIA_INVALID")
        return self.env.files.finish_upload(upload_owner(user_id, dc_id), input_file)

    def _dims(self, file_id: int, default: tuple[int, int]) -> tuple[int, int]:
        return image_size(self.env.files.read(file_id, 0, 64 * 1024)) or default

    def build(self, user_id: int, media: TLObject, dc_id: int = 2) -> dict[str, Any]:
        """A descriptor for ``media``; RpcError for what Telegram refuses (expired or protected refs...).
        Uploaded files are the parts saved on ``dc_id`` (the caller's DC), and live there."""
        world = self.env.world
        if isinstance(media, types.InputMediaUploadedPhoto):
            file_id = self._uploaded(user_id, media.file, dc_id)
            photo = world.add_photo(sizes=reencode(self.env.files, file_id), dc=dc_id)
            return {"kind": "photo", "photo_id": photo.id, "spoiler": bool(media.spoiler)}
        if isinstance(media, types.InputMediaUploadedDocument):
            file_id = self._uploaded(user_id, media.file, dc_id)
            thumbs: list[dict[str, Any]] = []
            if media.thumb is not None:
                thumb_id = self._uploaded(user_id, media.thumb, dc_id)
                w, h = self._dims(thumb_id, (90, 90))
                thumbs.append({"type": "m", "w": w, "h": h, "file_id": thumb_id, "size": self.env.files.size(thumb_id)})
            attributes = [attribute_to_dict(a) for a in media.attributes or []]
            doc = world.add_document(
                file_id=file_id,
                mime=media.mime_type or "application/octet-stream",
                size=self.env.files.size(file_id),
                attributes=attributes,
                thumbs=thumbs,
                dc=dc_id,
            )
            kind = document_kind(doc.mime, attributes, force_file=bool(media.force_file))
            return {"kind": kind, "document_id": doc.id, "spoiler": bool(media.spoiler)}
        if isinstance(media, types.InputMediaDocument):
            ref = media.id
            if not isinstance(ref, types.InputDocument):
                raise bad("MEDIA_EMPTY")
            try:
                doc = world.document(ref.id)
            except KeyError:
                raise bad("MEDIA_INVALID") from None
            if doc.access_hash != ref.access_hash:
                raise bad("MEDIA_INVALID")
            self._check_shareable(doc.id, ref.file_reference)
            return {
                "kind": document_kind(doc.mime, doc.attributes),
                "document_id": doc.id,
                "spoiler": bool(media.spoiler),
            }
        if isinstance(media, types.InputMediaPhoto):
            ref = media.id
            if not isinstance(ref, types.InputPhoto):
                raise bad("MEDIA_EMPTY")
            try:
                photo = world.photo(ref.id)
            except KeyError:
                raise bad("MEDIA_INVALID") from None
            if photo.access_hash != ref.access_hash:
                raise bad("MEDIA_INVALID")
            self._check_shareable(photo.id, ref.file_reference)
            return {"kind": "photo", "photo_id": photo.id, "spoiler": bool(media.spoiler)}
        if isinstance(media, types.InputMediaPoll):
            return self._poll(media)
        if isinstance(media, types.InputMediaGeoPoint):
            point = media.geo_point
            if not isinstance(point, types.InputGeoPoint):
                raise bad("MEDIA_INVALID")
            return {"kind": "geo", "lat": point.lat, "long": point.long}
        if isinstance(media, types.InputMediaVenue):
            point = media.geo_point
            return {
                "kind": "venue",
                "lat": getattr(point, "lat", 0.0),
                "long": getattr(point, "long", 0.0),
                "title": media.title,
                "address": media.address,
                "provider": media.provider,
                "venue_id": media.venue_id,
                "venue_type": media.venue_type,
            }
        if isinstance(media, types.InputMediaContact):
            user = world.user_by_phone(media.phone_number) if media.phone_number else None
            return {
                "kind": "contact",
                "phone": media.phone_number,
                "first_name": media.first_name,
                "last_name": media.last_name,
                "vcard": media.vcard,
                "user_id": user.id if user is not None else 0,
            }
        if isinstance(media, types.InputMediaDice):
            faces = _DICE_FACES.get(media.emoticon, 6)
            return {"kind": "dice", "emoticon": media.emoticon, "value": random.randint(1, faces)}
        if isinstance(media, types.InputMediaWebPage):
            return {"kind": "webpage", "url": media.url, "webpage_id": world.random_long()}
        # Everything else is refused: games and invoices are sent by bots only
        # (https://core.telegram.org/api/bots/games, https://core.telegram.org/api/payments); giveaways,
        # their results and paid media have no input form a user account can re-send (messageMediaGiveaway
        # is made by payments.launchPrepaidGiveaway); the sandbox holds no stories or to-do lists to name
        # by InputMediaStory / InputMediaTodo. Such messages can only be forwarded.
        raise bad("MEDIA_INVALID")

    def _poll(self, media: Any) -> dict[str, Any]:
        poll = media.poll

        def text_of(value: Any) -> str:
            return str(value.text) if isinstance(value, types.TextWithEntities) else str(value)

        answers = [text_of(a.text) for a in poll.answers]
        if len(answers) < 2:
            raise bad("POLL_ANSWERS_INVALID")
        correct = [int(i) for i in media.correct_answers or []]
        if poll.quiz:
            # A quiz is created with exactly one correct answer (https://core.telegram.org/api/poll,
            # errors of messages.sendMedia: QUIZ_CORRECT_ANSWERS_EMPTY / _TOO_MUCH / _INVALID).
            if not correct:
                raise bad("QUIZ_CORRECT_ANSWERS_EMPTY")
            if len(correct) > 1:
                raise bad("QUIZ_CORRECT_ANSWERS_TOO_MUCH")
            if not 0 <= correct[0] < len(answers):
                raise bad("QUIZ_CORRECT_ANSWER_INVALID")
        return {
            "kind": "poll",
            "poll_id": self.env.world.random_long(),
            "question": text_of(poll.question),
            "answers": answers,
            "closed": bool(poll.closed),
            "quiz": bool(poll.quiz),
            "multiple_choice": bool(poll.multiple_choice),
            "public_voters": bool(poll.public_voters),
            "correct": correct if poll.quiz else [],
            "solution": str(media.solution or "") if poll.quiz else "",
        }

    def _check_shareable(self, obj_id: int, file_reference: bytes) -> None:
        """Re-sending by reference: the reference must be fresh and not come from a protected chat."""
        ref = check_file_reference(self.env.world, obj_id, file_reference)
        if ref.protected:
            raise bad("CHAT_FORWARDS_RESTRICTED")
        if ref.source_peer:
            chat = self.env.world.find_chat(ref.source_peer)
            if chat is not None and chat.noforwards:
                raise bad("CHAT_FORWARDS_RESTRICTED")


def on_dc(ctx: RpcContext, dc_id: int) -> None:
    """A file is served only by the DC it lives on: elsewhere upload.getFile answers 303 FILE_MIGRATE_X
    (core.telegram.org/api/datacenter), after the location itself was checked."""
    if dc_id != ctx.dc_id:
        raise RpcError(303, f"FILE_MIGRATE_{dc_id}")


class WorldFileLocator:
    """rpc/upload.py's FileLocator: which stored file a download location names."""

    def __init__(self, env: Env) -> None:
        self.env = env

    def locate(self, ctx: RpcContext, location: TLObject) -> int:
        world = self.env.world
        if isinstance(location, types.InputDocumentFileLocation):
            try:
                doc = world.document(location.id)
            except KeyError:
                raise RpcError(400, "LOCATION_INVALID") from None
            if doc.access_hash != location.access_hash:
                raise RpcError(400, "LOCATION_INVALID")
            check_file_reference(world, doc.id, location.file_reference)
            on_dc(ctx, doc.dc)
            if not location.thumb_size:
                if doc.cdn:
                    raise OnCdn(doc.file_id)
                return doc.file_id
            for thumb in doc.thumbs:
                if thumb["type"] == location.thumb_size:
                    return int(thumb["file_id"])
            raise RpcError(400, "LOCATION_INVALID")
        if isinstance(location, types.InputPhotoFileLocation):
            try:
                photo = world.photo(location.id)
            except KeyError:
                raise RpcError(400, "LOCATION_INVALID") from None
            if photo.access_hash != location.access_hash:
                raise RpcError(400, "LOCATION_INVALID")
            check_file_reference(world, photo.id, location.file_reference)
            on_dc(ctx, photo.dc)
            for size in photo.sizes:
                if size["type"] == location.thumb_size and downloadable(size):
                    return int(size["file_id"])
            raise RpcError(400, "LOCATION_INVALID")
        raise RpcError(400, "LOCATION_INVALID")
