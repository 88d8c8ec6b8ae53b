"""Groups, channels and supergroups, and their members with their admin rights
(https://core.telegram.org/api/channel, https://core.telegram.org/api/rights)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from telepi.sandbox.world.peers import channel_peer, chat_peer
from telepi.sandbox.world.records import ADMIN_RIGHTS, Chat, Member, NewMessage, Posted
from telepi.sandbox.world.store import CHAT_COLS, Store, chat_row

CHAT_ID_BASE = 200_000_000
CHANNEL_ID_BASE = 1_500_000_000
CHAT_KINDS = ("group", "channel", "supergroup")


class Chats(Store):
    if TYPE_CHECKING:  # defined by Boxes and Topics, which World puts before Chats

        def post(
            self,
            sender_id: int | None,
            peer: int,
            new: NewMessage,
            *,
            random_id: int | None = None,
            reply_box: int | None = None,
        ) -> Posted: ...

        def ensure_general_topic(self, chat_id: int) -> None: ...

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
        row = self._db.execute(f"SELECT {CHAT_COLS} FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise KeyError(f"no chat {chat_id}")
        return chat_row(row)

    def find_chat(self, chat_id: int) -> Chat | None:
        row = self._db.execute(f"SELECT {CHAT_COLS} FROM chats WHERE id = ?", (chat_id,)).fetchone()
        return None if row is None else chat_row(row)

    def chats(self, ids: Iterable[int]) -> list[Chat]:
        wanted = sorted(set(ids))
        out: list[Chat] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT {CHAT_COLS} FROM chats WHERE id IN ({marks})", chunk)
            out.extend(chat_row(row) for row in rows)
        return out

    def all_chats(self) -> list[Chat]:
        return [chat_row(row) for row in self._db.execute(f"SELECT {CHAT_COLS} FROM chats ORDER BY id")]

    def chat_by_username(self, username: str) -> Chat | None:
        row = self._db.execute(f"SELECT {CHAT_COLS} FROM chats WHERE username = ?", (username.lstrip("@"),)).fetchone()
        return None if row is None else chat_row(row)

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
        row = self._db.execute(f"SELECT {CHAT_COLS} FROM chats WHERE name = ?", (ref,)).fetchone()
        if row is not None:
            return chat_row(row)
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
            f"SELECT {', '.join('c.' + c.strip() for c in CHAT_COLS.split(','))} FROM chats c"
            " JOIN members m ON m.chat_id = c.id WHERE m.user_id = ? ORDER BY c.id",
            (user_id,),
        )
        return [chat_row(row) for row in rows]
