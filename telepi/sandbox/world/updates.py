"""Every box's pts and the log of events that ``updates.getDifference`` replays
(https://core.telegram.org/api/updates)."""

from __future__ import annotations

import json

from telepi.sandbox.world.records import Chat, Event
from telepi.sandbox.world.store import CHAT_COLS, Store, chat_row, dumps


class Updates(Store):
    def _take_pts(self, box: int, count: int, kind: str, ids: list[int], date: int) -> int:
        table = "chats" if box < 0 else "users"
        row = self._db.execute(f"UPDATE {table} SET pts = pts + ? WHERE id = ? RETURNING pts", (count, box)).fetchone()
        pts = int(row[0])
        if box < 0:
            self._db.execute("UPDATE chats SET pts_date = ? WHERE id = ?", (date, box))
        self._db.execute(
            "INSERT INTO events (box, pts, pts_count, kind, ids, date) VALUES (?, ?, ?, ?, ?, ?)",
            (box, pts, count, kind, dumps(ids), date),
        )
        return pts

    def _event_pts(self, box: int, msg_id: int) -> int:
        row = self._db.execute(
            "SELECT pts FROM events WHERE box = ? AND kind = 'new' AND ids = ?", (box, dumps([msg_id]))
        ).fetchone()
        return 0 if row is None else int(row[0])

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
            f"SELECT {', '.join('c.' + c.strip() for c in CHAT_COLS.split(','))} FROM chats c"
            " JOIN members m ON m.chat_id = c.id WHERE m.user_id = ? AND c.kind != 'group' AND c.pts_date >= ?",
            (user_id, date),
        )
        return [chat_row(row) for row in rows]
