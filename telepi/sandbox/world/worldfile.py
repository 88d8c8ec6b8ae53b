"""World files: a JSON description of a sandbox's accounts, chats and history, and generators for big ones.

Format (every key optional unless marked *)::

    {
      "accounts": [                       # people who can log in
        {"name"*: "alice", "phone"*: "+15550000001", "code"*: "12345",
         "password": "hunter2",           # 2FA (SRP) password; omit for none
         "premium": false, "first_name": "Alice", "last_name": "", "username": "alice",
         "dc": 2}                         # home data centre (1-5): where it logs in and uploads
      ],
      "users": [                          # people who exist (senders, members) but cannot log in
        {"name"*: "bob", "first_name": "Bob", "username": "bob"}
      ],
      "chats": [
        {"name"*: "source",               # how tests, `telepi sandbox dump --chat` and .env keys refer to it
         "kind"*: "channel" | "supergroup" | "group",
         "title": "Source", "username": "source_chan", "about": "",
         "forum": false,                  # supergroups only; General is topic 1
         "noforwards": false,             # protected content: no forwards, no re-send by reference
         "owner"*: "alice",               # creator (all rights)
         "members": ["bob"],              # plain members
         "admins": {"carol": ["post_messages", "manage_topics"]},   # ChatAdminRights flag names
         "topics": [{"title"*: "News", "ref": "news", "icon_color": 7322096, "icon_emoji_id": null,
                     "by": "alice", "closed": false, "hidden": false}],
         "messages": [<message>, ...],     # oldest first
         "generate": {"count"*: 1000, "seed": 1, "mix": {"text": 40, "photo": 8, ...}, "max_size": 65536}
        }
      ],
      "settings": {"file_reference_max_age": 86400}
    }

    <message> = {
      "ref": "m1",                        # label for reply_to / pins
      "from": "bob",                      # default: the owner (broadcast channels post as the channel)
      "text": "hello", "entities": [{"type": "bold", "offset": 0, "length": 5},
                                    {"type": "text_url", "offset": 0, "length": 5, "url": "https://x.y"},
                                    {"type": "mention_name", "offset": 0, "length": 5, "user": "bob"}],
      "date": 1700000000,                 # unix seconds; default: one minute apart, ending now
      "reply_to": "m1" | 7,               # a ref, or a message id (basic groups: in the owner's box)
                | {"chat": "other", "id": 3}, # a reply into another chat (reply_to_peer_id)
      "topic": "news" | "News" | 5,       # a topic ref, title or id (forums); a reply inherits its topic
      "album": "a1",                      # messages with one album label share a grouped_id (keep them
                                          # consecutive, 2-10 items, as Telegram does)
      "media": <media>,
      "service": {"type": "pin", "reply_to": "m1"} | {"type": "join", "user": "bob"}
                 | {"type": "title", "title": "New"} | {"type": "custom", "text": "..."},
      "fwd": {"from": "carol" | "chat name", "date": 1690000000},   # shown as forwarded
      "edit_date": 1700000100, "noforwards": false, "pinned": false
    }

    <media> = {"kind": "photo", "size": 20000, "seed": 7, "w": 1280, "h": 720, "spoiler": false,
               "dc": 4}                   # the DC serving its bytes; default: spread over DCs 1-5 by seed
            | {"kind": "video", "size", "seed", "duration": 12.5, "w": 1280, "h": 720,
               "supports_streaming": true, "filename": "clip.mp4", "mime": "video/mp4",
               "thumb": {"size": 3000, "w": 320, "h": 180}}
            | {"kind": "round", ...video keys}  | {"kind": "gif", ...video keys}
            | {"kind": "audio", "size", "duration": 180, "title": "Song", "performer": "Band",
               "filename": "song.mp3"}
            | {"kind": "voice", "size", "duration": 4}
            | {"kind": "sticker", "size", "alt": "😀", "w": 512, "h": 512}
            | {"kind": "document", "size", "filename": "report.pdf", "mime": "application/pdf", "thumb": {...}}
    (documents also take "cdn": true: their DC redirects downloads to the CDN DC, core.telegram.org/cdn)
            | {"kind": "poll", "question": "?", "answers": ["a", "b"], "quiz": false, "correct": [0],
               "multiple_choice": false, "closed": false,
               "solution": "why", "votes": {"bob": [0]}}   # a quiz shows correct/solution to voters only
            | {"kind": "geo", "lat": 52.5, "long": 13.4}
            | {"kind": "venue", "lat", "long", "title", "address", "provider", "venue_id", "venue_type"}
            | {"kind": "contact", "phone", "first_name", "last_name", "vcard"}
            | {"kind": "dice", "emoticon": "🎲", "value": 3}
            | {"kind": "webpage", "url": "https://example.com", "title", "description", "site_name"}
            | {"kind": "story" | "giveaway" | "giveaway_results" | "paid_media" | "game" | "invoice"
                       | "todo" | "unsupported",     # can only be forwarded, never sent as input
               "peer": "chat name", "id", "quantity", "stars", "title", "items": ["..."], ...}

Sizes default to 20000 bytes (photos) and 50000 (documents); ``thumb`` is ``true``, ``false`` or a
``{size, w, h}`` dict and defaults to true for video, round and gif. Document content is generated
from ``(seed, size)`` (``files.generated_bytes``): nothing is stored, and a test can recompute its
SHA-256 with ``files.generated_sha256(seed, size)``. Thumbnails are ``photos.jpeg_bytes(seed, size,
w, h)``: a JPEG header carrying their size, then generated bytes, so a client that downloads and
uploads one again keeps its dimensions (the sandbox reads them from the header, as Telegram decodes
the image). A photo is stored as Telegram serves one (``photos.store``): its sizes up to the box that
holds ``w``×``h`` (larger than 2560 is scaled down), the largest ``size`` bytes. ``seed`` defaults to
one derived from the chat and the message's position.

Ids come out as on Telegram: in a channel or supergroup, message 1 is the "created" service message,
then each topic takes the next id (a topic's id is its "topic created" message), then the messages in
order. Basic groups number messages per account. ``generate_history(chat_spec, n, seed, mix)``
returns ``n`` such messages (every media kind, albums, replies, topics, pins) for a chat spec.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from telepi.sandbox.dcs.centres import DC_IDS, HOME_DC, spread
from telepi.sandbox.world.files import FileStore
from telepi.sandbox.world.peers import is_channel
from telepi.sandbox.world.photos import jpeg_bytes, store
from telepi.sandbox.world.records import GENERAL_TOPIC, NewMessage
from telepi.sandbox.world.world import World

DEFAULT_MIX: dict[str, int] = {
    "text": 40,
    "reply": 10,
    "photo": 8,
    "video": 5,
    "document": 5,
    "album": 6,
    "audio": 3,
    "voice": 3,
    "round": 2,
    "gif": 2,
    "sticker": 2,
    "poll": 2,
    "webpage": 2,
    "geo": 1,
    "venue": 1,
    "contact": 1,
    "dice": 1,
    "service": 1,
}
MESSAGE_STEP = 60  # seconds between default message dates

_MIMES = {
    "photo": "image/jpeg",
    "video": "video/mp4",
    "round": "video/mp4",
    "gif": "video/mp4",
    "audio": "audio/mpeg",
    "voice": "audio/ogg",
    "sticker": "image/webp",
    "document": "application/octet-stream",
}
_EXTENSIONS = {"video": "mp4", "round": "mp4", "gif": "mp4", "audio": "mp3", "voice": "ogg", "sticker": "webp"}


# Media a user account can only forward (see rpc/render.py, unsendable_media).
UNSENDABLE_KINDS = frozenset(
    {"story", "giveaway", "giveaway_results", "paid_media", "game", "invoice", "todo", "unsupported"}
)


class WorldFileError(ValueError):
    """A world file that cannot be loaded; the message names the offending key."""


def read_spec(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A world spec from a dict, a JSON string or a path to a JSON file."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        return dict(json.loads(Path(source).read_text()))
    return dict(json.loads(source))


# ---- media -------------------------------------------------------------------------------------


def _dc(value: Any) -> int:
    if value not in DC_IDS:
        raise WorldFileError(f"dc must be one of {', '.join(map(str, DC_IDS))}, not {value!r}")
    return int(value)


def build_media(
    world: World, files: FileStore, spec: Mapping[str, Any], *, default_seed: str = "media"
) -> dict[str, Any]:
    """Create the file-backed objects a media spec needs; returns the world's media descriptor."""
    kind = spec.get("kind")
    seed = str(spec.get("seed", default_seed))
    dc = _dc(spec.get("dc")) if spec.get("dc") is not None else spread(seed)
    if kind == "photo":
        size = int(spec.get("size", 20_000))
        w, h = int(spec.get("w", 1280)), int(spec.get("h", 720))
        # Stored as Telegram serves a photo: its sizes, the largest ``size`` bytes (see photos.py).
        photo = world.add_photo(sizes=store(files, seed=seed, w=w, h=h, largest=size), dc=dc)
        return {"kind": "photo", "photo_id": photo.id, "spoiler": bool(spec.get("spoiler"))}
    if kind in _MIMES:
        size = int(spec.get("size", 50_000))
        file_id = files.add_generated(seed, size)
        attributes = _attributes(str(kind), spec, seed)
        thumbs: list[dict[str, Any]] = []
        thumb = spec.get("thumb", kind in ("video", "round", "gif"))
        if thumb:
            t = thumb if isinstance(thumb, Mapping) else {}
            t_size, t_w, t_h = int(t.get("size", 2_000)), int(t.get("w", 320)), int(t.get("h", 180))
            thumb_id = files.add_bytes(jpeg_bytes(seed + ":thumb", t_size, t_w, t_h))
            thumbs.append({"type": "m", "w": t_w, "h": t_h, "file_id": thumb_id, "size": t_size})
        doc = world.add_document(
            file_id=file_id,
            mime=str(spec.get("mime", _MIMES[str(kind)])),
            size=size,
            attributes=attributes,
            thumbs=thumbs,
            dc=dc,
            cdn=bool(spec.get("cdn")),
        )
        return {"kind": kind, "document_id": doc.id, "spoiler": bool(spec.get("spoiler"))}
    if kind == "poll":
        answers = [str(a) for a in spec.get("answers", ["Yes", "No"])]
        if len(answers) < 2:
            raise WorldFileError("a poll needs at least two answers")
        return {
            "kind": "poll",
            "poll_id": world.random_long(),
            "question": str(spec.get("question", "?")),
            "answers": answers,
            "closed": bool(spec.get("closed")),
            "quiz": bool(spec.get("quiz")),
            "multiple_choice": bool(spec.get("multiple_choice")),
            "public_voters": bool(spec.get("public_voters")),
            "correct": list(spec.get("correct", [])),
            "solution": str(spec.get("solution", "")),
        }
    if kind in UNSENDABLE_KINDS:
        keys = ("id", "quantity", "launch_msg_id", "winners_count", "stars", "short_name", "title", "description")
        return {"kind": kind, **{k: spec[k] for k in (*keys, "currency", "total_amount", "items") if k in spec}}
    if kind == "geo":
        return {"kind": "geo", "lat": float(spec.get("lat", 0.0)), "long": float(spec.get("long", 0.0))}
    if kind == "venue":
        venue_keys = ("title", "address", "provider", "venue_id", "venue_type")
        return {
            "kind": "venue",
            "lat": float(spec.get("lat", 0.0)),
            "long": float(spec.get("long", 0.0)),
            **{k: str(spec.get(k, "")) for k in venue_keys},
        }
    if kind == "contact":
        contact_keys = ("phone", "first_name", "last_name", "vcard")
        return {
            "kind": "contact",
            "user_id": int(spec.get("user_id", 0)),
            **{k: str(spec.get(k, "")) for k in contact_keys},
        }
    if kind == "dice":
        return {"kind": "dice", "emoticon": str(spec.get("emoticon", "🎲")), "value": int(spec.get("value", 1))}
    if kind == "webpage":
        return {
            "kind": "webpage",
            "url": str(spec.get("url", "https://example.com")),
            "title": spec.get("title"),
            "description": spec.get("description"),
            "site_name": spec.get("site_name"),
            "webpage_id": world.random_long(),
        }
    raise WorldFileError(f"unknown media kind {kind!r}")


