"""SQLite implementation of the checkpoint: one file shared by every session process on the host.

WAL mode lets readers (``telepi status``) run beside writers; every write is one short
``BEGIN IMMEDIATE`` transaction, so a process killed on any line leaves the file consistent and
its leases simply expire. Leases carry an absolute expiry set at claim time: there is no clean-up
pass, an expired lease is claimable by anyone on the next claim.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from telepi.checkpoint.model import (
    ANY_TOPIC,
    NOT_SENDING_HERE,
    REVIEW_REASONS,
    SENDING_STALE_SECONDS,
    STATUSES,
    UNMARKED,
    AnyTopic,
    ChangeItem,
    ChangeKind,
    Failure,
    FloodTotal,
    Head,
    Lease,
    NewItem,
    Pace,
    Pulse,
    Route,
    RouteReport,
    SessionInfo,
    SessionState,
    Skipped,
    StatusReport,
    TopicClaim,
    TopicFilter,
    WorkItem,
)
from telepi.checkpoint.schema import APPLICATION_ID, LATEST_VERSION, MIGRATIONS
from telepi.errors import CheckpointError, CheckpointReplaced, PassingError, UserFixableError

_CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_READONLY, _FULL, _CANTOPEN = 8, 13, 14  # SQLITE_READONLY, SQLITE_FULL, SQLITE_CANTOPEN
_CLAIMABLE_NOW = (
    "((status = 'pending' AND (not_before IS NULL OR not_before <= :now)) "
    f"OR (status = 'processing' AND (lease_expires < :now OR (send_started_at < :now - {SENDING_STALE_SECONDS}"
    " AND send_started_at >= claimed_at))))"
)
# Marked sending by a session as of now (parameters: session, now, session, now). A retry by the session that
# marked the row keeps its first attempt's time; another session's mark starts anew (it looked in the target for
# the earlier copy before sending). The CASE reads the row as it was before this update.
_MARKED = (
    "send_session = ?, send_started_at = ?, "
    "send_first_at = CASE WHEN send_session IS ? AND send_first_at IS NOT NULL THEN send_first_at ELSE ? END"
)
_CLAIMABLE = f"""
    route_id = :route AND status IN ('pending', 'processing', 'failed')
    AND {_CLAIMABLE_NOW}
