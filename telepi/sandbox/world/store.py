"""The world's SQLite database: schema, rows to records, transactions and settings. Storage only: it models
nothing of Telegram itself (the concerns built on it cite their pages).

The database is ``world.sqlite`` in WAL mode; every mutation is one short ``BEGIN IMMEDIATE``
transaction, so another process (``telepi sandbox dump``) can read while the server runs.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from telepi.sandbox.private import private_dir, private_file
from telepi.sandbox.world.records import Chat, Message, Topic, User

SCHEMA = """
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

MSG_COLS = (
    "box, id, gid, peer, from_id, date, text, entities, reply_to, topic, grouped_id, edit_date,"
    " media, fwd, action, post_author, noforwards, pinned"
)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def message_row(row: Sequence[Any]) -> Message:
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
        media=loads(row[12]),
        fwd=loads(row[13]),
        action=loads(row[14]),
        post_author=row[15],
        noforwards=bool(row[16]),
        pinned=bool(row[17]),
    )


def user_row(row: Sequence[Any]) -> User:
    return User(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], bool(row[9]), row[10])


USER_COLS = "id, access_hash, name, first_name, last_name, username, phone, code, password, premium, dc"
CHAT_COLS = "id, access_hash, name, kind, title, username, about, forum, noforwards, creator_id, date, pts"


def chat_row(row: Sequence[Any]) -> Chat:
    return Chat(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), bool(row[8]), row[9], row[10], row[11]
    )


def topic_row(row: Sequence[Any]) -> Topic:
    return Topic(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), bool(row[8]))


class Store:
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
        self._db.executescript(SCHEMA)
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
