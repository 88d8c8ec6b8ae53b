"""The sandbox's Telegram world: accounts, chats, topics, messages and pts, persisted in SQLite.

This module is storage and bookkeeping only (no TL, no permissions): the RPC layer
(``rpc_*.py``) turns rows into TL objects and applies Telegram's rules.

Peers use Telethon's *marked* ids everywhere: a user is its id, a basic group ``-id`` and a
channel (broadcast, supergroup, forum) ``-(10**12 + id)``.

Message ids live in *boxes*, as on Telegram: a channel numbers its own messages (box = the
channel's marked id), while private chats and basic groups are numbered per account (box = the
user id), so a message in a basic group with three members exists as three copies with three ids,
tied together by a shared ``gid``. Every change to a box (new, edit, delete) takes the box's next
``pts`` and is logged in ``events`` so that ``updates.getDifference`` /
``getChannelDifference`` can replay it exactly.

The database is ``world.sqlite`` in WAL mode; every mutation is one short ``BEGIN IMMEDIATE``
transaction, so another process (``telepi sandbox dump``) can read while the server runs.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from telepi.sandbox.private import private_dir, private_file

CHANNEL_OFFSET = 10**12
USER_ID_BASE = 100_000_000
CHAT_ID_BASE = 200_000_000
CHANNEL_ID_BASE = 1_500_000_000
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
CHAT_KINDS = ("group", "channel", "supergroup")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    access_hash INTEGER NOT NULL,
    name TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL DEFAULT '',
    username TEXT UNIQUE COLLATE NOCASE,
    phone TEXT UNIQUE,
    code TEXT,
    password TEXT,
    premium INTEGER NOT NULL DEFAULT 0,
    dc INTEGER NOT NULL DEFAULT 2,   -- the account's home data centre
    pts INTEGER NOT NULL DEFAULT 1,  -- Telegram never uses pts 0
    next_msg_id INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,             -- marked id
    access_hash INTEGER NOT NULL,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    username TEXT UNIQUE COLLATE NOCASE,
    about TEXT NOT NULL DEFAULT '',
    forum INTEGER NOT NULL DEFAULT 0,
    noforwards INTEGER NOT NULL DEFAULT 0,
    creator_id INTEGER NOT NULL,
    date INTEGER NOT NULL,
    pts INTEGER NOT NULL DEFAULT 1,  -- Telegram never uses pts 0
    pts_date INTEGER NOT NULL DEFAULT 0,
    next_msg_id INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS members (
    chat_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    role TEXT NOT NULL,                 -- creator | admin | member
    rights TEXT NOT NULL DEFAULT '',    -- comma-separated ADMIN_RIGHTS
    date INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id);
CREATE TABLE IF NOT EXISTS topics (
    chat_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    title TEXT NOT NULL,
    icon_color INTEGER NOT NULL,
    icon_emoji_id INTEGER,
    creator_id INTEGER NOT NULL,
    date INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    box INTEGER NOT NULL,               -- channel marked id, or the owning user's id
    id INTEGER NOT NULL,
    gid INTEGER NOT NULL,               -- shared by the per-account copies of one message
    peer INTEGER NOT NULL,              -- the dialog, as seen by the box's owner
    from_id INTEGER,                    -- sender (a user id); NULL for broadcast posts
    date INTEGER NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    entities TEXT,                      -- JSON list of entity dicts
    reply_to INTEGER,                   -- replied message id (in this box)
    topic INTEGER,                      -- forum topic id; NULL = General / not a forum
    grouped_id INTEGER,
    edit_date INTEGER,
    media TEXT,                         -- JSON media descriptor
    fwd TEXT,                           -- JSON forward header
    action TEXT,                        -- JSON service action (service messages only)
    post_author TEXT,
    noforwards INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (box, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_peer ON messages (box, peer, id);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (box, topic, id);
CREATE INDEX IF NOT EXISTS messages_by_gid ON messages (gid);
CREATE TABLE IF NOT EXISTS events (
    box INTEGER NOT NULL,
    pts INTEGER NOT NULL,
    pts_count INTEGER NOT NULL,
    kind TEXT NOT NULL,                 -- new | edit | delete
    ids TEXT NOT NULL,                  -- JSON list of message ids in the box
    date INTEGER NOT NULL,
    PRIMARY KEY (box, pts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS random_ids (
    sender INTEGER NOT NULL,
    peer INTEGER NOT NULL,
    random_id INTEGER NOT NULL,
    box INTEGER NOT NULL,
    msg_id INTEGER NOT NULL,
    PRIMARY KEY (sender, peer, random_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    access_hash INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    date INTEGER NOT NULL,
    attributes TEXT NOT NULL,           -- JSON list of attribute dicts
    thumbs TEXT NOT NULL,               -- JSON list of {type, w, h, file_id, size}
    dc INTEGER NOT NULL DEFAULT 2,      -- the data centre that serves its bytes (and its thumbnails')
    cdn INTEGER NOT NULL DEFAULT 0      -- popular: its DC redirects downloads to a CDN DC
);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    access_hash INTEGER NOT NULL,
    date INTEGER NOT NULL,
    sizes TEXT NOT NULL,                -- JSON list of {type, w, h, file_id, size}
    dc INTEGER NOT NULL DEFAULT 2
);
-- Topics deleted with messages.deleteTopicHistory: a send into one answers TOPIC_DELETED.
CREATE TABLE IF NOT EXISTS deleted_topics (
    chat_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (chat_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reply_peers (  -- replies into another chat: messages.reply_to is an id there
    box INTEGER NOT NULL,
    id INTEGER NOT NULL,
    peer INTEGER NOT NULL,              -- the other chat (marked id)
    PRIMARY KEY (box, id)
) WITHOUT ROWID;
"""


