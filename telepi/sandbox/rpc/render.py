"""World rows → Telethon TL objects, as one viewer sees them; and file references.

The constructors are layer 229's (https://core.telegram.org/schema); file references expire and are
refreshed by fetching their message again (https://core.telegram.org/api/file_reference).

Everything that is per-viewer on Telegram (``out``, ``is_self``, ``creator``, ``left``, a chat's
``admin_rights``) is decided here from the viewer's user id. Dates are passed as ints (unix time):
Telethon's TL serializer accepts them as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from telethon.tl import types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.world.peers import peer_kind, raw_id
from telepi.sandbox.world.records import ADMIN_RIGHTS, GENERAL_TOPIC, Chat, Document, Member, Message, Photo, User
from telepi.sandbox.world.world import World

# ---- file references ---------------------------------------------------------------------------

_REF_VERSION = 1
_REF_BODY = struct.Struct("<BIqB")  # version, issued (unix), source peer (marked, 0 = none), flags
_REF_PROTECTED = 1


@dataclass(frozen=True)
class FileRef:
    issued: int
    source_peer: int  # the chat the object was seen in (0: an upload)
    protected: bool  # the message carrying it had noforwards


def make_file_reference(secret: bytes, obj_id: int, *, issued: int, source_peer: int, protected: bool) -> bytes:
    """An opaque, tamper-evident reference: when and where the client saw the object."""
    body = _REF_BODY.pack(_REF_VERSION, issued, source_peer, _REF_PROTECTED if protected else 0)
    mac = hmac.new(secret, body + struct.pack("<q", obj_id), hashlib.sha256).digest()[:8]
    return body + mac


def check_file_reference(world: World, obj_id: int, reference: bytes) -> FileRef:
    """Decode a reference for ``obj_id``; FILE_REFERENCE_INVALID / _EXPIRED like Telegram."""
    if not reference:
        raise RpcError(400, "FILE_REFERENCE_EMPTY")
    if len(reference) != _REF_BODY.size + 8:
        raise RpcError(400, "FILE_REFERENCE_INVALID")
    body, mac = reference[: _REF_BODY.size], reference[_REF_BODY.size :]
    expected = hmac.new(world.secret, body + struct.pack("<q", obj_id), hashlib.sha256).digest()[:8]
    if not hmac.compare_digest(mac, expected):
        raise RpcError(400, "FILE_REFERENCE_INVALID")
    _version, issued, source, flags = _REF_BODY.unpack(body)
    if world.now() - issued > world.file_reference_max_age:
        raise RpcError(400, "FILE_REFERENCE_EXPIRED")
    return FileRef(issued, source, bool(flags & _REF_PROTECTED))


# ---- entities and document attributes (TL <-> plain dicts) --------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _plain_fields(obj: TLObject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.to_dict().items():
        if key == "_" or value is None or isinstance(value, dict | bytes | list):
            continue
        out[key] = value
    return out


def entity_to_dict(entity: TLObject) -> dict[str, Any]:
    """``MessageEntityTextUrl(offset=0, length=4, url=...)`` → ``{"type": "text_url", ...}``."""
    if isinstance(entity, types.InputMessageEntityMentionName):
        user = entity.user_id
        user_id = getattr(user, "user_id", 0)
        return {"type": "mention_name", "offset": entity.offset, "length": entity.length, "user_id": user_id}
    name = type(entity).__name__.removeprefix("MessageEntity")
    return {"type": _snake(name), **_plain_fields(entity)}


_PARAMS: dict[type[TLObject], frozenset[str]] = {}


def _params(cls: type[TLObject]) -> frozenset[str]:
    params = _PARAMS.get(cls)
    if params is None:
        params = _PARAMS[cls] = frozenset(inspect.signature(cls.__init__).parameters) - {"self"}
    return params


def _construct(cls: type[TLObject], data: dict[str, Any], defaults: dict[str, Any]) -> TLObject:
    params = _params(cls)
    kwargs = {k: v for k, v in data.items() if k in params}
    for key, value in defaults.items():
        if key in params:
            kwargs.setdefault(key, value)
    return cls(**kwargs)


def entity_from_dict(data: dict[str, Any]) -> TLObject:
    cls = getattr(types, "MessageEntity" + _camel(str(data["type"])), None)
    if cls is None:
        raise ValueError(f"unknown entity type {data['type']!r}")
    return _construct(cls, data, {"language": "", "url": "", "user_id": 0, "document_id": 0})


def attribute_to_dict(attr: TLObject) -> dict[str, Any]:
    name = type(attr).__name__.removeprefix("DocumentAttribute")
    return {"type": _snake(name), **_plain_fields(attr)}


def attribute_from_dict(data: dict[str, Any]) -> TLObject:
    cls = getattr(types, "DocumentAttribute" + _camel(str(data["type"])), None)
    if cls is None:
        raise ValueError(f"unknown document attribute {data['type']!r}")
    defaults: dict[str, Any] = {
        "stickerset": types.InputStickerSetEmpty(),
        "alt": "",
        "duration": 0,
        "w": 0,
        "h": 0,
        "file_name": "",
    }
    return _construct(cls, data, defaults)


def document_kind(mime: str, attributes: Iterable[dict[str, Any]], *, force_file: bool = False) -> str:
    """The world's media kind of a document: video, round, gif, sticker, voice, audio or document."""
    by_type = {a["type"]: a for a in attributes}
    if force_file:
        return "document"
    if "sticker" in by_type:
        return "sticker"
    if "animated" in by_type:
        return "gif"
    if "video" in by_type:
        return "round" if by_type["video"].get("round_message") else "video"
    if "audio" in by_type:
        return "voice" if by_type["audio"].get("voice") else "audio"
    return "document"


