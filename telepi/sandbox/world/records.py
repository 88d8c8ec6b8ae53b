"""The world's records as the RPC layer reads them: users, chats, members, topics, messages, media and
the updates a change makes; frozen dataclasses, no storage, no TL (their TL
counterparts: https://core.telegram.org/schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telepi.sandbox.world.peers import raw_id

GENERAL_TOPIC = 1
# Admin rights a world knows (names of ChatAdminRights flags).
ADMIN_RIGHTS = frozenset(
    {
        "change_info",
        "post_messages",
        "edit_messages",
        "delete_messages",
        "ban_users",
        "invite_users",
        "pin_messages",
        "add_admins",
        "manage_topics",
        "anonymous",
        "manage_call",
        "other",
    }
)


@dataclass(frozen=True)
class User:
    id: int
    access_hash: int
    name: str
    first_name: str
    last_name: str
    username: str | None
    phone: str | None
    code: str | None
    password: str | None
    premium: bool
    dc: int = 2  # home data centre: where the account logs in and its uploads land

    @property
    def is_account(self) -> bool:
        """Whether someone can log in as this user."""
        return self.phone is not None


@dataclass(frozen=True)
class Chat:
    id: int  # marked
    access_hash: int
    name: str
    kind: str  # group | channel | supergroup
    title: str
    username: str | None
    about: str
    forum: bool
    noforwards: bool
    creator_id: int
    date: int
    pts: int

    @property
    def raw_id(self) -> int:
        return raw_id(self.id)

    @property
    def is_channel(self) -> bool:
        """Broadcast channels and supergroups (what Telegram calls ``channel``)."""
        return self.kind != "group"

    @property
    def broadcast(self) -> bool:
        return self.kind == "channel"

    @property
    def megagroup(self) -> bool:
        return self.kind == "supergroup"


@dataclass(frozen=True)
class Member:
    chat_id: int
    user_id: int
    role: str  # creator | admin | member
    rights: frozenset[str]
    date: int

    def can(self, right: str) -> bool:
        return self.role == "creator" or right in self.rights


@dataclass(frozen=True)
class Topic:
    chat_id: int
    id: int
    title: str
    icon_color: int
    icon_emoji_id: int | None
    creator_id: int
    date: int
    closed: bool
    hidden: bool


@dataclass(frozen=True)
class Message:
    box: int
    id: int
    gid: int
    peer: int
    from_id: int | None
    date: int
    text: str = ""
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_to: int | None = None
    topic: int | None = None
    grouped_id: int | None = None
    edit_date: int | None = None
    media: dict[str, Any] | None = None
    fwd: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    post_author: str | None = None
    noforwards: bool = False
    pinned: bool = False

    @property
    def is_service(self) -> bool:
        return self.action is not None


@dataclass(frozen=True)
class Document:
    id: int
    access_hash: int
    file_id: int
    mime: str
    size: int
    date: int
    attributes: list[dict[str, Any]]
    thumbs: list[dict[str, Any]]
    dc: int = 2  # core.telegram.org/api/files: a file is served by the DC it was uploaded to
    cdn: bool = False  # its DC answers upload.fileCdnRedirect (core.telegram.org/cdn)


@dataclass(frozen=True)
class Photo:
    id: int
    access_hash: int
    date: int
    sizes: list[dict[str, Any]]
    dc: int = 2


@dataclass(frozen=True)
class Event:
    box: int
    pts: int
    pts_count: int
    kind: str  # new | edit | delete
    ids: list[int]
    date: int


@dataclass(frozen=True)
class Copy:
    """One box's copy of a new or changed message, with the pts its event took."""

    box: int
    message: Message
    pts: int
    pts_count: int = 1


@dataclass(frozen=True)
class Deletion:
    """The ids removed from one box, with the pts its event took."""

    box: int
    ids: list[int]
    pts: int
    pts_count: int


@dataclass(frozen=True)
class Posted:
    """The result of :meth:`World.post`: one copy per box; ``duplicate`` when random_id matched."""

    copies: list[Copy]
    duplicate: bool = False

    def in_box(self, box: int) -> Copy:
        for copy in self.copies:
            if copy.box == box:
                return copy
        raise KeyError(box)


@dataclass(frozen=True)
class NewMessage:
    """What to post: the box-independent part of a message."""

    text: str = ""
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_to: int | None = None  # a message id in the sender's box
    topic: int | None = None
    grouped_id: int | None = None
    media: dict[str, Any] | None = None
    fwd: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    post_author: str | None = None
    noforwards: bool = False
    date: int | None = None


@dataclass(frozen=True)
class HistoryFilter:
    """Which messages of a box a history/search/replies query sees (before pagination)."""

    peer: int | None = None
    topic: int | None = None  # GENERAL_TOPIC selects messages without a topic
    min_id: int = 0
    max_id: int = 0
    q: str = ""
    from_id: int | None = None
    min_date: int = 0
    max_date: int = 0
    media_kinds: frozenset[str] | None = None  # media descriptors' "kind" values
    has_url: bool = False
    reply_to: int | None = None  # direct replies to this message
    pinned: bool = False


@dataclass(frozen=True)
class Page:
    """Telegram pagination: offset_id / offset_date, add_offset, limit (core.telegram.org/api/offsets)."""

    offset_id: int = 0
    offset_date: int = 0
    add_offset: int = 0
    limit: int = 100
