"""Forum topics: a topic is its "topic created" service message, General is id 1
(https://core.telegram.org/api/forum)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from telepi.sandbox.world.boxes import Boxes
from telepi.sandbox.world.records import GENERAL_TOPIC, Copy, Deletion, Message, NewMessage, Posted, Topic
from telepi.sandbox.world.store import topic_row


class Topics(Boxes):
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
        return None if row is None else topic_row(row)

    def topics(self, chat_id: int) -> list[Topic]:
        rows = self._db.execute(
            "SELECT chat_id, id, title, icon_color, icon_emoji_id, creator_id, date, closed, hidden"
            " FROM topics WHERE chat_id = ? ORDER BY id",
            (chat_id,),
        )
        return [topic_row(row) for row in rows]

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


def _replace_topic(message: Message, topic: int) -> Message:
    return replace(message, topic=topic)