DOCUMENT_KINDS = frozenset({"video", "round", "gif", "sticker", "voice", "audio", "document"})

# ---- peers -------------------------------------------------------------------------------------


def photo_size(size: dict[str, Any]) -> TLObject:
    """A stored photo size as Telegram sends it: stripped preview, progressive JPEG or plain size."""
    if "stripped" in size:
        return types.PhotoStrippedSize(type=size["type"], bytes=bytes.fromhex(size["stripped"]))
    if "progressive" in size:
        return types.PhotoSizeProgressive(type=size["type"], w=size["w"], h=size["h"], sizes=size["progressive"])
    return types.PhotoSize(type=size["type"], w=size["w"], h=size["h"], size=size["size"])


def peer_tl(peer: int) -> TLObject:
    kind = peer_kind(peer)
    if kind == "user":
        return types.PeerUser(peer)
    if kind == "chat":
        return types.PeerChat(raw_id(peer))
    return types.PeerChannel(raw_id(peer))


def unsendable_media(media: dict[str, Any], *, source_peer: int, now: int) -> TLObject | None:
    """Media a user account can forward but never send as input: stories, giveaways and their
    results, paid media, games, invoices, to-do lists (``MessageMedia*`` of layer 229), or None."""
    kind = media["kind"]
    peer = int(media.get("peer") or source_peer)
    if kind == "story":
        return types.MessageMediaStory(peer=peer_tl(peer) if peer else types.PeerUser(0), id=int(media.get("id", 1)))
    if kind == "giveaway":
        return types.MessageMediaGiveaway(
            channels=[raw_id(peer)] if peer else [], quantity=int(media.get("quantity", 3)), until_date=now + 86400
        )
    if kind == "giveaway_results":
        return types.MessageMediaGiveawayResults(
            channel_id=raw_id(peer) if peer else 0,
            launch_msg_id=int(media.get("launch_msg_id", 1)),
            winners_count=int(media.get("winners_count", 1)),
            unclaimed_count=0,
            winners=[],
            until_date=now,
        )
    if kind == "paid_media":
        return types.MessageMediaPaidMedia(
            stars_amount=int(media.get("stars", 10)), extended_media=[types.MessageExtendedMediaPreview()]
        )
    if kind == "game":
        game = types.Game(
            id=int(media.get("id", 1)),
            access_hash=1,
            short_name=str(media.get("short_name", "game")),
            title=str(media.get("title", "Game")),
            description="",
            photo=types.PhotoEmpty(id=0),
        )
        return types.MessageMediaGame(game=game)
    if kind == "invoice":
        return types.MessageMediaInvoice(
            title=str(media.get("title", "Invoice")),
            description=str(media.get("description", "")),
            currency=str(media.get("currency", "XTR")),
            total_amount=int(media.get("total_amount", 1)),
            start_param="",
        )
    if kind == "todo":
        items = [
            types.TodoItem(id=i + 1, title=types.TextWithEntities(str(text), []))
            for i, text in enumerate(media.get("items", ["one"]))
        ]
        todo = types.TodoList(title=types.TextWithEntities(str(media.get("title", "To do")), []), list=items)
        return types.MessageMediaToDo(todo=todo)
    return None


# A creator holds every right but anonymity.
_FULL_RIGHTS = tuple(sorted(ADMIN_RIGHTS - {"anonymous"}))


