"""Messages in their boxes: posting, editing, deleting, reading history.

A channel numbers its own messages, private chats and basic groups number them per account
(https://core.telegram.org/api/updates#message-related-event-sequences); a sender's ``random_id`` makes a send
idempotent (https://core.telegram.org/method/messages.sendMessage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telepi.sandbox.world.chats import Chats
from telepi.sandbox.world.peers import is_channel, peer_kind
from telepi.sandbox.world.records import GENERAL_TOPIC, Copy, Deletion, HistoryFilter, Message, NewMessage, Page, Posted
from telepi.sandbox.world.store import MSG_COLS, dumps, message_row
from telepi.sandbox.world.updates import Updates


class Boxes(Chats, Updates):
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
                    dumps(new.entities) if new.entities else None,
                    reply_to,
                    new.topic,
                    new.grouped_id,
                    None,
                    dumps(new.media),
                    dumps(new.fwd),
                    dumps(new.action),
                    new.post_author,
                    int(new.noforwards),
                    0,
                )
                db.execute(f"INSERT INTO messages ({MSG_COLS}) VALUES ({','.join('?' * 18)})", row)
                pts = self._take_pts(box, 1, "new", [msg_id], date)
                copies.append(Copy(box, message_row(row), pts))
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
                values += [text, dumps(entities) if entities else None]
            elif entities is not None:
                sets.append("entities = ?")
                values.append(dumps(entities) if entities else None)
            if media is not None:
                sets.append("media = ?")
                values.append(dumps(media))
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
        row = self._db.execute(f"SELECT {MSG_COLS} FROM messages WHERE box = ? AND id = ?", (box, msg_id)).fetchone()
        return None if row is None else message_row(row)

    def messages_by_ids(self, box: int, ids: Sequence[int]) -> dict[int, Message]:
        out: dict[int, Message] = {}
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT {MSG_COLS} FROM messages WHERE box = ? AND id IN ({marks})", (box, *chunk))
            for row in rows:
                out[row[1]] = message_row(row)
        return out

    def all_messages(self, box: int, peer: int | None = None) -> list[Message]:
        """Oldest first."""
        if peer is None:
            rows = self._db.execute(f"SELECT {MSG_COLS} FROM messages WHERE box = ? ORDER BY id", (box,))
        else:
            rows = self._db.execute(
                f"SELECT {MSG_COLS} FROM messages WHERE box = ? AND peer = ? ORDER BY id", (box, peer)
            )
        return [message_row(row) for row in rows]

    def top_message(self, box: int, peer: int) -> Message | None:
        row = self._db.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE box = ? AND peer = ? ORDER BY id DESC LIMIT 1", (box, peer)
        ).fetchone()
        return None if row is None else message_row(row)

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
                f"SELECT {MSG_COLS} FROM messages WHERE {where} AND {newer} ORDER BY id ASC LIMIT ?",
                (*params, *newer_params, -add),
            ).fetchall()
            kept = rows[max(0, -add - limit) :]  # ascending; drop those past the page's end
            kept_newer = [message_row(row) for row in reversed(kept)]
        older_limit = limit - len(kept_newer) if add < 0 else limit
        older_skip = max(0, add)
        older: list[Message] = []
        if older_limit > 0 and (add >= 0 or add + limit > 0):
            if add < 0:
                older_limit = min(older_limit, add + limit)
            rows = self._db.execute(
                f"SELECT {MSG_COLS} FROM messages WHERE {where} AND NOT ({newer}) ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, *newer_params, older_limit, older_skip),
            ).fetchall()
            older = [message_row(row) for row in rows]
        return total, kept_newer + older