# ---- peers -------------------------------------------------------------------------------------


def channel_peer(raw_id: int) -> int:
    return -(CHANNEL_OFFSET + raw_id)


def chat_peer(raw_id: int) -> int:
    return -raw_id


def peer_kind(peer: int) -> str:
    """``user``, ``chat`` (basic group) or ``channel`` for a marked id."""
    if peer > 0:
        return "user"
    return "channel" if peer <= -CHANNEL_OFFSET else "chat"


def raw_id(peer: int) -> int:
    """The unmarked id (as in PeerUser/PeerChat/PeerChannel)."""
    if peer > 0:
        return peer
    return -peer - CHANNEL_OFFSET if peer <= -CHANNEL_OFFSET else -peer


def is_channel(peer: int) -> bool:
    return peer <= -CHANNEL_OFFSET


# ---- rows --------------------------------------------------------------------------------------


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


_MSG_COLS = (
    "box, id, gid, peer, from_id, date, text, entities, reply_to, topic, grouped_id, edit_date,"
    " media, fwd, action, post_author, noforwards, pinned"
)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _message(row: Sequence[Any]) -> Message:
    return Message(
        box=row[0],
        id=row[1],
        gid=row[2],
        peer=row[3],
        from_id=row[4],
        date=row[5],
        text=row[6],
        entities=json.loads(row[7]) if row[7] else [],
        reply_to=row[8],
        topic=row[9],
        grouped_id=row[10],
        edit_date=row[11],
        media=_loads(row[12]),
        fwd=_loads(row[13]),
        action=_loads(row[14]),
        post_author=row[15],
        noforwards=bool(row[16]),
        pinned=bool(row[17]),
    )


def _user(row: Sequence[Any]) -> User:
    return User(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], bool(row[9]), row[10])


_USER_COLS = "id, access_hash, name, first_name, last_name, username, phone, code, password, premium, dc"
_CHAT_COLS = "id, access_hash, name, kind, title, username, about, forum, noforwards, creator_id, date, pts"


def _chat(row: Sequence[Any]) -> Chat:
    return Chat(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), bool(row[8]), row[9], row[10], row[11]
    )


def _topic(row: Sequence[Any]) -> Topic:
    return Topic(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), bool(row[8]))


def normalize_phone(phone: str) -> str:
    """Digits only, as Telethon's ``utils.parse_phone`` sends them."""
    return "".join(ch for ch in str(phone) if ch.isdigit())


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