"""


def _new_random_id() -> int:
    # Same shape as Telethon's own random ids: a non-zero signed 64-bit integer.
    while True:
        value = int.from_bytes(os.urandom(8), "big", signed=True)
        if value:
            return value


class SqliteStore:
    """The shared checkpoint on one SQLite file (see :class:`telepi.checkpoint.store.Store`)."""

    notifies = False  # SQLite has no notifications: a waiting session looks at the head again itself

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._read_only = read_only
        if not self.path.exists():
            if not create or read_only:
                raise CheckpointError(f"{self.path} does not exist: start a session once or check the path.")
            _create_private(self.path)
        self._db = self._connect()
        self._file = _file_identity(self.path)  # the file this store writes to, for its whole life
        if read_only:
            self._check_version()
        else:
            self._migrate()

    # ---- connection and schema -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # A reader (telepi status, doctor) never writes: a read-only file or disk still shows its state.
            db = _open_read_only(self.path) if self._read_only else _open(str(self.path), uri=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            self._check_identity(db)  # before any write: a foreign file is left exactly as it was
            if not self._read_only:
                _switch_to_wal(db)
                # FULL: a committed "done" survives power loss too, not only a killed process.
                db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) in _CORRUPTION_CODES:
                raise self._unusable(exc) from None
            raise self._unavailable(exc) from None
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        return db

    def _check_identity(self, db: sqlite3.Connection) -> None:
        # One statement, one snapshot: read apart, another session's first migration could commit in between
        # (tables seen, its application id not yet) and a fresh checkpoint would look foreign.
        app_id, tables = db.execute(
            "SELECT (SELECT application_id FROM pragma_application_id), (SELECT COUNT(*) FROM sqlite_master)"
        ).fetchone()
        has_tables = tables > 0
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and has_tables):
            raise CheckpointError(
                f"{self.path} is an SQLite database but not a telepi checkpoint; it was left untouched: "
                "point SHARED_DB_PATH at another file."
            )

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > LATEST_VERSION:
            raise CheckpointError(
                f"{self.path} was written by a newer telepi (schema {version}, this one knows {LATEST_VERSION}): "
                "upgrade telepi on this machine."
            )
        if version < LATEST_VERSION:
            raise CheckpointError(
                f"{self.path} has schema {version}, this telepi reads {LATEST_VERSION}: "
                "start a session once (telepi run) so it upgrades the checkpoint."
            )

    def _unavailable(self, exc: sqlite3.OperationalError) -> UserFixableError:
        """What the file system or another process refuses, said as one sentence with its fix."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
        where = f"the checkpoint {self.path}"
        if code in _BUSY_CODES:
            return PassingError(
                f"{where} stayed locked by another process for 30 s ({exc}): telepi retries; "
                "if it persists, find the process holding it (fuser on the file)."
            )
        if code == _READONLY:
            return CheckpointError(
                f"{where} cannot be written ({exc}): make the file and its directory writable by the user "
                "running telepi, or point SHARED_DB_PATH at a writable place."
            )
        if code == _FULL:
            return CheckpointError(f"the disk holding {where} is full ({exc}): free space there, then start again.")
        if self.path.is_dir():
            return CheckpointError(
                f"{where} is a directory, not a file: remove it, or point SHARED_DB_PATH at a file "
                "(the default is ../shared/checkpoint.db)."
            )
        if code in (_CANTOPEN, _READONLY) and not os.access(self.path.parent, os.W_OK):
            return CheckpointError(
                f"{where} cannot be written: its directory {self.path.parent} is read-only for this user; make it "
                "writable by the user running telepi, or point SHARED_DB_PATH at a writable place."
            )
        if code == _CANTOPEN:
            return CheckpointError(
                f"{where} cannot be opened ({exc}): it must be a file in a directory the user running telepi "
                "can write; point SHARED_DB_PATH at one."
            )
        return CheckpointError(
            f"{where} cannot be used ({exc}): check the file and its disk, or point SHARED_DB_PATH elsewhere."
        )

    def _unusable(self, exc: sqlite3.DatabaseError) -> CheckpointError:
        return CheckpointError(
            f"{self.path} is not a usable telepi checkpoint ({exc}); it was left untouched: "
            "move it aside to start a new checkpoint, or restore it from a backup."
        )

    def _migrate(self) -> None:
        with self._tx() as db:
            self._check_identity(db)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > LATEST_VERSION:
                raise CheckpointError(
                    f"{self.path} was written by a newer telepi (schema {version}, this one knows {LATEST_VERSION}): "
                    "upgrade telepi on this machine."
                )
            for number in range(version, LATEST_VERSION):
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
            if version < LATEST_VERSION:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {LATEST_VERSION}")

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One short transaction; a corrupted file becomes a CheckpointError naming it."""
        with self._lock:
            if write:
                self._check_same_file()
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) in _CORRUPTION_CODES:
                    raise self._unusable(exc) from None
                raise self._unavailable(exc) from None
            except sqlite3.DatabaseError as exc:
                if getattr(exc, "sqlite_errorcode", None) in _CORRUPTION_CODES:
                    raise self._unusable(exc) from None
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def wait_head(self, route_id: int, timeout: float) -> bool:
        return False  # see ``notifies``

    def _check_same_file(self) -> None:
        """Writes into a deleted or replaced file would be lost, and the next start would copy everything
        again: stop before the write instead (one stat, microseconds)."""
        if _file_identity(self.path) != self._file:
            raise CheckpointReplaced(
                f"the checkpoint {self.path} was deleted or replaced while this session ran: restore it, or "
                "rebuild it with `telepi verify SESSION_DIR --adopt`, then start again"
            )

    # ---- routes -----------------------------------------------------------------------------

    def route(self, source_chat: str, target_chat: str, label: str = "") -> Route:
        with self._tx() as db:
            db.execute(
                "INSERT INTO routes (source_chat, target_chat, label, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (source_chat, target_chat) DO NOTHING",
                (source_chat, target_chat, label or f"{source_chat} -> {target_chat}", self._clock()),
            )
            row = db.execute(
                "SELECT * FROM routes WHERE source_chat = ? AND target_chat = ?", (source_chat, target_chat)
            ).fetchone()
        return Route.from_row(row)

    def routes(self) -> list[Route]:
        with self._tx(write=False) as db:
            return [Route.from_row(row) for row in db.execute("SELECT * FROM routes ORDER BY id")]

    def raise_high_water(self, route_id: int, source_msg_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE routes SET high_water = MAX(high_water, ?) WHERE id = ?", (source_msg_id, route_id))

    # ---- work items -------------------------------------------------------------------------

    def enqueue(self, route_id: int, items: Sequence[NewItem]) -> int:
        now = self._clock()
        rows = [
            (
                route_id,
                i.source_msg_id,
                i.grouped_id,
                i.topic_id,
                _new_random_id(),
                now,
                "pending" if i.skip_reason is None else "skipped",
                i.skip_reason,
                None if i.skip_reason is None else now,
            )
            for i in items
        ]
        with self._tx() as db:
            # rowcount, not total_changes: the rows the done counters' triggers write are not this call's.
            return db.executemany(
                "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at, "
                "status, skip_reason, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (route_id, source_msg_id) DO NOTHING",
                rows,
            ).rowcount

    def claim(
        self,
        route_id: int,
        session: str,
        limit: int,
        lease_seconds: float,
        *,
        after: int | None = None,
        before: int | None = None,
        at_least: int = 1,
        topic_run: bool = False,
        topic: TopicFilter = ANY_TOPIC,
    ) -> list[WorkItem]:
        now = self._clock()
        params = {"route": route_id, "now": now, "after": after, "before": before}
        below = "" if after is None else " AND source_msg_id > :after"
        below += "" if before is None else " AND source_msg_id < :before"
        with self._tx() as db:
            chosen: dict[int, sqlite3.Row] = {}
            albums_seen: set[int] = set()
            if topic_run:
                candidates = _topic_run(db, params, below, topic, limit)
            else:
                candidates = db.execute(
                    f"SELECT * FROM messages INDEXED BY messages_open WHERE {_CLAIMABLE}{below} "
                    "ORDER BY source_msg_id LIMIT :limit",
                    {**params, "limit": max(limit, 1)},
                ).fetchall()
            if len(candidates) < at_least:
                return []
            for row in candidates:
                if len(chosen) >= limit:
                    break
                grouped_id = row["grouped_id"]
                if grouped_id is None:
                    chosen[row["source_msg_id"]] = row
                elif grouped_id not in albums_seen:
                    albums_seen.add(grouped_id)
                    # An album is one item for the engine: lease every claimable member together.
                    for member in db.execute(
                        f"SELECT * FROM messages INDEXED BY messages_album WHERE {_CLAIMABLE} "
                        "AND grouped_id = :grouped",
                        {**params, "grouped": grouped_id},
                    ):
                        chosen[member["source_msg_id"]] = member
            expires = now + lease_seconds
            db.executemany(
                "UPDATE messages SET status = 'processing', session = ?, claimed_at = ?, lease_expires = ?, "
                "attempts = attempts + (CASE WHEN status = 'processing' THEN 1 ELSE 0 END) "
                "WHERE route_id = ? AND source_msg_id = ?",
                [(session, now, expires, route_id, msg_id) for msg_id in chosen],
            )
        return [
            WorkItem(
                route_id=route_id,
                source_msg_id=row["source_msg_id"],
                grouped_id=row["grouped_id"],
                topic_id=row["topic_id"],
                random_id=row["random_id"],
                # A lease that ran out while processing means its holder died: that counts as an attempt.
                attempts=row["attempts"] + (1 if row["status"] == "processing" else 0),
                lease_expires=expires,
                takeover=row["send_started_at"] is not None,
                send_session=row["send_session"],
                send_started_at=row["send_started_at"],
                first_send_at=row["send_first_at"],
            )
            for row in sorted(chosen.values(), key=lambda r: int(r["source_msg_id"]))
        ]

    def heartbeat(self, session: str, lease_seconds: float, pulse: Pulse | None = None) -> int:
        now = self._clock()
        with self._tx() as db:
            db.execute("UPDATE sessions SET last_seen = ? WHERE name = ?", (now, session))
            if pulse is not None:
                db.execute(
                    "UPDATE sessions SET heartbeat_every = ?, link_down_since = ?, bytes_down = ?, bytes_up = ? "
                    "WHERE name = ?",
                    (pulse.every, pulse.link_down_since, pulse.bytes_down, pulse.bytes_up, session),
                )
            cursor = db.execute(
                "UPDATE messages SET lease_expires = ? WHERE session = ? AND status = 'processing'",
                (now + lease_seconds, session),
            )
            return cursor.rowcount

    def confirm_send(self, route_id: int, source_ids: Sequence[int], session: str, spare_seconds: float) -> bool:
        return self._mark(route_id, source_ids, session, spare_seconds)

    def mark_sending(self, route_id: int, source_ids: Sequence[int], session: str) -> bool:
        return self._mark(route_id, source_ids, session, None)

    def _mark(self, route_id: int, source_ids: Sequence[int], session: str, spare: float | None) -> bool:
        """Mark every row sending when ``session`` holds them all (for ``spare`` seconds more when given)."""
        now = self._clock()
        with self._tx() as db:
            held = db.execute(
                f"SELECT COUNT(*) FROM messages WHERE route_id = ? AND session = ? AND status = 'processing' "
                f"AND lease_expires > ? AND source_msg_id IN ({_marks(source_ids)})",
                (route_id, session, -math.inf if spare is None else now + spare, *source_ids),
            ).fetchone()[0]
            if held != len(set(source_ids)):
                return False
            db.execute(
                f"UPDATE messages SET {_MARKED} WHERE route_id = ? AND source_msg_id IN ({_marks(source_ids)})",
                (session, now, session, now, route_id, *source_ids),
            )
            return True

    def unmark_refused(self, route_id: int, source_ids: Sequence[int], session: str) -> int:
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE messages SET {UNMARKED} "
                "WHERE route_id = ? AND session = ? AND send_session = ? AND status = 'processing' "
                f"AND source_msg_id IN ({_marks(source_ids)})",
                (route_id, session, session, *source_ids),
            )
            return cursor.rowcount

    def complete(self, route_id: int, targets: Mapping[int, int | None], session: str) -> int:
        # Whoever really sent the message records it, even if its lease was taken over meanwhile:
        # the row then stops the new holder before its own send (mark_sending fails on a done row).
        now = self._clock()
        with self._tx() as db:
            cursor = db.executemany(
                "UPDATE messages SET status = 'done', session = ?, target_msg_id = ?, processed_at = ?, "
                "lease_expires = NULL, last_error = NULL WHERE route_id = ? AND source_msg_id = ? "
                "AND status NOT IN ('done', 'skipped')",
                [(session, target, now, route_id, source) for source, target in targets.items()],
            )
            return cursor.rowcount

    def fail(
        self,
        route_id: int,
        source_ids: Sequence[int],
        error: str,
        session: str,
        *,
        retryable: bool,
        max_attempts: int,
        backoff_seconds: float = 0.0,
    ) -> int:
        now = self._clock()
        with self._tx() as db:
            cursor = db.execute(
                f"""UPDATE messages SET
                        attempts = attempts + 1,
                        last_error = ?,
                        processed_at = ?,
                        lease_expires = NULL,
                        status = CASE WHEN ? AND attempts + 1 < ? THEN 'pending' ELSE 'failed' END,
                        not_before = CASE WHEN ? AND attempts + 1 < ? THEN ? ELSE NULL END
                    WHERE route_id = ? AND session = ? AND status = 'processing'
                    AND source_msg_id IN ({_marks(source_ids)})""",
                (
                    error[:1000],
                    now,
                    retryable,
                    max_attempts,
                    retryable,
                    max_attempts,
                    now + backoff_seconds,
                    route_id,
                    session,
                    *source_ids,
                ),
            )
            return cursor.rowcount

    def skip(self, route_id: int, source_ids: Sequence[int], reason: str, session: str) -> int:
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE messages SET status = 'skipped', skip_reason = ?, session = ?, processed_at = ?, "
                f"lease_expires = NULL WHERE route_id = ? AND status NOT IN ('done', 'skipped') "
                f"AND source_msg_id IN ({_marks(source_ids)})",
                (reason, session, self._clock(), route_id, *source_ids),
            )
            return cursor.rowcount

    def hand_back(self, route_id: int, session: str, refused: Sequence[int] = (), doubtful: Sequence[int] = ()) -> int:
        now = self._clock()
        with self._tx() as db:
            if refused:
                db.execute(
                    f"UPDATE messages SET {UNMARKED} "
                    f"WHERE route_id = ? AND session = ? AND status = 'processing' "
                    f"AND source_msg_id IN ({_marks(refused)})",
                    (route_id, session, *refused),
                )
            cursor = db.execute(
                "UPDATE messages SET status = 'pending', session = NULL, lease_expires = NULL "
                "WHERE route_id = ? AND session = ? AND status = 'processing' "
                f"AND ({NOT_SENDING_HERE} OR source_msg_id IN ({_marks(doubtful)}))",
                (route_id, session, *doubtful),
            )
            db.execute("UPDATE sessions SET last_seen = ? WHERE name = ?", (now, session))
            return cursor.rowcount

    def release(self, session: str, *, route_id: int | None = None, only_unsent: bool = False) -> int:
        conditions = ["session = ?", "status = 'processing'"]
        params: list[object] = [session]
        if route_id is not None:
            conditions.append("route_id = ?")
            params.append(route_id)
        if only_unsent:
            conditions.append(NOT_SENDING_HERE)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE messages SET status = 'pending', session = NULL, lease_expires = NULL "
                f"WHERE {' AND '.join(conditions)}",
                params,
            )
            return cursor.rowcount

    def retry(self, route_id: int | None = None, source_ids: Sequence[int] | None = None) -> int:
        conditions, params = _requeue_filter("failed", route_id, source_ids)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE messages SET status = 'pending', attempts = 0, not_before = NULL, session = NULL "
                f"WHERE {' AND '.join(conditions)}",
                params,
            )
            return cursor.rowcount

    def retry_skipped(
        self,
        route_id: int | None = None,
        source_ids: Sequence[int] | None = None,
        reasons: Sequence[str] | None = None,
        *,
        exclude: Sequence[str] = (),
    ) -> dict[str, int]:
        conditions, params = _requeue_filter("skipped", route_id, source_ids)
        if reasons is not None:
            conditions.append(f"skip_reason IN ({_marks(reasons)})")
            params.extend(reasons)
        if exclude:
            conditions.append(f"COALESCE(skip_reason, '') NOT IN ({_marks(exclude)})")
            params.extend(exclude)
        where = " AND ".join(conditions)
        with self._tx() as db:
            counts = {
                str(reason or ""): int(count)
                for reason, count in db.execute(
                    f"SELECT skip_reason, COUNT(*) FROM messages WHERE {where} GROUP BY skip_reason", params
                )
            }
            # As if never tried: no attempts, no send marks (nothing was sent), the same random_id.
            db.execute(
                "UPDATE messages SET status = 'pending', skip_reason = NULL, attempts = 0, not_before = NULL, "
                f"session = NULL, claimed_at = NULL, lease_expires = NULL, {UNMARKED}, "
                f"last_error = NULL, target_msg_id = NULL, processed_at = NULL WHERE {where}",
                params,
            )
        return counts

    def low_water_mark(self, route_id: int) -> int | None:
        # Only open rows are indexed: the done history, however long, is never scanned.
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT MIN(source_msg_id) FROM messages INDEXED BY messages_open "
                "WHERE route_id = ? AND status IN ('pending', 'processing', 'failed')",
                (route_id,),
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def mapped_targets(self, route_id: int, target_ids: Sequence[int]) -> set[int]:
        if not target_ids:
            return set()
        # Every route into the same target chat counts: its copies are not this route's to adopt.
        # No index on target_msg_id: a scan of those routes, paid only when a session takes over a send.
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT target_msg_id FROM messages WHERE route_id IN (SELECT id FROM routes WHERE target_chat = "
                f"(SELECT target_chat FROM routes WHERE id = ?)) AND target_msg_id IN ({_marks(target_ids)})",
                (route_id, *target_ids),
            ).fetchall()
        return {int(row[0]) for row in rows}

    def route_counts(self, route_id: int) -> tuple[int, int]:
        with self._tx(write=False) as db:
            # From the counters and the open and skipped rows' indexes: a progress line must not read the history.
            done, skipped, open_rows = db.execute(
                "SELECT (SELECT COALESCE(SUM(done), 0) FROM done_counts WHERE route_id = :route), "
                "(SELECT COUNT(*) FROM messages INDEXED BY messages_skipped "
                "WHERE route_id = :route AND status = 'skipped'), "
                "(SELECT COUNT(*) FROM messages INDEXED BY messages_open_status "
                "WHERE route_id = :route AND status IN ('pending', 'processing', 'failed'))",
                {"route": route_id},
            ).fetchone()
        return int(done + skipped), int(done + skipped + open_rows)

    def head(self, route_id: int, topic: TopicFilter = ANY_TOPIC) -> Head | None:
        index, in_topic = ("messages_open", "") if topic is ANY_TOPIC else ("messages_topic_open", _in_topic(topic))
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT source_msg_id, {_CLAIMABLE_NOW}, CASE status WHEN 'processing' THEN session END "
                f"FROM messages INDEXED BY {index} WHERE route_id = :route{in_topic} "
                "AND status IN ('pending', 'processing', 'failed') AND status != 'failed' "
                "ORDER BY source_msg_id LIMIT 1",
                {"route": route_id, "now": self._clock(), "topic": topic},
            ).fetchone()
        return None if row is None else Head(int(row[0]), bool(row[1]), row[2])

    def open_item(self, route_id: int, source_msg_id: int) -> Head | None:
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT source_msg_id, {_CLAIMABLE_NOW}, CASE status WHEN 'processing' THEN session END "
                "FROM messages WHERE route_id = :route AND source_msg_id = :id AND status IN ('pending', 'processing')",
                {"route": route_id, "id": source_msg_id, "now": self._clock()},
            ).fetchone()
        return None if row is None else Head(int(row[0]), bool(row[1]), row[2])

    def target_ids(self, route_id: int, source_ids: Sequence[int]) -> dict[int, int]:
        if not source_ids:
            return {}
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT source_msg_id, target_msg_id FROM messages WHERE route_id = ? AND status = 'done' "
                f"AND target_msg_id IS NOT NULL AND source_msg_id IN ({_marks(source_ids)})",
                (route_id, *source_ids),
            ).fetchall()
        return {int(row[0]): int(row[1]) for row in rows}

    # ---- source edits and deletes -------------------------------------------------------------

    def copied_ids(self, route_id: int) -> list[int]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT source_msg_id FROM messages WHERE route_id = ? AND status = 'done' "
                "AND target_msg_id IS NOT NULL ORDER BY source_msg_id",
                (route_id,),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def enqueue_edits(self, route_id: int, edits: Mapping[int, int | None]) -> int:
        with self._tx() as db:
            return self._enqueue_edits(db, route_id, edits)

    def _enqueue_edits(self, db: sqlite3.Connection, route_id: int, edits: Mapping[int, int | None]) -> int:
        before = db.total_changes
        # An open edit takes the later edit_date (and is applied once more if it is being applied now);
        # a done or failed one reopens for an edit as late or later (edit_date counts whole seconds: two
        # edits may share one); a recorded delete makes edits moot.
        db.executemany(
            "INSERT INTO changes (route_id, source_msg_id, kind, edit_date, updated_at) "
            "SELECT ?, ?, 'edit', ?, ? WHERE NOT EXISTS (SELECT 1 FROM changes WHERE route_id = ? "
            "AND source_msg_id = ? AND kind = 'delete') "
            "ON CONFLICT (route_id, source_msg_id, kind) DO UPDATE SET "
            "edit_date = MAX(COALESCE(changes.edit_date, 0), COALESCE(excluded.edit_date, 0)), status = 'pending', "
            "holder = NULL, lease_expires = NULL, not_before = NULL, last_error = NULL, note = NULL, "
            "attempts = CASE WHEN changes.status IN ('pending', 'processing') THEN changes.attempts ELSE 0 END, "
            "updated_at = excluded.updated_at "
            "WHERE changes.status IN ('pending', 'processing') "
            "OR COALESCE(excluded.edit_date, 0) >= COALESCE(changes.edit_date, 0)",
            [(route_id, msg_id, date, self._clock(), route_id, msg_id) for msg_id, date in edits.items()],
        )
        return db.total_changes - before

    def enqueue_stale_edits(self, route_id: int, edits: Mapping[int, int], slack: float) -> int:
        if not edits:
            return 0
        stale: dict[int, int | None] = {}
        with self._tx() as db:
            ids = list(edits)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in db.execute(
                    "SELECT m.source_msg_id, m.claimed_at, c.edit_date AS recorded FROM messages m "
                    "LEFT JOIN changes c ON c.route_id = m.route_id AND c.source_msg_id = m.source_msg_id "
                    "AND c.kind = 'edit' WHERE m.route_id = ? AND m.status = 'done' "
                    f"AND m.target_msg_id IS NOT NULL AND m.source_msg_id IN ({_marks(chunk)})",
                    (route_id, *chunk),
                ):
                    edit_date = edits[int(row["source_msg_id"])]
                    recorded = row["recorded"]
                    if recorded is not None:
                        newer = edit_date > recorded
                    else:  # edited after the copy's fetch could have read it
                        newer = edit_date >= (row["claimed_at"] or 0) - slack
                    if newer:
                        stale[int(row["source_msg_id"])] = edit_date
            return self._enqueue_edits(db, route_id, stale)

    def enqueue_deletes(self, route_id: int, source_ids: Sequence[int]) -> int:
        now = self._clock()
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT INTO changes (route_id, source_msg_id, kind, updated_at) VALUES (?, ?, 'delete', ?) "
                "ON CONFLICT (route_id, source_msg_id, kind) DO NOTHING",
                [(route_id, msg_id, now) for msg_id in source_ids],
            )
            added = db.total_changes - before
            db.executemany(
                "UPDATE changes SET status = 'done', note = 'deleted', holder = NULL, lease_expires = NULL, "
                "updated_at = ? WHERE route_id = ? AND source_msg_id = ? AND kind = 'edit' "
                "AND status IN ('pending', 'processing', 'failed')",
                [(now, route_id, msg_id) for msg_id in source_ids],
            )
            return added

    def source_pts(self, route_id: int) -> int | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT source_pts FROM routes WHERE id = ?", (route_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def advance_source_pts(self, route_id: int, pts: int, *, restart: bool = False) -> int:
        value = "?" if restart else "MAX(COALESCE(source_pts, 0), ?)"
        with self._tx() as db:
            row = db.execute(
                f"UPDATE routes SET source_pts = {value} WHERE id = ? RETURNING source_pts", (pts, route_id)
            ).fetchone()
        return int(row[0]) if row is not None else pts

    def claim_changes(
        self, route_id: int, session: str, user_id: int, limit: int, lease_seconds: float
    ) -> list[ChangeItem]:
        now = self._clock()
        chosen: list[ChangeItem] = []
        with self._tx() as db:
            rows = db.execute(
                "SELECT c.source_msg_id, c.kind, c.edit_date, c.author_user_id, c.attempts, c.status, "
                "m.status AS copy_status, m.target_msg_id, m.random_id, "
                "(SELECT s.user_id FROM sessions s WHERE s.name = COALESCE(m.send_session, m.session)) AS copier "
                "FROM changes c LEFT JOIN messages m ON m.route_id = c.route_id "
                "AND m.source_msg_id = c.source_msg_id WHERE c.route_id = :route "
                "AND ((c.status = 'pending' AND (c.not_before IS NULL OR c.not_before <= :now)) "
                "OR (c.status = 'processing' AND c.lease_expires < :now)) "
                "ORDER BY c.source_msg_id, c.kind",
                {"route": route_id, "now": now},
            ).fetchall()
            for row in rows:
                key = (now, route_id, row["source_msg_id"], row["kind"])
                if row["copy_status"] in (None, "skipped") or (
                    row["copy_status"] == "done" and row["target_msg_id"] is None
                ):
                    # No copy exists, and a message copied later reads the source as it is then.
                    db.execute(
                        "UPDATE changes SET status = 'done', note = 'not_copied', holder = NULL, "
                        "lease_expires = NULL, updated_at = ? WHERE route_id = ? AND source_msg_id = ? AND kind = ?",
                        key,
                    )
                    continue
                if row["copy_status"] != "done":
                    continue  # being copied: the change waits for the copy
                author = row["author_user_id"] if row["author_user_id"] is not None else row["copier"]
                if author is not None and row["author_user_id"] is None:
                    db.execute(
                        "UPDATE changes SET author_user_id = ? WHERE route_id = ? AND source_msg_id = ? AND kind = ?",
                        (author, *key[1:]),
                    )
                if author != user_id or len(chosen) >= limit:
                    continue
                db.execute(
                    "UPDATE changes SET status = 'processing', holder = ?, lease_expires = ?, "
                    "attempts = attempts + (CASE WHEN status = 'processing' THEN 1 ELSE 0 END), updated_at = ? "
                    "WHERE route_id = ? AND source_msg_id = ? AND kind = ?",
                    (session, now + lease_seconds, *key),
                )
                chosen.append(
                    ChangeItem(
                        route_id=route_id,
                        source_msg_id=int(row["source_msg_id"]),
                        kind=row["kind"],
                        edit_date=row["edit_date"],
                        target_msg_id=int(row["target_msg_id"]),
                        random_id=int(row["random_id"]),
                        attempts=int(row["attempts"]) + (1 if row["status"] == "processing" else 0),
                    )
                )
        return chosen

    def finish_change(self, route_id: int, source_msg_id: int, kind: ChangeKind, session: str, note: str = "") -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE changes SET status = 'done', note = ?, holder = NULL, lease_expires = NULL, "
                "last_error = NULL, updated_at = ? WHERE route_id = ? AND source_msg_id = ? AND kind = ? "
                "AND holder = ? AND status = 'processing'",
                (note or None, self._clock(), route_id, source_msg_id, kind, session),
            )
            return cursor.rowcount > 0

    def fail_change(
        self,
        route_id: int,
        source_msg_id: int,
        kind: ChangeKind,
        session: str,
        error: str,
        *,
        retryable: bool,
        max_attempts: int,
        backoff_seconds: float = 0.0,
    ) -> None:
        now = self._clock()
        again = retryable
        with self._tx() as db:
            db.execute(
                "UPDATE changes SET attempts = attempts + 1, last_error = ?, holder = NULL, lease_expires = NULL, "
                "status = CASE WHEN ? AND attempts + 1 < ? THEN 'pending' ELSE 'failed' END, "
                "not_before = CASE WHEN ? AND attempts + 1 < ? THEN ? ELSE NULL END, updated_at = ? "
                "WHERE route_id = ? AND source_msg_id = ? AND kind = ? AND holder = ? AND status = 'processing'",
                (
                    error[:1000],
                    again,
                    max_attempts,
                    again,
                    max_attempts,
                    now + backoff_seconds,
                    now,
                    route_id,
                    source_msg_id,
                    kind,
                    session,
                ),
            )

    def reassign_change(self, route_id: int, source_msg_id: int, kind: ChangeKind, author_user_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE changes SET author_user_id = ?, status = 'pending', holder = NULL, lease_expires = NULL, "
                "updated_at = ? WHERE route_id = ? AND source_msg_id = ? AND kind = ?",
                (author_user_id, self._clock(), route_id, source_msg_id, kind),
            )

    def change_counts(self, route_id: int | None = None) -> dict[str, int]:
        counts = dict.fromkeys(("pending", "processing", "done", "failed"), 0)
        with self._tx(write=False) as db:
            for status, count in db.execute(
                "SELECT status, COUNT(*) FROM changes WHERE ? IS NULL OR route_id = ? GROUP BY status",
                (route_id, route_id),
            ):
                counts[str(status)] = int(count)
        return counts

    # ---- topics -----------------------------------------------------------------------------

    def claim_topic(
        self,
        route_id: int,
        source_topic_id: int,
        session: str,
        title: str,
        lease_seconds: float,
        user_id: int | None = None,
    ) -> TopicClaim:
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM topics WHERE route_id = ? AND source_topic_id = ?", (route_id, source_topic_id)
            ).fetchone()
            if row is not None and row["target_topic_id"] is not None:
                return TopicClaim("mapped", int(row["target_topic_id"]))
            if row is not None and row["holder"] != session and (row["lease_expires"] or 0) >= now:
                return TopicClaim("wait", holder=row["holder"])
            random_id = row["random_id"] if row is not None and row["random_id"] else _new_random_id()
            previous = row["creator_user_id"] if row is not None else None
            previous_creator = int(previous) if previous is not None else None
            db.execute(
                "INSERT INTO topics (route_id, source_topic_id, title, holder, lease_expires, updated_at, random_id, "
                "creator_user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (route_id, source_topic_id) DO UPDATE "
                "SET title = excluded.title, holder = excluded.holder, lease_expires = excluded.lease_expires, "
                "updated_at = excluded.updated_at, random_id = excluded.random_id, "
                "creator_user_id = COALESCE(excluded.creator_user_id, topics.creator_user_id)",
                (route_id, source_topic_id, title, session, now + lease_seconds, now, random_id, user_id),
            )
            return TopicClaim("create", holder=session, random_id=int(random_id), previous_creator=previous_creator)

    def forget_topic(self, route_id: int, source_topic_id: int, target_topic_id: int) -> bool:
        with self._tx() as db:
            changed = db.execute(
                "UPDATE topics SET target_topic_id = NULL, random_id = NULL, creator_user_id = NULL, holder = NULL, "
                "lease_expires = NULL, updated_at = ? WHERE route_id = ? AND source_topic_id = ? "
                "AND target_topic_id = ?",
                (self._clock(), route_id, source_topic_id, target_topic_id),
            ).rowcount
        return changed > 0

    def complete_topic(self, route_id: int, source_topic_id: int, target_topic_id: int, title: str) -> None:
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO topics (route_id, source_topic_id, target_topic_id, title, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (route_id, source_topic_id) DO UPDATE SET "
                "target_topic_id = excluded.target_topic_id, title = excluded.title, holder = NULL, "
                "lease_expires = NULL, updated_at = excluded.updated_at",
                (route_id, source_topic_id, target_topic_id, title, now),
            )

    def topic_title(self, route_id: int, source_topic_id: int) -> str | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT title FROM topics WHERE route_id = ? AND source_topic_id = ?", (route_id, source_topic_id)
            ).fetchone()
        return None if row is None else str(row[0])

    def topic_map(self, route_id: int) -> dict[int, int]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT source_topic_id, target_topic_id FROM topics "
                "WHERE route_id = ? AND target_topic_id IS NOT NULL",
                (route_id,),
            ).fetchall()
        return {int(row[0]): int(row[1]) for row in rows}

    def bind_route(self, route_id: int, user_id: int) -> int:
        with self._tx() as db:
            db.execute(
                "UPDATE routes SET bound_user_id = ? WHERE id = ? AND bound_user_id IS NULL", (user_id, route_id)
            )
            row = db.execute("SELECT bound_user_id FROM routes WHERE id = ?", (route_id,)).fetchone()
        return int(row[0])

    def sessions_of_user(self, user_id: int) -> list[str]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT name FROM sessions WHERE user_id = ? ORDER BY name", (user_id,)).fetchall()
        return [str(row[0]) for row in rows]

    # ---- sessions ---------------------------------------------------------------------------

    def register_session(self, name: str, host: str, pid: int, user_id: int | None = None) -> None:
        # A session name has one live process (the caller checks): whatever the name still holds
        # belongs to a dead incarnation, and its heartbeats would otherwise keep those leases forever.
        now = self._clock()
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET status = 'pending', session = NULL, lease_expires = NULL, "
                "attempts = attempts + 1 WHERE session = ? AND status = 'processing'",
                (name,),
            )
            db.execute("UPDATE topics SET holder = NULL, lease_expires = NULL WHERE holder = ?", (name,))
            db.execute(
                "INSERT INTO sessions (name, host, pid, user_id, started_at, last_seen, state, detail, wait_until) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', '', NULL) ON CONFLICT (name) DO UPDATE SET "
                "host = excluded.host, pid = excluded.pid, user_id = COALESCE(excluded.user_id, sessions.user_id), "
                "started_at = excluded.started_at, last_seen = excluded.last_seen, state = 'running', "
                "detail = '', wait_until = NULL, link_down_since = NULL, bytes_down = 0, bytes_up = 0",
                (name, host, pid, user_id, now, now),
            )

    def others_alive(self, session: str, within: float) -> int:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT COUNT(*) FROM sessions WHERE name != ? AND state IN ('running', 'flood_wait') "
                "AND last_seen >= ?",
                (session, self._clock() - within),
            ).fetchone()
        return int(row[0])

    def session_user_ids(self) -> set[int]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT DISTINCT user_id FROM sessions WHERE user_id IS NOT NULL").fetchall()
        return {int(row[0]) for row in rows}

    def session_user_id(self, name: str) -> int | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT user_id FROM sessions WHERE name = ?", (name,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def session_process(self, name: str) -> tuple[str, int, str] | None:
        """The host, pid and state the session's last start registered, or None if it never ran."""
        with self._tx(write=False) as db:
            row = db.execute("SELECT host, pid, state FROM sessions WHERE name = ?", (name,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), str(row[2]))

    def set_session_state(
        self, name: str, state: SessionState, detail: str = "", wait_until: float | None = None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET state = ?, detail = ?, wait_until = ?, last_seen = ? WHERE name = ?",
                (state, detail, wait_until, self._clock(), name),
            )

    def record_flood_wait(self, session: str, method: str, seconds: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO flood_waits (session, method, waits, seconds, last_at) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (session, method) DO UPDATE SET waits = waits + 1, "
                "seconds = seconds + excluded.seconds, last_at = excluded.last_at",
                (session, method, seconds, self._clock()),
            )

    def save_pace(self, user_id: int, pace: Pace) -> None:
        with self._tx() as db:
            db.execute(_SAVE_PACE, (user_id, *_pace_values(pace)))

    def paces(self, user_id: int) -> list[Pace]:
        with self._tx(write=False) as db:
            return [
                Pace.from_row(r) for r in db.execute("SELECT * FROM paces WHERE user_id = ? ORDER BY grp", (user_id,))
            ]

    # ---- reporting --------------------------------------------------------------------------

    def report(self, failures: int = 10, skipped_ids: int = 5) -> StatusReport:
        now = self._clock()
        with self._tx(write=False) as db:
            routes = [Route.from_row(row) for row in db.execute("SELECT * FROM routes ORDER BY id")]
            reports = [self._route_report(db, route, now, skipped_ids) for route in routes]
            floods: dict[str, list[FloodTotal]] = {}
            for row in db.execute("SELECT * FROM flood_waits ORDER BY session, method"):
                floods.setdefault(row["session"], []).append(FloodTotal(row["method"], row["waits"], row["seconds"]))
            paces: dict[int, list[Pace]] = {}
            for row in db.execute("SELECT * FROM paces ORDER BY user_id, grp"):
                paces.setdefault(row["user_id"], []).append(Pace.from_row(row))
            sessions = [
                SessionInfo.from_row(row, floods.get(row["name"], []), paces.get(row["user_id"], []))
                for row in db.execute(
                    # Totals from the counters, the last 5 minutes from the time index: never the whole history.
                    """SELECT s.*,
                         (SELECT COALESCE(SUM(c.done), 0) FROM done_counts c WHERE c.session = s.name) AS done_total,
                         (SELECT COUNT(*) FROM messages m INDEXED BY messages_processed
                            WHERE m.processed_at >= ? AND m.session = s.name AND m.status = 'done') AS done_recent
                       FROM sessions s ORDER BY s.name""",
                    (now - 300,),
                )
            ]
            latest_failures = [
                Failure(
                    route_id=row["route_id"],
                    source_msg_id=row["source_msg_id"],
                    status=row["status"],
                    attempts=row["attempts"],
                    error=row["last_error"] or "",
                    at=row["processed_at"],
                )
                for row in db.execute(
                    "SELECT * FROM messages INDEXED BY messages_errors "
                    "WHERE last_error IS NOT NULL AND status IN ('failed', 'pending') "
                    "ORDER BY processed_at DESC LIMIT ?",
                    (failures,),
                )
            ]
        return StatusReport(str(self.path), now, reports, sessions, latest_failures)

    def _route_report(self, db: sqlite3.Connection, route: Route, now: float, skipped_ids: int) -> RouteReport:
        # Open rows counted from their own index, skipped ones from theirs, done ones from the counters.
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in db.execute(
            "SELECT status, COUNT(*) FROM messages INDEXED BY messages_open_status "
            "WHERE route_id = ? AND status IN ('pending', 'processing', 'failed') GROUP BY status",
            (route.id,),
        ):
            counts[status] = count
        counts["done"] = db.execute(
            "SELECT COALESCE(SUM(done), 0) FROM done_counts WHERE route_id = ?", (route.id,)
        ).fetchone()[0]
        skipped = _skipped(db, route.id, skipped_ids)
        counts["skipped"] = sum(group.count for group in skipped)
        leases = [
            Lease(
                route_id=route.id,
                source_msg_id=row["source_msg_id"],
                session=row["session"] or "",
                age_seconds=max(0.0, now - (row["claimed_at"] or now)),
                expires_in=row["lease_expires"] - now,
                sending=row["send_started_at"] is not None,
            )
            for row in db.execute(
                "SELECT * FROM messages INDEXED BY messages_open_status WHERE route_id = ? "
                "AND status IN ('pending', 'processing', 'failed') AND status = 'processing' ORDER BY source_msg_id",
                (route.id,),
            )
        ]
        low = db.execute(
            "SELECT MIN(source_msg_id) FROM messages INDEXED BY messages_open "
            "WHERE route_id = ? AND status IN ('pending', 'processing', 'failed')",
            (route.id,),
        ).fetchone()[0]
        oldest = db.execute(
            "SELECT MIN(enqueued_at) FROM messages INDEXED BY messages_open "
            "WHERE route_id = ? AND status IN ('pending', 'processing', 'failed') AND status != 'failed'",
            (route.id,),
        ).fetchone()[0]
        recent = db.execute(
            "SELECT COUNT(*) FROM messages INDEXED BY messages_processed "
            "WHERE processed_at >= ? AND route_id = ? AND status = 'done'",
            (now - 300, route.id),
        ).fetchone()[0]
        return RouteReport(
            route=route,
            counts=counts,
            low_water=low,
            oldest_open_at=oldest,
            done_last_5min=recent,
            leases=[lease for lease in leases if lease.expires_in >= 0],
            expired=[lease for lease in leases if lease.expires_in < 0],
            skipped=skipped,
        )

    # ---- verify and adopt (telepi verify) ---------------------------------------------------

    def ledger(self, route_id: int) -> dict[int, tuple[str, int | None]]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT source_msg_id, CASE WHEN status = 'skipped' AND skip_reason IN "
                f"({_marks(REVIEW_REASONS)}) THEN 'review' ELSE status END, target_msg_id "
                "FROM messages WHERE route_id = ?",
                (*REVIEW_REASONS, route_id),
            ).fetchall()
        return {int(row[0]): (str(row[1]), None if row[2] is None else int(row[2])) for row in rows}

    def sending_count(self, route_id: int) -> int:
        # Every route into the same target chat counts: a copy another route is sending right now is in the
        # target unrecorded too, and a session starting beside it must not take it for a lost checkpoint.
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT COUNT(*) FROM messages WHERE route_id IN (SELECT id FROM routes WHERE target_chat = "
                "(SELECT target_chat FROM routes WHERE id = ?)) AND send_started_at IS NOT NULL "
                "AND status NOT IN ('done', 'skipped')",
                (route_id,),
            ).fetchone()
        return int(row[0])

    def adopt(
        self, route_id: int, copies: Sequence[tuple[NewItem, int]], review: Sequence[NewItem], through: int
    ) -> int:
        now = self._clock()
        with self._tx() as db:
            adopted = db.executemany(  # rowcount: without the rows the done counters' triggers write
                "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at, "
                "status, session, target_msg_id, processed_at) VALUES (?, ?, ?, ?, ?, ?, 'done', 'verify', ?, ?) "
                "ON CONFLICT (route_id, source_msg_id) DO UPDATE SET status = 'done', session = 'verify', "
                "target_msg_id = excluded.target_msg_id, processed_at = excluded.processed_at, lease_expires = NULL, "
                "skip_reason = NULL "
                "WHERE messages.status NOT IN ('done', 'processing')",
                [
                    (route_id, i.source_msg_id, i.grouped_id, i.topic_id, _new_random_id(), now, target, now)
                    for i, target in copies
                ],
            ).rowcount
            # Doubtful matches are never guessed: held back as skipped until a person looks
            # (telepi retry --skipped adopt_review sends them).
            db.executemany(
                "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at, "
                "status, skip_reason, session, processed_at) VALUES (?, ?, ?, ?, ?, ?, 'skipped', 'adopt_review', "
                "'verify', ?) ON CONFLICT (route_id, source_msg_id) DO UPDATE SET status = 'skipped', "
                "skip_reason = 'adopt_review', processed_at = excluded.processed_at, lease_expires = NULL "
                "WHERE messages.status IN ('pending', 'failed')",
                [(route_id, i.source_msg_id, i.grouped_id, i.topic_id, _new_random_id(), now, now) for i in review],
            )
            db.execute(
                "UPDATE routes SET adopted_through = MAX(COALESCE(adopted_through, 0), ?) WHERE id = ?",
                (through, route_id),
            )
        return adopted

    def requeue_missing(self, route_id: int, items: Sequence[NewItem]) -> int:
        now = self._clock()
        with self._tx() as db:
            # A new random_id: the lost copy's one may still be remembered by Telegram and the resend dropped.
            # rowcount, not total_changes: the rows the done counters' triggers write are not this call's.
            return db.executemany(
                "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (route_id, source_msg_id) DO UPDATE SET status = 'pending', "
                "random_id = excluded.random_id, target_msg_id = NULL, attempts = 0, not_before = NULL, "
                f"session = NULL, lease_expires = NULL, {UNMARKED}, "
                "skip_reason = NULL, last_error = NULL, processed_at = NULL WHERE messages.status != 'processing'",
                [(route_id, i.source_msg_id, i.grouped_id, i.topic_id, _new_random_id(), now) for i in items],
            ).rowcount