class Renderer:
    """Builds TL objects from the world for one viewer at a time."""

    def __init__(self, world: World, *, dc_id: int = 2) -> None:
        self.world = world
        self.dc_id = dc_id

    # -- users and chats

    def user(self, user: User, viewer: int) -> TLObject:
        me = user.id == viewer
        return types.User(
            id=user.id,
            is_self=me,
            access_hash=user.access_hash,
            first_name=user.first_name,
            last_name=user.last_name or None,
            username=user.username,
            phone=user.phone if me else None,
            status=types.UserStatusRecently(),
            premium=user.premium,
        )

    def chat(self, chat: Chat, viewer: int) -> TLObject:
        member = self.world.member(chat.id, viewer)
        creator = member is not None and member.role == "creator"
        rights = self.admin_rights(member) if member is not None and member.role != "member" else None
        count = self.world.member_count(chat.id)
        if not chat.is_channel:
            return types.Chat(
                id=chat.raw_id,
                title=chat.title,
                photo=types.ChatPhotoEmpty(),
                participants_count=count,
                date=chat.date,
                version=1,
                creator=creator,
                left=member is None,
                noforwards=chat.noforwards,
                admin_rights=rights,
            )
        return types.Channel(
            id=chat.raw_id,
            title=chat.title,
            photo=types.ChatPhotoEmpty(),
            date=chat.date,
            creator=creator,
            left=member is None,
            broadcast=chat.broadcast,
            megagroup=chat.megagroup,
            forum=chat.forum,
            noforwards=chat.noforwards,
            access_hash=chat.access_hash,
            username=chat.username,
            admin_rights=rights,
            participants_count=count,
        )

    def admin_rights(self, member: Member) -> TLObject:
        names = _FULL_RIGHTS if member.role == "creator" else sorted(member.rights)
        return types.ChatAdminRights(**{name: True for name in names})

    def entities_of(self, peers: Iterable[int], viewer: int) -> tuple[list[TLObject], list[TLObject]]:
        """(users, chats) for the given marked ids; the viewer is always included."""
        wanted = set(peers)
        wanted.add(viewer)
        users = [self.user(u, viewer) for u in self.world.users(p for p in wanted if p > 0)]
        chats = [self.chat(c, viewer) for c in self.world.chats(p for p in wanted if p < 0)]
        return users, chats

    # -- media

    def _ref(self, obj_id: int, source_peer: int, protected: bool) -> bytes:
        return make_file_reference(
            self.world.secret, obj_id, issued=self.world.now(), source_peer=source_peer, protected=protected
        )

    def document(self, doc: Document, *, source_peer: int = 0, protected: bool = False) -> TLObject:
        thumbs = [types.PhotoSize(type=t["type"], w=t["w"], h=t["h"], size=t["size"]) for t in doc.thumbs]
        return types.Document(
            id=doc.id,
            access_hash=doc.access_hash,
            file_reference=self._ref(doc.id, source_peer, protected),
            date=doc.date,
            mime_type=doc.mime,
            size=doc.size,
            dc_id=doc.dc,
            attributes=[attribute_from_dict(a) for a in doc.attributes],
            thumbs=thumbs or None,
        )

    def photo(self, photo: Photo, *, source_peer: int = 0, protected: bool = False) -> TLObject:
        return types.Photo(
            id=photo.id,
            access_hash=photo.access_hash,
            file_reference=self._ref(photo.id, source_peer, protected),
            date=photo.date,
            sizes=[photo_size(s) for s in photo.sizes],
            dc_id=photo.dc,
        )

    def media(
        self, media: dict[str, Any], *, source_peer: int = 0, protected: bool = False, viewer: int = 0
    ) -> TLObject:
        kind = media["kind"]
        spoiler = bool(media.get("spoiler")) or None
        if kind == "photo":
            photo = self.world.photo(media["photo_id"])
            return types.MessageMediaPhoto(
                photo=self.photo(photo, source_peer=source_peer, protected=protected), spoiler=spoiler
            )
        if kind in DOCUMENT_KINDS:
            doc = self.world.document(media["document_id"])
            return types.MessageMediaDocument(
                document=self.document(doc, source_peer=source_peer, protected=protected),
                spoiler=spoiler,
                video=kind in ("video", "round", "gif") or None,
                round=kind == "round" or None,
                voice=kind == "voice" or None,
            )
        if kind == "poll":
            answers = [
                types.PollAnswer(text=types.TextWithEntities(text, []), option=bytes([i]))
                for i, text in enumerate(media["answers"])
            ]
            poll = types.Poll(
                id=media["poll_id"],
                question=types.TextWithEntities(media["question"], []),
                answers=answers,
                hash=0,
                closed=bool(media.get("closed")) or None,
                public_voters=bool(media.get("public_voters")) or None,
                multiple_choice=bool(media.get("multiple_choice")) or None,
                quiz=bool(media.get("quiz")) or None,
            )
            return types.MessageMediaPoll(poll=poll, results=self.poll_results(media, viewer))
        if kind == "geo":
            return types.MessageMediaGeo(geo=types.GeoPoint(long=media["long"], lat=media["lat"], access_hash=0))
        if kind == "venue":
            return types.MessageMediaVenue(
                geo=types.GeoPoint(long=media["long"], lat=media["lat"], access_hash=0),
                title=media.get("title", ""),
                address=media.get("address", ""),
                provider=media.get("provider", ""),
                venue_id=media.get("venue_id", ""),
                venue_type=media.get("venue_type", ""),
            )
        if kind == "contact":
            return types.MessageMediaContact(
                phone_number=media.get("phone", ""),
                first_name=media.get("first_name", ""),
                last_name=media.get("last_name", ""),
                vcard=media.get("vcard", ""),
                user_id=media.get("user_id", 0),
            )
        if kind == "dice":
            return types.MessageMediaDice(value=media.get("value", 1), emoticon=media.get("emoticon", "🎲"))
        if kind == "webpage":
            url = media["url"]
            page = types.WebPage(
                id=media.get("webpage_id", 1),
                url=url,
                display_url=re.sub(r"^https?://", "", url),
                hash=0,
                type="article",
                site_name=media.get("site_name"),
                title=media.get("title"),
                description=media.get("description"),
            )
            return types.MessageMediaWebPage(webpage=page)
        unsendable = unsendable_media(media, source_peer=source_peer, now=self.world.now())
        return unsendable if unsendable is not None else types.MessageMediaUnsupported()

    def poll_results(self, media: dict[str, Any], viewer: int) -> TLObject:
        """Votes per answer; a quiz's correct answer and solution only for a viewer who voted.

        Telegram sets ``pollAnswerVoters.correct`` only once the viewer has answered the quiz
        (https://core.telegram.org/constructor/pollAnswerVoters: "correct: Whether this is the correct
        answer"; https://core.telegram.org/api/poll: the solution is shown after answering)."""
        votes = {int(user): list(options) for user, options in dict(media.get("votes") or {}).items()}
        voted = votes.get(viewer)
        quiz = bool(media.get("quiz"))
        correct = set(media.get("correct") or [])
        results = [
            types.PollAnswerVoters(
                option=bytes([i]),
                voters=sum(1 for options in votes.values() if i in options),
                chosen=(voted is not None and i in voted) or None,
                correct=(quiz and voted is not None and i in correct) or None,
                recent_voters=[],  # layer 229 sends voters and recent_voters together
            )
            for i in range(len(media["answers"]))
        ]
        solution = (media.get("solution") or None) if quiz and voted is not None else None
        entities: list[TLObject] | None = [] if solution else None
        total = len(votes)
        return types.PollResults(results=results, total_voters=total, solution=solution, solution_entities=entities)

    # -- messages

    def message(self, msg: Message, viewer: int, chat: Chat | None = None) -> TLObject:
        """The TL message as ``viewer`` sees it (``chat`` saves a lookup when known)."""
        if chat is None and msg.peer < 0:
            chat = self.world.find_chat(msg.peer)
        broadcast = chat is not None and chat.broadcast
        out = msg.from_id == viewer and msg.from_id is not None
        from_id = None if broadcast or msg.from_id is None else types.PeerUser(msg.from_id)
        reply_to = self._reply_header(msg, chat)
        common: dict[str, Any] = {
            "id": msg.id,
            "peer_id": peer_tl(msg.peer),
            "date": msg.date,
            "out": out or None,
            "post": broadcast or None,
            "from_id": from_id,
            "reply_to": reply_to,
        }
        if msg.action is not None:
            return types.MessageService(action=self.action(msg.action), **common)
        protected = msg.noforwards or (chat is not None and chat.noforwards)
        media = None
        if msg.media is not None:
            source_peer = msg.peer if msg.peer < 0 else 0
            media = self.media(msg.media, source_peer=source_peer, protected=protected, viewer=viewer)
        return types.Message(
            message=msg.text,
            media=media,
            entities=[entity_from_dict(e) for e in msg.entities] or None,
            fwd_from=self._fwd_header(msg.fwd),
            grouped_id=msg.grouped_id,
            edit_date=msg.edit_date,
            post_author=msg.post_author,
            noforwards=msg.noforwards or None,
            pinned=msg.pinned or None,
            views=1 if broadcast else None,
            forwards=0 if broadcast else None,
            **common,
        )

    def _reply_header(self, msg: Message, chat: Chat | None) -> TLObject | None:
        elsewhere = self.world.reply_peer(msg.box, msg.id) if msg.reply_to else None
        if elsewhere is not None:
            # A reply into another chat names that chat: reply_to_msg_id is an id there (layer 166,
            # https://core.telegram.org/constructor/messageReplyHeader "reply_to_peer_id").
            return types.MessageReplyHeader(reply_to_msg_id=msg.reply_to, reply_to_peer_id=peer_tl(elsewhere))
        forum_topic = chat is not None and chat.forum and msg.topic not in (None, GENERAL_TOPIC)
        if forum_topic and msg.id != msg.topic:
            assert msg.topic is not None
            if msg.reply_to and msg.reply_to != msg.topic:
                return types.MessageReplyHeader(
                    forum_topic=True, reply_to_msg_id=msg.reply_to, reply_to_top_id=msg.topic
                )
            return types.MessageReplyHeader(forum_topic=True, reply_to_msg_id=msg.topic)
        if msg.reply_to:
            return types.MessageReplyHeader(reply_to_msg_id=msg.reply_to)
        return None

    def _fwd_header(self, fwd: dict[str, Any] | None) -> TLObject | None:
        if not fwd:
            return None
        from_id = fwd.get("from_id")
        return types.MessageFwdHeader(
            date=fwd["date"],
            from_id=peer_tl(from_id) if from_id else None,
            from_name=fwd.get("from_name"),
            channel_post=fwd.get("channel_post"),
            post_author=fwd.get("post_author"),
        )

    def action(self, action: dict[str, Any]) -> TLObject:
        kind = action["type"]
        if kind == "chat_create":
            return types.MessageActionChatCreate(title=action["title"], users=list(action.get("users", [])))
        if kind == "channel_create":
            return types.MessageActionChannelCreate(title=action["title"])
        if kind == "topic_create":
            return types.MessageActionTopicCreate(
                title=action["title"], icon_color=action.get("icon_color", 0), icon_emoji_id=action.get("icon_emoji_id")
            )
        if kind == "topic_edit":
            return types.MessageActionTopicEdit(
                title=action.get("title"),
                icon_emoji_id=action.get("icon_emoji_id"),
                closed=action.get("closed"),
                hidden=action.get("hidden"),
            )
        if kind == "pin":
            return types.MessageActionPinMessage()
        if kind == "chat_add_user":
            return types.MessageActionChatAddUser(users=list(action.get("users", [])))
        if kind == "join_by_link":
            return types.MessageActionChatJoinedByLink(inviter_id=action.get("inviter_id", 0))
        if kind == "edit_title":
            return types.MessageActionChatEditTitle(title=action["title"])
        return types.MessageActionCustomAction(message=str(action.get("text", kind)))

    def referenced_peers(self, msg: Message) -> set[int]:
        """Every user/chat a client needs to display ``msg``."""
        peers = {msg.peer}
        if msg.from_id is not None:
            peers.add(msg.from_id)
        if msg.fwd and msg.fwd.get("from_id"):
            peers.add(int(msg.fwd["from_id"]))
        if msg.action:
            peers.update(int(u) for u in msg.action.get("users", []))
        for entity in msg.entities:
            if entity.get("user_id"):
                peers.add(int(entity["user_id"]))
        if msg.media and msg.media.get("kind") == "contact" and msg.media.get("user_id"):
            peers.add(int(msg.media["user_id"]))
        return peers

    def messages(self, msgs: Iterable[Message], viewer: int) -> tuple[list[TLObject], list[TLObject], list[TLObject]]:
        """(messages, users, chats) for a batch of messages seen by ``viewer``."""
        chats: dict[int, Chat | None] = {}
        out: list[TLObject] = []
        peers: set[int] = set()
        for msg in msgs:
            chat = None
            if msg.peer < 0:
                if msg.peer not in chats:
                    chats[msg.peer] = self.world.find_chat(msg.peer)
                chat = chats[msg.peer]
            out.append(self.message(msg, viewer, chat))
            peers |= self.referenced_peers(msg)
        users, chat_objs = self.entities_of(peers, viewer)
        return out, users, chat_objs