class World:
    """The world's state in ``path`` (``world.sqlite``); single writer, many readers."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self.clock_offset = 0.0  # tests move time forward (e.g. to expire file references)
        # A file_reference older than this many seconds gets FILE_REFERENCE_EXPIRED.
        self.file_reference_max_age = 24 * 3600.0
        # getChannelDifference answers "too long" (latest messages only) past this many pending events: the
        # channel's box keeps only its latest updates; Telegram's usually about 100000 "(though do not rely
        # on this value...)", core.telegram.org/constructor/updates.channelDifferenceTooLong. Tests lower it.
        self.channel_difference_max = 5000
        private_dir(self.path.parent)
        self._db = sqlite3.connect(private_file(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._add_dc_columns()
        self._in_tx = False
        if self._meta("secret") is None:
            with self._tx():
                self._set_meta("secret", secrets.token_hex(16))
        self.secret = bytes.fromhex(self._meta("secret") or "")
        self.file_reference_max_age = float(self.get_setting("file_reference_max_age") or self.file_reference_max_age)

    # ---- plumbing

    def _add_dc_columns(self) -> None:
        """A world made before data centres were modelled gains its ``dc`` columns (everything on DC 2)."""
        for table, column, default in (
            ("users", "dc", 2),
            ("documents", "dc", 2),
            ("photos", "dc", 2),
            ("documents", "cdn", 0),
        ):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT {default}")

    def close(self) -> None:
        self._db.close()

    def now(self) -> int:
        return int(self._clock() + self.clock_offset)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._in_tx:  # nested: part of the caller's transaction
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_tx = False
        self._db.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many mutations (e.g. loading a world file) into one transaction."""
        with self._tx():
            yield

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _next_id(self, key: str, base: int) -> int:
        value = int(self._meta(key) or base) + 1
        self._set_meta(key, str(value))
        return value

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        return self._meta("setting:" + key) or default

    def set_setting(self, key: str, value: str) -> None:
        with self._tx():
            self._set_meta("setting:" + key, value)

    @staticmethod
    def random_long() -> int:
        return secrets.randbits(63) or 1

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None

    # ---- users

    def create_user(
        self,
        name: str,
        *,
        first_name: str | None = None,
        last_name: str = "",
        username: str | None = None,
        phone: str | None = None,
        code: str | None = None,
        password: str | None = None,
        premium: bool = False,
        dc: int = 2,
    ) -> User:
        with self._tx() as db:
            user_id = self._next_id("next_user_id", USER_ID_BASE)
            db.execute(
                "INSERT INTO users (id, access_hash, name, first_name, last_name, username, phone, code,"
                " password, premium, dc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    self.random_long(),
                    name,
                    first_name if first_name is not None else name.capitalize(),
                    last_name,
                    username,
                    normalize_phone(phone) if phone else None,
                    code,
                    password,
                    int(premium),
                    dc,
                ),
            )
        return self.user(user_id)

    def user(self, user_id: int) -> User:
        row = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise KeyError(f"no user {user_id}")
        return _user(row)

    def find_user(self, user_id: int) -> User | None:
        row = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else _user(row)

    def users(self, ids: Iterable[int]) -> list[User]:
        wanted = sorted(set(ids))
        out: list[User] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE id IN ({marks})", chunk)
            out.extend(_user(row) for row in rows)
        return out

    def user_by_phone(self, phone: str) -> User | None:
        row = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE phone = ?", (normalize_phone(phone),)).fetchone()
        return None if row is None else _user(row)

    def user_by_name(self, name: str) -> User | None:
        row = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else _user(row)

    def user_by_username(self, username: str) -> User | None:
        row = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE username = ?", (username.lstrip("@"),)).fetchone()
        return None if row is None else _user(row)

    def accounts(self) -> list[User]:
        rows = self._db.execute(f"SELECT {_USER_COLS} FROM users WHERE phone IS NOT NULL ORDER BY id")
        return [_user(row) for row in rows]

    def account(self, ref: str | int) -> User:
        """An account by name, phone, username or id."""
        user: User | None = None
        if isinstance(ref, int):
            user = self.find_user(ref)
        else:
            user = self.user_by_name(ref) or self.user_by_username(ref)
            if user is None and normalize_phone(ref):
                user = self.user_by_phone(ref)
        if user is None:
            raise KeyError(f"no user {ref!r}")
        return user

    def set_premium(self, user_id: int, premium: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE users SET premium = ? WHERE id = ?", (int(premium), user_id))

    # ---- chats

    def create_chat(
        self,
        name: str,
        kind: str,
        *,
        title: str,
        creator_id: int,
        username: str | None = None,
        about: str = "",
        forum: bool = False,
        noforwards: bool = False,
        date: int | None = None,
        service: bool = True,
    ) -> Chat:
        """A basic group, broadcast channel or supergroup (``forum`` needs a supergroup).

        Like Telegram, the chat starts with a "created" service message (id 1 in a channel, which is
        why a forum's General topic has id 1) unless ``service`` is false.
        """
        if kind not in CHAT_KINDS:
            raise ValueError(f"chat kind must be one of {CHAT_KINDS}, not {kind!r}")
        if forum and kind != "supergroup":
            raise ValueError("only supergroups can be forums")
        date = self.now() if date is None else date
        with self._tx() as db:
            if kind == "group":
                chat_id = chat_peer(self._next_id("next_chat_id", CHAT_ID_BASE))
            else:
                chat_id = channel_peer(self._next_id("next_channel_id", CHANNEL_ID_BASE))
            db.execute(
                "INSERT INTO chats (id, access_hash, name, kind, title, username, about, forum, noforwards,"
                " creator_id, date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chat_id,
                    self.random_long(),
                    name,
                    kind,
                    title,
                    username,
                    about,
                    int(forum),
                    int(noforwards),
                    creator_id,
                    date,
                ),
            )
            db.execute(
                "INSERT INTO members (chat_id, user_id, role, rights, date) VALUES (?, ?, 'creator', '', ?)",
                (chat_id, creator_id, date),
            )
            if service:
                action: dict[str, Any] = (
                    {"type": "chat_create", "title": title, "users": [creator_id]}
                    if kind == "group"
                    else {"type": "channel_create", "title": title}
                )
                self.post(creator_id, chat_id, NewMessage(action=action, date=date))
            elif forum:  # id 1 stays reserved for General
                db.execute("UPDATE chats SET next_msg_id = 2 WHERE id = ?", (chat_id,))
            if forum:
                self.ensure_general_topic(chat_id)
        return self.chat(chat_id)

    def chat(self, chat_id: int) -> Chat:
        row = self._db.execute(f"SELECT {_CHAT_COLS} FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise KeyError(f"no chat {chat_id}")
        return _chat(row)

    def find_chat(self, chat_id: int) -> Chat | None:
        row = self._db.execute(f"SELECT {_CHAT_COLS} FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return None if row is None else _chat(row)

    def chats(self, ids: Iterable[int]) -> list[Chat]:
        wanted = sorted(set(ids))
        out: list[Chat] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT {_CHAT_COLS} FROM chats WHERE id IN ({marks})", chunk)
            out.extend(_chat(row) for row in rows)
        return out

    def all_chats(self) -> list[Chat]:
        return [_chat(row) for row in self._db.execute(f"SELECT {_CHAT_COLS} FROM chats ORDER BY id")]

    def chat_by_username(self, username: str) -> Chat | None:
        row = self._db.execute(f"SELECT {_CHAT_COLS} FROM chats WHERE username = ?", (username.lstrip("@"),)).fetchone()
        return None if row is None else _chat(row)

    def find_chat_ref(self, ref: str | int) -> Chat:
        """A chat by world name, username, marked id or raw id."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("-").isdigit()):
            number = int(ref)
            for candidate in (number, chat_peer(number), channel_peer(number)):
                if number < 0 and candidate != number:
                    continue
                found = self.find_chat(candidate)
                if found is not None:
                    return found
            raise KeyError(f"no chat {ref!r}")
        row = self._db.execute(f"SELECT {_CHAT_COLS} FROM chats WHERE name = ?", (ref,)).fetchone()
        if row is not None:
            return _chat(row)
        chat = self.chat_by_username(ref)
        if chat is None:
            raise KeyError(f"no chat {ref!r}")
        return chat

    def set_chat_flags(self, chat_id: int, *, noforwards: bool | None = None, forum: bool | None = None) -> None:
        with self._tx() as db:
            if noforwards is not None:
                db.execute("UPDATE chats SET noforwards = ? WHERE id = ?", (int(noforwards), chat_id))
            if forum is not None:
                db.execute("UPDATE chats SET forum = ? WHERE id = ?", (int(forum), chat_id))
                if forum:
                    self.ensure_general_topic(chat_id)

    # ---- membership

    def add_member(
        self, chat_id: int, user_id: int, *, role: str = "member", rights: Iterable[str] = (), date: int | None = None
    ) -> Member:
        rights = frozenset(rights)
        unknown = rights - ADMIN_RIGHTS
        if unknown:
            raise ValueError(f"unknown admin rights {sorted(unknown)}; known: {sorted(ADMIN_RIGHTS)}")
        if role not in ("creator", "admin", "member"):
            raise ValueError(f"unknown role {role!r}")
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO members (chat_id, user_id, role, rights, date) VALUES (?, ?, ?, ?, ?)",
                (chat_id, user_id, role, ",".join(sorted(rights)), self.now() if date is None else date),
            )
        member = self.member(chat_id, user_id)
        assert member is not None
        return member

    def remove_member(self, chat_id: int, user_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM members WHERE chat_id = ? AND user_id = ?", (chat_id, user_id))

    def member(self, chat_id: int, user_id: int) -> Member | None:
        row = self._db.execute(
            "SELECT chat_id, user_id, role, rights, date FROM members WHERE chat_id = ? AND user_id = ?",
            (chat_id, user_id),
        ).fetchone()
        if row is None:
            return None
        return Member(row[0], row[1], row[2], frozenset(filter(None, row[3].split(","))), row[4])

    def members(self, chat_id: int) -> list[Member]:
        rows = self._db.execute(
            "SELECT chat_id, user_id, role, rights, date FROM members WHERE chat_id = ? ORDER BY date, user_id",
            (chat_id,),
        )
        return [Member(r[0], r[1], r[2], frozenset(filter(None, r[3].split(","))), r[4]) for r in rows]

    def member_ids(self, chat_id: int) -> list[int]:
        rows = self._db.execute("SELECT user_id FROM members WHERE chat_id = ? ORDER BY user_id", (chat_id,))
        return [row[0] for row in rows]

    def account_member_ids(self, chat_id: int) -> list[int]:
        """Members who can log in (the only ones with live sessions)."""
        rows = self._db.execute(
            "SELECT m.user_id FROM members m JOIN users u ON u.id = m.user_id"
            " WHERE m.chat_id = ? AND u.phone IS NOT NULL ORDER BY m.user_id",
            (chat_id,),
        )
        return [int(row[0]) for row in rows]

    def member_count(self, chat_id: int) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM members WHERE chat_id = ?", (chat_id,)).fetchone()
        return int(row[0])

    def chats_of(self, user_id: int) -> list[Chat]:
        rows = self._db.execute(
            f"SELECT {', '.join('c.' + c.strip() for c in _CHAT_COLS.split(','))} FROM chats c"
            " JOIN members m ON m.chat_id = c.id WHERE m.user_id = ? ORDER BY c.id",
            (user_id,),
        )
        return [_chat(row) for row in rows]

    # ---- topics

    def create_topic(
        self,
        chat_id: int,
        title: str,
        *,
        creator_id: int,
        icon_color: int = 0x6FB9F0,
        icon_emoji_id: int | None = None,
        date: int | None = None,
        random_id: int | None = None,
    ) -> tuple[Topic, Posted]:
        """A forum topic: its id is the id of its "topic created" service message."""
        with self._tx() as db:
            action = {"type": "topic_create", "title": title, "icon_color": icon_color}
            if icon_emoji_id:
                action["icon_emoji_id"] = icon_emoji_id
            posted = self.post(creator_id, chat_id, NewMessage(action=action, date=date), random_id=random_id)
            message = posted.in_box(chat_id).message
            if not posted.duplicate:
                db.execute(
                    "INSERT INTO topics (chat_id, id, title, icon_color, icon_emoji_id, creator_id, date)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (chat_id, message.id, title, icon_color, icon_emoji_id, creator_id, message.date),
                )
                # The creation message belongs to its own topic (it opens the topic's thread).
                db.execute("UPDATE messages SET topic = ? WHERE box = ? AND id = ?", (message.id, chat_id, message.id))
                posted = Posted([Copy(c.box, _replace_topic(c.message, message.id), c.pts) for c in posted.copies])
        topic = self.topic(chat_id, message.id)
        assert topic is not None
        return topic, posted

    def edit_topic(
        self,
        chat_id: int,
        topic_id: int,
        *,
        editor_id: int,
        title: str | None = None,
        icon_emoji_id: int | None = None,
        closed: bool | None = None,
        hidden: bool | None = None,
    ) -> Posted:
        """Change a topic; like Telegram this posts a "topic edited" service message into it."""
        with self._tx() as db:
            action: dict[str, Any] = {"type": "topic_edit"}
            if title is not None:
                db.execute("UPDATE topics SET title = ? WHERE chat_id = ? AND id = ?", (title, chat_id, topic_id))
                action["title"] = title
            if icon_emoji_id is not None:
                db.execute(
                    "UPDATE topics SET icon_emoji_id = ? WHERE chat_id = ? AND id = ?",
                    (icon_emoji_id or None, chat_id, topic_id),
                )
                action["icon_emoji_id"] = icon_emoji_id
            if closed is not None:
                db.execute(
                    "UPDATE topics SET closed = ? WHERE chat_id = ? AND id = ?", (int(closed), chat_id, topic_id)
                )
                action["closed"] = closed
            if hidden is not None:
                db.execute(
                    "UPDATE topics SET hidden = ? WHERE chat_id = ? AND id = ?", (int(hidden), chat_id, topic_id)
                )
                action["hidden"] = hidden
            topic = topic_id if topic_id != GENERAL_TOPIC else None
            return self.post(editor_id, chat_id, NewMessage(action=action, topic=topic))

    def set_topic_state(self, chat_id: int, topic_id: int, *, closed: bool, hidden: bool) -> None:
        """Set a topic's flags without a service message (world files)."""
        with self._tx() as db:
            db.execute(
                "UPDATE topics SET closed = ?, hidden = ? WHERE chat_id = ? AND id = ?",
                (int(closed), int(hidden), chat_id, topic_id),
            )

    def delete_topic(self, chat_id: int, topic_id: int) -> list[Deletion]:
        """Delete a forum topic with all its messages, its "topic created" message included, as
        messages.deleteTopicHistory does; the topic id is remembered as deleted."""
        with self._tx() as db:
            ids = [
                int(row[0])
                for row in db.execute("SELECT id FROM messages WHERE box = ? AND topic = ?", (chat_id, topic_id))
            ]
            deletions = self.delete(chat_id, ids)
            db.execute("DELETE FROM topics WHERE chat_id = ? AND id = ?", (chat_id, topic_id))
            db.execute("INSERT OR IGNORE INTO deleted_topics (chat_id, id) VALUES (?, ?)", (chat_id, topic_id))
            return deletions

    def topic_deleted(self, chat_id: int, topic_id: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM deleted_topics WHERE chat_id = ? AND id = ?", (chat_id, topic_id)
        ).fetchone()
        return row is not None

    def topic(self, chat_id: int, topic_id: int) -> Topic | None:
        row = self._db.execute(
            "SELECT chat_id, id, title, icon_color, icon_emoji_id, creator_id, date, closed, hidden"
            " FROM topics WHERE chat_id = ? AND id = ?",
            (chat_id, topic_id),
        ).fetchone()
        return None if row is None else _topic(row)

    def topics(self, chat_id: int) -> list[Topic]:
        rows = self._db.execute(
            "SELECT chat_id, id, title, icon_color, icon_emoji_id, creator_id, date, closed, hidden"
            " FROM topics WHERE chat_id = ? ORDER BY id",
            (chat_id,),
        )
        return [_topic(row) for row in rows]

    def ensure_general_topic(self, chat_id: int) -> None:
        """Forums always have General (id 1), backed by the chat's first message."""
        chat = self.chat(chat_id)
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO topics (chat_id, id, title, icon_color, creator_id, date)"
                " VALUES (?, ?, 'General', 0, ?, ?)",
                (chat_id, GENERAL_TOPIC, chat.creator_id, chat.date),
            )

    def topic_top_ids(self, chat_id: int) -> dict[int, int]:
        """Each topic's newest message id (General counts messages without a topic)."""
        rows = self._db.execute(
            "SELECT COALESCE(topic, 1), MAX(id) FROM messages WHERE box = ? GROUP BY COALESCE(topic, 1)", (chat_id,)
        )
        return {int(row[0]): int(row[1]) for row in rows}

    # ---- media objects

    def add_document(
        self,
        *,
        file_id: int,
        mime: str,
        size: int,
        attributes: list[dict[str, Any]],
        thumbs: list[dict[str, Any]] | None = None,
        date: int | None = None,
        dc: int = 2,
        cdn: bool = False,
    ) -> Document:
        with self._tx() as db:
            doc_id = self.random_long()
            db.execute(
                "INSERT INTO documents (id, access_hash, file_id, mime, size, date, attributes, thumbs, dc, cdn)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    self.random_long(),
                    file_id,
                    mime,
                    size,
                    self.now() if date is None else date,
                    _dumps(attributes),
                    _dumps(thumbs or []),
                    dc,
                    int(cdn),
                ),
            )
        return self.document(doc_id)

    def document(self, doc_id: int) -> Document:
        row = self._db.execute(
            "SELECT id, access_hash, file_id, mime, size, date, attributes, thumbs, dc, cdn"
            " FROM documents WHERE id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no document {doc_id}")
        attributes, thumbs = json.loads(row[6]), json.loads(row[7])
        return Document(row[0], row[1], row[2], row[3], row[4], row[5], attributes, thumbs, row[8], bool(row[9]))

    def add_photo(self, *, sizes: list[dict[str, Any]], date: int | None = None, dc: int = 2) -> Photo:
        with self._tx() as db:
            photo_id = self.random_long()
            db.execute(
                "INSERT INTO photos (id, access_hash, date, sizes, dc) VALUES (?, ?, ?, ?, ?)",
                (photo_id, self.random_long(), self.now() if date is None else date, _dumps(sizes), dc),
            )
        return self.photo(photo_id)

    def photo(self, photo_id: int) -> Photo:
        row = self._db.execute(
            "SELECT id, access_hash, date, sizes, dc FROM photos WHERE id = ?", (photo_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no photo {photo_id}")
        return Photo(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def move_file(self, obj_id: int, dc: int) -> None:
        """Put a document's or photo's bytes on another DC: clients holding its old ``dc_id`` then meet
        FILE_MIGRATE_X (core.telegram.org/api/datacenter), as with a file Telegram moved."""
        with self._tx() as db:
            db.execute("UPDATE documents SET dc = ? WHERE id = ?", (dc, obj_id))
            db.execute("UPDATE photos SET dc = ? WHERE id = ?", (dc, obj_id))

    # ---- messages: writing

    def box_peers(self, sender_id: int, peer: int) -> list[tuple[int, int]]:
        """(box, peer as seen in that box) for every copy a message from ``sender_id`` to ``peer`` needs."""
        kind = peer_kind(peer)
        if kind == "channel":
            return [(peer, peer)]
        if kind == "chat":
            return [(user_id, peer) for user_id in self.member_ids(peer)]
        if peer == sender_id:  # Saved Messages
            return [(sender_id, sender_id)]
        return [(sender_id, peer), (peer, sender_id)]

    def _take_pts(self, box: int, count: int, kind: str, ids: list[int], date: int) -> int:
        table = "chats" if box < 0 else "users"
        row = self._db.execute(f"UPDATE {table} SET pts = pts + ? WHERE id = ? RETURNING pts", (count, box)).fetchone()
        pts = int(row[0])
        if box < 0:
            self._db.execute("UPDATE chats SET pts_date = ? WHERE id = ?", (date, box))
        self._db.execute(
            "INSERT INTO events (box, pts, pts_count, kind, ids, date) VALUES (?, ?, ?, ?, ?, ?)",
            (box, pts, count, kind, _dumps(ids), date),
        )
        return pts

    def _take_msg_id(self, box: int) -> int:
        table = "chats" if box < 0 else "users"
        row = self._db.execute(
            f"UPDATE {table} SET next_msg_id = next_msg_id + 1 WHERE id = ? RETURNING next_msg_id - 1", (box,)
        ).fetchone()
        return int(row[0])

    def _last_date(self, box: int) -> int:
        row = self._db.execute(
            "SELECT MAX(date) FROM messages WHERE box = ? AND id = (SELECT MAX(id) FROM messages WHERE box = ?)",
            (box, box),
        ).fetchone()
        return int(row[0] or 0)

    def replay(self, sender_id: int, peer: int, random_id: int) -> Posted | None:
        """The earlier post with this random_id from this sender to this peer, if any."""
        row = self._db.execute(
            "SELECT box, msg_id FROM random_ids WHERE sender = ? AND peer = ? AND random_id = ?",
            (sender_id, peer, random_id),
        ).fetchone()
        if row is None:
            return None
        earlier = self.message(row[0], row[1])
        if earlier is None:  # deleted since: the id stays used, like on Telegram
            earlier = Message(box=row[0], id=row[1], gid=0, peer=peer, from_id=sender_id, date=0)
        return Posted([Copy(row[0], earlier, self._event_pts(row[0], row[1]))], duplicate=True)

    def post(
        self,
        sender_id: int | None,
        peer: int,
        new: NewMessage,
        *,
        random_id: int | None = None,
        reply_box: int | None = None,
    ) -> Posted:
        """Store a new message from ``sender_id`` (None: the channel itself) in every box that sees it.

        ``new.reply_to`` is an id in the sender's box (or in ``reply_box``) and is mapped to each box's copy. With a
        ``random_id`` already used by this sender toward this peer, nothing is stored and the earlier
        message is returned (``duplicate``): Telegram's send idempotency, which never expires.
        """
        with self._tx() as db:
            if random_id and sender_id is not None:
                earlier = self.replay(sender_id, peer, random_id)
                if earlier is not None:
                    return earlier
            gid = int(self._meta("next_gid") or 0) + 1
            self._set_meta("next_gid", str(gid))
            sender_box = peer if is_channel(peer) else sender_id
            reply_gid: int | None = None
            source_box = reply_box if reply_box is not None else sender_box
            if new.reply_to is not None and source_box is not None:
                row = db.execute(
                    "SELECT gid FROM messages WHERE box = ? AND id = ?", (source_box, new.reply_to)
                ).fetchone()
                reply_gid = None if row is None else int(row[0])
            copies: list[Copy] = []
            for box, box_peer in self.box_peers(sender_id if sender_id is not None else 0, peer):
                msg_id = self._take_msg_id(box)
                date = new.date if new.date is not None else max(self.now(), self._last_date(box))
                reply_to = new.reply_to if box == source_box else self._id_in_box(box, reply_gid)
                row = (
                    box,
                    msg_id,
                    gid,
                    box_peer,
                    sender_id,
                    date,
                    new.text,
                    _dumps(new.entities) if new.entities else None,
                    reply_to,
                    new.topic,
                    new.grouped_id,
                    None,
                    _dumps(new.media),
                    _dumps(new.fwd),
                    _dumps(new.action),
                    new.post_author,
                    int(new.noforwards),
                    0,
                )
                db.execute(f"INSERT INTO messages ({_MSG_COLS}) VALUES ({','.join('?' * 18)})", row)
                pts = self._take_pts(box, 1, "new", [msg_id], date)
                copies.append(Copy(box, _message(row), pts))
            if random_id and sender_id is not None and sender_box is not None:
                db.execute(
                    "INSERT INTO random_ids (sender, peer, random_id, box, msg_id) VALUES (?, ?, ?, ?, ?)",
                    (sender_id, peer, random_id, sender_box, next(c.message.id for c in copies if c.box == sender_box)),
                )
            return Posted(copies)

    def _id_in_box(self, box: int, gid: int | None) -> int | None:
        if gid is None:
            return None
        row = self._db.execute("SELECT id FROM messages WHERE gid = ? AND box = ?", (gid, box)).fetchone()
        return None if row is None else int(row[0])

    def _event_pts(self, box: int, msg_id: int) -> int:
        row = self._db.execute(
            "SELECT pts FROM events WHERE box = ? AND kind = 'new' AND ids = ?", (box, _dumps([msg_id]))
        ).fetchone()
        return 0 if row is None else int(row[0])

    def edit(
        self,
        box: int,
        msg_id: int,
        *,
        text: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        media: dict[str, Any] | None = None,
        pinned: bool | None = None,
        edit_date: int | None = None,
    ) -> list[Copy]:
        """Change a message and every copy of it; each box takes a pts (an ``edit`` event)."""
        with self._tx() as db:
            original = self.message(box, msg_id)
            if original is None:
                raise KeyError(f"no message {msg_id} in box {box}")
            date = self.now() if edit_date is None else edit_date
            sets: list[str] = []
            values: list[Any] = []
            if text is not None:
                sets += ["text = ?", "entities = ?"]
                values += [text, _dumps(entities) if entities else None]
            elif entities is not None:
                sets.append("entities = ?")
                values.append(_dumps(entities) if entities else None)
            if media is not None:
                sets.append("media = ?")
                values.append(_dumps(media))
            if pinned is not None:
                sets.append("pinned = ?")
                values.append(int(pinned))
            if text is not None or media is not None or entities is not None:
                sets.append("edit_date = ?")
                values.append(date)
            copies: list[Copy] = []
            for row in db.execute("SELECT box, id FROM messages WHERE gid = ?", (original.gid,)).fetchall():
                if sets:
                    db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE box = ? AND id = ?", (*values, *row))
                pts = self._take_pts(row[0], 1, "edit", [row[1]], date)
                updated = self.message(row[0], row[1])
                assert updated is not None
                copies.append(Copy(row[0], updated, pts))
            return copies

    def set_pinned(self, box: int, msg_id: int, pinned: bool) -> None:
        """Pin state of a message and its copies (no pts: pins travel as their service message)."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET pinned = ? WHERE gid = (SELECT gid FROM messages WHERE box = ? AND id = ?)",
                (int(pinned), box, msg_id),
            )

    def set_edit_date(self, box: int, msg_id: int, edit_date: int) -> None:
        """Mark a message (and its copies) edited at ``edit_date`` without an event (world files)."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET edit_date = ? WHERE gid = (SELECT gid FROM messages WHERE box = ? AND id = ?)",
                (edit_date, box, msg_id),
            )

    def delete(self, box: int, ids: Sequence[int], *, revoke: bool = True) -> list[Deletion]:
        """Delete messages of ``box`` (and, with ``revoke``, their copies in other boxes)."""
        with self._tx() as db:
            per_box: dict[int, list[int]] = {}
            for msg_id in ids:
                row = db.execute("SELECT gid FROM messages WHERE box = ? AND id = ?", (box, msg_id)).fetchone()
                if row is None:
                    continue
                if revoke:
                    for other in db.execute("SELECT box, id FROM messages WHERE gid = ?", (row[0],)).fetchall():
                        per_box.setdefault(other[0], []).append(other[1])
                else:
                    per_box.setdefault(box, []).append(msg_id)
            date = self.now()
            out: list[Deletion] = []
            for target, target_ids in per_box.items():
                db.executemany("DELETE FROM messages WHERE box = ? AND id = ?", [(target, i) for i in target_ids])
                pts = self._take_pts(target, len(target_ids), "delete", target_ids, date)
                out.append(Deletion(target, target_ids, pts, len(target_ids)))
            return out

    # ---- replies into another chat

    def set_reply_elsewhere(self, box: int, msg_id: int, peer: int, reply_to: int) -> None:
        """Make a message a reply to message ``reply_to`` of another chat ``peer`` (layer 166+ replies)."""
        with self._tx() as db:
            db.execute("UPDATE messages SET reply_to = ? WHERE box = ? AND id = ?", (reply_to, box, msg_id))
            db.execute("INSERT OR REPLACE INTO reply_peers (box, id, peer) VALUES (?, ?, ?)", (box, msg_id, peer))

    def reply_peer(self, box: int, msg_id: int) -> int | None:
        """The other chat a message replies into, or None for a reply in its own chat."""
        row = self._db.execute("SELECT peer FROM reply_peers WHERE box = ? AND id = ?", (box, msg_id)).fetchone()
        return None if row is None else int(row[0])

    # ---- messages: reading

    def message(self, box: int, msg_id: int) -> Message | None:
        row = self._db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE box = ? AND id = ?", (box, msg_id)).fetchone()
        return None if row is None else _message(row)

    def messages_by_ids(self, box: int, ids: Sequence[int]) -> dict[int, Message]:
        out: dict[int, Message] = {}
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE box = ? AND id IN ({marks})", (box, *chunk)
            )
            for row in rows:
                out[row[1]] = _message(row)
        return out

    def all_messages(self, box: int, peer: int | None = None) -> list[Message]:
        """Oldest first."""
        if peer is None:
            rows = self._db.execute(f"SELECT {_MSG_COLS} FROM messages WHERE box = ? ORDER BY id", (box,))
        else:
            rows = self._db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE box = ? AND peer = ? ORDER BY id", (box, peer)
            )
        return [_message(row) for row in rows]

    def top_message(self, box: int, peer: int) -> Message | None:
        row = self._db.execute(
            f"SELECT {_MSG_COLS} FROM messages WHERE box = ? AND peer = ? ORDER BY id DESC LIMIT 1", (box, peer)
        ).fetchone()
        return None if row is None else _message(row)

    def private_peers(self, user_id: int) -> list[int]:
        rows = self._db.execute("SELECT DISTINCT peer FROM messages WHERE box = ? AND peer > 0", (user_id,))
        return [int(row[0]) for row in rows]

    def _where(self, box: int, f: HistoryFilter) -> tuple[str, list[Any]]:
        clauses = ["box = ?"]
        params: list[Any] = [box]
        if f.peer is not None and f.peer != box:
            clauses.append("peer = ?")
            params.append(f.peer)
        if f.topic is not None:
            if f.topic == GENERAL_TOPIC:
                clauses.append("topic IS NULL")
            else:
                clauses.append("topic = ?")
                params.append(f.topic)
        if f.min_id:
            clauses.append("id > ?")
            params.append(f.min_id)
        if f.max_id:
            clauses.append("id < ?")
            params.append(f.max_id)
        if f.q:
            clauses.append("instr(lower(text), ?) > 0")
            params.append(f.q.lower())
        if f.from_id is not None:
            clauses.append("from_id = ?")
            params.append(f.from_id)
        if f.min_date:
            clauses.append("date >= ?")
            params.append(f.min_date)
        if f.max_date:
            clauses.append("date <= ?")
            params.append(f.max_date)
        if f.media_kinds is not None:
            marks = ",".join("?" * len(f.media_kinds))
            clauses.append(f"json_extract(media, '$.kind') IN ({marks})")
            params.extend(sorted(f.media_kinds))
        if f.reply_to is not None:
            clauses.append("reply_to = ?")
            params.append(f.reply_to)
        if f.pinned:
            clauses.append("pinned = 1")
        if f.has_url:
            clauses.append("(entities LIKE '%\"url\"%' OR entities LIKE '%\"text_url\"%')")
        return " AND ".join(clauses), params

    def count(self, box: int, f: HistoryFilter) -> int:
        where, params = self._where(box, f)
        return int(self._db.execute(f"SELECT COUNT(*) FROM messages WHERE {where}", params).fetchone()[0])

    def history(self, box: int, f: HistoryFilter, page: Page) -> tuple[int, list[Message]]:
        """(total count, newest-first page) with Telegram's offset rules.

        The page is ``L[p + add_offset : p + add_offset + limit]`` of the newest-first list ``L``,
        where ``p`` counts the messages at or newer than ``offset_id`` (or sent at/after
        ``offset_date`` when no offset_id is given); a negative start is clamped to 0.
        """
        where, params = self._where(box, f)
        total = int(self._db.execute(f"SELECT COUNT(*) FROM messages WHERE {where}", params).fetchone()[0])
        limit = max(0, min(page.limit, 100) if page.limit > 0 else 20)
        if page.offset_id:
            newer, newer_params = "id >= ?", [page.offset_id]
        elif page.offset_date:
            newer, newer_params = "date >= ?", [page.offset_date]
        else:
            newer, newer_params = "0", []
        add = page.add_offset
        kept_newer: list[Message] = []
        if add < 0:
            rows = self._db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE {where} AND {newer} ORDER BY id ASC LIMIT ?",
                (*params, *newer_params, -add),
            ).fetchall()
            kept = rows[max(0, -add - limit) :]  # ascending; drop those past the page's end
            kept_newer = [_message(row) for row in reversed(kept)]
        older_limit = limit - len(kept_newer) if add < 0 else limit
        older_skip = max(0, add)
        older: list[Message] = []
        if older_limit > 0 and (add >= 0 or add + limit > 0):
            if add < 0:
                older_limit = min(older_limit, add + limit)
            rows = self._db.execute(
                f"SELECT {_MSG_COLS} FROM messages WHERE {where} AND NOT ({newer}) ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, *newer_params, older_limit, older_skip),
            ).fetchall()
            older = [_message(row) for row in rows]
        return total, kept_newer + older

    # ---- pts

    def pts(self, box: int) -> int:
        table = "chats" if box < 0 else "users"
        row = self._db.execute(f"SELECT pts FROM {table} WHERE id = ?", (box,)).fetchone()
        return 0 if row is None else int(row[0])

    def events_after(self, box: int, pts: int, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT box, pts, pts_count, kind, ids, date FROM events WHERE box = ? AND pts > ? ORDER BY pts LIMIT ?",
            (box, pts, limit),
        )
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def channels_changed_since(self, user_id: int, date: int) -> list[Chat]:
        """Channels of ``user_id`` whose pts moved at or after ``date`` (for updateChannelTooLong)."""
        rows = self._db.execute(
            f"SELECT {', '.join('c.' + c.strip() for c in _CHAT_COLS.split(','))} FROM chats c"
            " JOIN members m ON m.chat_id = c.id WHERE m.user_id = ? AND c.kind != 'group' AND c.pts_date >= ?",
            (user_id, date),
        )
        return [_chat(row) for row in rows]


def _replace_topic(message: Message, topic: int) -> Message:
    return replace(message, topic=topic)