def _skipped(db: sqlite3.Connection, route_id: int, latest: int) -> list[Skipped]:
    """Skipped rows of a route by reason, read from the skipped rows' own index (never the done history)."""
    by_reason = db.execute(
        "SELECT skip_reason, COUNT(*) FROM messages INDEXED BY messages_skipped "
        "WHERE route_id = ? AND status = 'skipped' GROUP BY skip_reason",
        (route_id,),
    ).fetchall()
    found = []
    for reason, count in by_reason:
        ids = db.execute(
            "SELECT source_msg_id FROM messages INDEXED BY messages_skipped "
            "WHERE route_id = ? AND status = 'skipped' AND skip_reason IS ? "
            "ORDER BY processed_at DESC, source_msg_id DESC LIMIT ?",
            (route_id, reason, latest),
        ).fetchall()
        found.append(Skipped(str(reason or ""), int(count), [int(row[0]) for row in ids]))
    return sorted(found, key=lambda s: (-s.count, s.reason))


def _in_topic(topic: int | AnyTopic | None) -> str:
    """The SQL that keeps one topic's rows (None: a chat without topics), bound as ``:topic``."""
    return " AND topic_id IS NULL" if topic is None else " AND topic_id = :topic"


def _topic_run(
    db: sqlite3.Connection, params: Mapping[str, object], below: str, topic: TopicFilter, limit: int
) -> list[sqlite3.Row]:
    """ORDERED=topic: the lowest claimable row (of ``topic`` when given) and the open rows of its topic that
    follow it while claimable: a run with nothing of its topic held by another session in between, so it
    may go out as one forward batch. Failed rows hold nothing back, so they are no gap."""
    in_topic = "" if topic is ANY_TOPIC else _in_topic(topic)
    start = db.execute(
        f"SELECT source_msg_id, topic_id FROM messages INDEXED BY messages_open WHERE {_CLAIMABLE}{below}{in_topic} "
        "ORDER BY source_msg_id LIMIT 1",
        {**params, "topic": topic},
    ).fetchone()
    if start is None:
        return []
    upto = "" if params.get("before") is None else " AND source_msg_id < :before"
    rows = db.execute(
        f"SELECT *, {_CLAIMABLE_NOW} AS claimable_now FROM messages INDEXED BY messages_topic_open "
        f"WHERE route_id = :route{_in_topic(start['topic_id'])} AND status IN ('pending', 'processing', 'failed') "
        f"AND status != 'failed' AND source_msg_id >= :start{upto} ORDER BY source_msg_id LIMIT :limit",
        {**params, "topic": start["topic_id"], "start": start["source_msg_id"], "limit": max(limit, 1)},
    ).fetchall()
    run: list[sqlite3.Row] = []
    for row in rows:
        if not row["claimable_now"]:
            break
        run.append(row)
    return run


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _open(target: str, *, uri: bool) -> sqlite3.Connection:
    return sqlite3.connect(target, timeout=30.0, isolation_level=None, check_same_thread=False, uri=uri)