def _attributes(kind: str, spec: Mapping[str, Any], seed: str) -> list[dict[str, Any]]:
    filename = spec.get("filename") or f"{kind}-{seed}.{_EXTENSIONS.get(kind, 'bin')}"
    attrs: list[dict[str, Any]] = []
    if kind in ("video", "round", "gif"):
        attrs.append(
            {
                "type": "video",
                "duration": float(spec.get("duration", 10.0)),
                "w": int(spec.get("w", 640 if kind != "round" else 384)),
                "h": int(spec.get("h", 360 if kind != "round" else 384)),
                "supports_streaming": bool(spec.get("supports_streaming", kind == "video")),
                "round_message": kind == "round",
            }
        )
        if kind == "gif":
            attrs.append({"type": "animated"})
    elif kind in ("audio", "voice"):
        audio: dict[str, Any] = {"type": "audio", "duration": int(spec.get("duration", 30)), "voice": kind == "voice"}
        for key in ("title", "performer"):
            if spec.get(key):
                audio[key] = str(spec[key])
        attrs.append(audio)
    elif kind == "sticker":
        attrs.append({"type": "image_size", "w": int(spec.get("w", 512)), "h": int(spec.get("h", 512))})
        attrs.append({"type": "sticker", "alt": str(spec.get("alt", "🙂"))})
    if kind not in ("voice", "round"):
        attrs.append({"type": "filename", "file_name": str(filename)})
    return attrs