def _open_read_only(path: Path) -> sqlite3.Connection:
    db = _open(f"file:{path}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA application_id").fetchone()  # opening is lazy: this is where it fails
    except sqlite3.OperationalError as exc:
        db.close()
        if (exc.sqlite_errorcode & 0xFF) != _CANTOPEN or path.is_dir():
            raise
        # A WAL file on a read-only disk without its -shm: no process can be writing it, so it is read
        # as it stands (https://www.sqlite.org/wal.html#readonly).
        db = _open(f"file:{path}?mode=ro&immutable=1", uri=True)
    return db


def _create_private(path: Path) -> None:
    """An empty file for the checkpoint, 0600 in directories 0700 whatever the umask (SQLite gives its -wal
    and -shm files the database file's mode): the checkpoint names chats and accounts."""
    missing = [parent for parent in (path.parent, *path.parent.parents) if not parent.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    with contextlib.suppress(FileExistsError):  # another session created it a moment ago
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(path, 0o600)


def _switch_to_wal(db: sqlite3.Connection, attempts: int = 300) -> None:
    """Enable WAL; the switch ignores busy_timeout, so two sessions creating the file at once retry."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _BUSY_CODES or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def _requeue_filter(
    status: str, route_id: int | None, source_ids: Sequence[int] | None
) -> tuple[list[str], list[object]]:
    """WHERE conditions and parameters for rows of ``status``, of one route and/or some ids."""
    conditions = [f"status = '{status}'"]
    params: list[object] = []
    if route_id is not None:
        conditions.append("route_id = ?")
        params.append(route_id)
    if source_ids is not None:
        conditions.append(f"source_msg_id IN ({_marks(source_ids)})")
        params.extend(source_ids)
    return conditions, params


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values)) or "NULL"


def _statements(script: str) -> list[str]:
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


_SAVE_PACE = (
    "INSERT INTO paces (user_id, grp, calls, period, learned_at, reason, session, wait_until) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, grp) DO UPDATE SET calls = excluded.calls, "
    "period = excluded.period, learned_at = excluded.learned_at, reason = excluded.reason, "
    "session = excluded.session, wait_until = excluded.wait_until"
)


def _pace_values(pace: Pace) -> tuple[object, ...]:
    return (pace.group, pace.calls, pace.period, pace.learned_at, pace.reason, pace.session, pace.wait_until)