# ---- loading -----------------------------------------------------------------------------------


class _Loader:
    def __init__(self, world: World, files: FileStore) -> None:
        self.world = world
        self.files = files
        self.people: dict[str, int] = {}

    def person(self, name: Any, where: str) -> int:
        if name not in self.people:
            raise WorldFileError(f"{where}: unknown account or user {name!r}")
        return self.people[name]

    def load(self, spec: Mapping[str, Any]) -> None:
        for key in spec:
            if key not in ("accounts", "users", "chats", "settings"):
                raise WorldFileError(f"unknown top-level key {key!r}")
        for acc in spec.get("accounts", []):
            for key in ("name", "phone", "code"):
                if not acc.get(key):
                    raise WorldFileError(f"accounts: every account needs {key!r}")
            user = self.world.create_user(
                str(acc["name"]),
                first_name=acc.get("first_name"),
                last_name=str(acc.get("last_name", "")),
                username=acc.get("username"),
                phone=str(acc["phone"]),
                code=str(acc["code"]),
                password=acc.get("password"),
                premium=bool(acc.get("premium")),
                dc=_dc(acc.get("dc", HOME_DC)),
            )
            self.people[user.name] = user.id
        for usr in spec.get("users", []):
            if not usr.get("name"):
                raise WorldFileError("users: every user needs 'name'")
            user = self.world.create_user(
                str(usr["name"]),
                first_name=usr.get("first_name"),
                last_name=str(usr.get("last_name", "")),
                username=usr.get("username"),
            )
            self.people[user.name] = user.id
        chats = list(spec.get("chats", []))
        chat_ids: dict[str, int] = {}
        for chat_spec in chats:
            chat_ids[str(chat_spec.get("name"))] = self.chat(chat_spec)
        for chat_spec in chats:
            self.history(chat_spec, chat_ids)
        settings = spec.get("settings", {})
        if "file_reference_max_age" in settings:
            age = float(settings["file_reference_max_age"])
            self.world.set_setting("file_reference_max_age", str(age))
            self.world.file_reference_max_age = age

    def chat(self, spec: Mapping[str, Any]) -> int:
        name = spec.get("name")
        if not name:
            raise WorldFileError("chats: every chat needs 'name'")
        where = f"chat {name!r}"
        kind = spec.get("kind")
        if kind not in ("channel", "supergroup", "group"):
            raise WorldFileError(f"{where}: 'kind' must be channel, supergroup or group")
        owner = self.person(spec.get("owner"), where)
        count = (
            len(spec.get("messages", [])) + int(spec.get("generate", {}).get("count", 0)) + len(spec.get("topics", []))
        )
        date = self.world.now() - (count + 2) * MESSAGE_STEP
        try:
            chat = self.world.create_chat(
                str(name),
                str(kind),
                title=str(spec.get("title", name)),
                creator_id=owner,
                username=spec.get("username"),
                about=str(spec.get("about", "")),
                forum=bool(spec.get("forum")),
                noforwards=bool(spec.get("noforwards")),
                date=date,
            )
        except ValueError as exc:
            raise WorldFileError(f"{where}: {exc}") from None
        for member in spec.get("members", []):
            self.world.add_member(chat.id, self.person(member, where), date=date)
        for admin, rights in dict(spec.get("admins", {})).items():
            try:
                self.world.add_member(chat.id, self.person(admin, where), role="admin", rights=rights, date=date)
            except ValueError as exc:
                raise WorldFileError(f"{where}: {exc}") from None
        return chat.id

    def history(self, spec: Mapping[str, Any], chat_ids: Mapping[str, int]) -> None:
        name = str(spec["name"])
        where = f"chat {name!r}"
        chat = self.world.chat(chat_ids[name])
        owner = chat.creator_id
        messages = list(spec.get("messages", []))
        if spec.get("generate"):
            gen = dict(spec["generate"])
            messages += generate_history(
                spec,
                int(gen.get("count", 0)),
                seed=gen.get("seed", 1),
                mix=gen.get("mix"),
                max_size=int(gen.get("max_size", 64 * 1024)),
            )
        topics = list(spec.get("topics", []))
        if topics and not chat.forum:
            raise WorldFileError(f"{where}: topics need 'forum': true")
        date = self.world.now() - (len(messages) + len(topics) + 1) * MESSAGE_STEP
        topic_ids: dict[str, int] = {}
        for topic_spec in topics:
            if not topic_spec.get("title"):
                raise WorldFileError(f"{where}: every topic needs 'title'")
            by = self.person(topic_spec["by"], where) if topic_spec.get("by") else owner
            created, _ = self.world.create_topic(
                chat.id,
                str(topic_spec["title"]),
                creator_id=by,
                icon_color=int(topic_spec.get("icon_color", 0x6FB9F0)),
                icon_emoji_id=topic_spec.get("icon_emoji_id"),
                date=date,
            )
            date += MESSAGE_STEP
            if topic_spec.get("closed") or topic_spec.get("hidden"):
                self.world.set_topic_state(
                    chat.id, created.id, closed=bool(topic_spec.get("closed")), hidden=bool(topic_spec.get("hidden"))
                )
            topic_ids[str(topic_spec.get("ref", topic_spec["title"]))] = created.id
            topic_ids.setdefault(str(topic_spec["title"]), created.id)
        refs: dict[str, int] = {}
        albums: dict[str, int] = {}
        box = chat.id if is_channel(chat.id) else owner
        for index, msg in enumerate(messages):
            at = f"{where} message {index}"
            sender = self.person(msg["from"], at) if msg.get("from") else owner
            if self.world.member(chat.id, sender) is None:
                raise WorldFileError(f"{at}: {msg.get('from')!r} is not a member of the chat")
            topic = self._topic(msg.get("topic"), topic_ids, at)
            reply_to = None if isinstance(msg.get("reply_to"), Mapping) else self._ref(msg.get("reply_to"), refs, at)
            if topic is None and reply_to is not None and chat.forum:
                replied = self.world.message(box, reply_to)
                topic = replied.topic if replied is not None else None
            msg_date = int(msg.get("date", date))
            date = max(date, msg_date) + MESSAGE_STEP
            grouped_id = None
            if msg.get("album") is not None:
                grouped_id = albums.setdefault(str(msg["album"]), self.world.random_long())
            media = None
            if msg.get("media") is not None:
                media = build_media(self.world, self.files, msg["media"], default_seed=f"{name}:{index}")
                media = self._media_people(media, msg["media"], chat_ids, at)
            elsewhere = msg.get("reply_to") if isinstance(msg.get("reply_to"), Mapping) else None
            if elsewhere is not None:
                reply_to = None
            action = self._service(msg.get("service"), refs, at) if msg.get("service") else None
            if action is not None and action.get("type") == "pin":
                reply_to = action.pop("reply_to")
                if reply_to is not None:
                    self.world.set_pinned(box, reply_to, True)
            fwd = None
            if msg.get("fwd"):
                fwd = self._fwd(msg["fwd"], chat_ids, msg_date, at)
            new = NewMessage(
                text=str(msg.get("text", "")),
                entities=[self._entity(e, at) for e in msg.get("entities", [])],
                reply_to=reply_to,
                topic=topic,
                grouped_id=grouped_id,
                media=media,
                fwd=fwd,
                action=action,
                noforwards=bool(msg.get("noforwards")),
                date=msg_date,
            )
            posted = self.world.post(sender, chat.id, new, reply_box=box)  # refs are ids in the owner's box
            own = posted.in_box(box).message
            if elsewhere is not None:
                other = chat_ids.get(str(elsewhere.get("chat")))
                if other is None or not isinstance(elsewhere.get("id"), int):
                    raise WorldFileError(f"{at}: reply_to into another chat needs 'chat' (a chat name) and 'id'")
                self.world.set_reply_elsewhere(box, own.id, other, int(elsewhere["id"]))
            if msg.get("ref") is not None:
                refs[str(msg["ref"])] = own.id
            if msg.get("edit_date"):
                self.world.set_edit_date(box, own.id, int(msg["edit_date"]))
            if msg.get("pinned"):
                self.world.set_pinned(box, own.id, True)

    def _entity(self, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        """An entity; ``mention_name`` names its user by ``user`` (a person) or ``user_id``."""
        entity = dict(spec)
        if entity.get("type") == "mention_name" and "user" in entity:
            entity["user_id"] = self.person(entity.pop("user"), where)
        return entity

    def _media_people(
        self, media: dict[str, Any], spec: Mapping[str, Any], chat_ids: Mapping[str, int], where: str
    ) -> dict[str, Any]:
        """Names in a media spec → ids: a poll's ``votes`` ({person: [answer indices]}), a story's or
        giveaway's ``peer`` (a chat name)."""
        if media["kind"] == "poll" and spec.get("votes"):
            media["votes"] = {str(self.person(p, where)): [int(i) for i in v] for p, v in dict(spec["votes"]).items()}
        if "peer" in spec:
            if str(spec["peer"]) not in chat_ids:
                raise WorldFileError(f"{where}: unknown chat {spec['peer']!r} in media 'peer'")
            media["peer"] = chat_ids[str(spec["peer"])]
        return media

    def _topic(self, value: Any, topic_ids: Mapping[str, int], where: str) -> int | None:
        if value is None or value == GENERAL_TOPIC:
            return None
        if isinstance(value, int):
            if value not in topic_ids.values():
                raise WorldFileError(f"{where}: no topic with id {value}")
            return value
        if str(value) not in topic_ids:
            raise WorldFileError(f"{where}: unknown topic {value!r}")
        return topic_ids[str(value)]

    def _ref(self, value: Any, refs: Mapping[str, int], where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, int):
            return value
        if str(value) not in refs:
            raise WorldFileError(f"{where}: reply_to names unknown ref {value!r} (refs must come earlier)")
        return refs[str(value)]

    def _service(self, spec: Mapping[str, Any], refs: Mapping[str, int], where: str) -> dict[str, Any]:
        kind = spec.get("type")
        if kind == "pin":
            return {"type": "pin", "reply_to": self._ref(spec.get("reply_to"), refs, where)}
        if kind == "join":
            return {"type": "chat_add_user", "users": [self.person(spec.get("user"), where)]}
        if kind == "title":
            return {"type": "edit_title", "title": str(spec.get("title", ""))}
        if kind == "custom":
            return {"type": "custom", "text": str(spec.get("text", ""))}
        raise WorldFileError(f"{where}: unknown service type {kind!r}")

    def _fwd(self, spec: Mapping[str, Any], chat_ids: Mapping[str, int], date: int, where: str) -> dict[str, Any]:
        origin = spec.get("from")
        fwd: dict[str, Any] = {"date": int(spec.get("date", date - 3600))}
        if origin in self.people:
            fwd["from_id"] = self.people[str(origin)]
        elif origin in chat_ids:
            fwd["from_id"] = chat_ids[str(origin)]
        elif origin:
            fwd["from_name"] = str(origin)
        else:
            raise WorldFileError(f"{where}: 'fwd' needs 'from'")
        return fwd


def load_world(source: Mapping[str, Any] | str | Path, world: World, files: FileStore) -> None:
    """Load a world file into an empty world, in one transaction."""
    spec = read_spec(source)
    if not world.is_empty():
        raise WorldFileError("the world already has content; load a world file into a fresh state directory")
    with world.batch():
        _Loader(world, files).load(spec)


# ---- generators --------------------------------------------------------------------------------

_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "привет",
    "世界",
    "🙂",
    "café",
    "naïve",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _entities(rng: random.Random, text: str) -> list[dict[str, Any]]:
    """A few entities on word boundaries (offsets in UTF-16 units, as Telegram counts them)."""
    out: list[dict[str, Any]] = []
    pos = 0
    for word in text.split(" "):
        length = len(word.encode("utf-16-le")) // 2
        roll = rng.random()
        if roll < 0.08:
            out.append({"type": "bold", "offset": pos, "length": length})
        elif roll < 0.12:
            out.append({"type": "italic", "offset": pos, "length": length})
        elif roll < 0.14:
            out.append({"type": "text_url", "offset": pos, "length": length, "url": f"https://example.com/{word}"})
        elif roll < 0.16:
            out.append({"type": "code", "offset": pos, "length": length})
        pos += length + 1
    return out


def generate_history(
    chat: Mapping[str, Any],
    n: int,
    seed: int | str = 1,
    mix: Mapping[str, int] | None = None,
    *,
    max_size: int = 64 * 1024,
    start_index: int = 0,
) -> list[dict[str, Any]]:
    """``n`` world-file messages for ``chat`` (a chat spec) mixing every content kind.

    Albums (2-10 photos/videos, caption on the first), replies to earlier messages (in the same
    topic), forum topics (when the chat lists any), pins, entities. Deterministic for a seed;
    ``max_size`` bounds file sizes (files are generated, so size costs no disk).
    """
    rng = random.Random(f"{seed}:{chat.get('name')}")
    weights = dict(DEFAULT_MIX if mix is None else mix)
    kinds = [k for k, w in weights.items() if w > 0]
    if not kinds:
        raise WorldFileError("generate: 'mix' has no positive weight")
    cum = [weights[k] for k in kinds]
    senders: list[str | None] = [None]
    if chat.get("kind") != "channel":
        senders += list(chat.get("members", [])) + list(dict(chat.get("admins", {})))
    topics: list[str | None] = [None]
    if chat.get("forum"):
        topics += [str(t.get("ref", t.get("title"))) for t in chat.get("topics", [])]
    out: list[dict[str, Any]] = []
    by_topic: dict[str | None, list[str]] = {}
    prefix = f"g{seed}-"

    def new(index: int, topic: str | None) -> dict[str, Any]:
        msg: dict[str, Any] = {"ref": f"{prefix}{index}"}
        sender = rng.choice(senders)
        if sender is not None:
            msg["from"] = sender
        if topic is not None:
            msg["topic"] = topic
        return msg

    def media(kind: str, index: int) -> dict[str, Any]:
        size = rng.randint(1024, max(1024, max_size))
        spec: dict[str, Any] = {"kind": kind, "size": size, "seed": f"{chat.get('name')}:{seed}:{index}"}
        if kind in ("video", "round", "gif"):
            spec["duration"] = round(rng.uniform(1, 120), 1)
        if kind in ("audio", "voice"):
            spec["duration"] = rng.randint(1, 300)
        if kind == "audio":
            spec["title"], spec["performer"] = _text(rng, 2), _text(rng, 1)
        if kind == "photo":
            spec["w"], spec["h"] = rng.choice([(1280, 720), (800, 800), (720, 1280), (320, 240)])
            spec["spoiler"] = rng.random() < 0.05
        if kind == "document":
            spec["filename"] = f"file-{index}.{rng.choice(['pdf', 'zip', 'txt', 'bin'])}"
            spec["mime"] = "application/octet-stream"
        return spec

    index = start_index
    while len(out) < n:
        kind = rng.choices(kinds, cum)[0]
        topic = rng.choice(topics)
        earlier = by_topic.get(topic, [])
        msg = new(index, topic)
        if kind == "album":
            count = min(rng.randint(2, 10), n - len(out))
            if count < 2:
                kind = "text"
            else:
                album = f"{prefix}album{index}"
                for item in range(count):
                    part = new(index, topic) if item else msg
                    part["album"] = album
                    part["media"] = media(rng.choice(["photo", "photo", "video"]), index)
                    if item == 0:
                        part["text"] = _text(rng, rng.randint(1, 8))
                    out.append(part)
                    by_topic.setdefault(topic, []).append(part["ref"])
                    index += 1
                continue
        if kind in ("text", "reply") or (kind == "service" and not earlier):
            msg["text"] = _text(rng, rng.randint(1, 30))
            msg["entities"] = _entities(rng, msg["text"])
            if kind == "reply" and earlier:
                msg["reply_to"] = rng.choice(earlier)
        elif kind == "service":
            msg = {"ref": msg["ref"], "service": {"type": "pin", "reply_to": rng.choice(earlier)}}
            if topic is not None:
                msg["topic"] = topic
        elif kind in _MIMES:
            msg["media"] = media(kind, index)
            if rng.random() < 0.5:
                msg["text"] = _text(rng, rng.randint(1, 12))
        elif kind == "poll":
            msg["media"] = {
                "kind": "poll",
                "question": _text(rng, 4) + "?",
                "answers": [_text(rng, 2) for _ in range(3)],
            }
        elif kind == "geo":
            msg["media"] = {
                "kind": "geo",
                "lat": round(rng.uniform(-80, 80), 5),
                "long": round(rng.uniform(-170, 170), 5),
            }
        elif kind == "venue":
            msg["media"] = {
                "kind": "venue",
                "lat": 52.52,
                "long": 13.405,
                "title": _text(rng, 2),
                "address": _text(rng, 3),
            }
        elif kind == "contact":
            msg["media"] = {
                "kind": "contact",
                "phone": f"+1555{rng.randint(1000000, 9999999)}",
                "first_name": _text(rng, 1),
            }
        elif kind == "dice":
            msg["media"] = {"kind": "dice", "emoticon": "🎲", "value": rng.randint(1, 6)}
        elif kind == "webpage":
            url = f"https://example.com/{index}"
            msg["text"] = f"see {url}"
            msg["media"] = {"kind": "webpage", "url": url, "title": _text(rng, 3), "description": _text(rng, 8)}
        else:
            raise WorldFileError(f"generate: unknown kind {kind!r} in 'mix'")
        out.append(msg)
        if "service" not in msg:
            by_topic.setdefault(topic, []).append(msg["ref"])
        index += 1
    return out


def spec_messages(spec: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """All messages a chat spec describes, generated ones included (for tests' expectations)."""
    yield from spec.get("messages", [])
    gen = spec.get("generate")
    if gen:
        yield from generate_history(
            spec,
            int(gen.get("count", 0)),
            seed=gen.get("seed", 1),
            mix=gen.get("mix"),
            max_size=int(gen.get("max_size", 64 * 1024)),
        )
