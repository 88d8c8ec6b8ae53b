"""PostgreSQL implementation of the checkpoint: one database shared by sessions on several hosts.

Same semantics as ``sqlite.py``, operation by operation; what differs is how concurrency is kept safe.
SQLite runs one writer at a time; here writers run side by side, so each operation locks exactly the
rows it decides on (``FOR UPDATE``, rechecked by PostgreSQL on the newest row version), and claims skip
rows another claim is deciding on (``SKIP LOCKED``) instead of waiting for it. Lease times come from the
database server's clock (hosts' clocks may differ), unless a test passes its own ``clock``. A deadlock
or serialization failure is retried as a whole transaction; every operation is one transaction.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
from telepi.checkpoint.pg_hot import HotConnection
from telepi.checkpoint.pg_schema import APPLICATION_ID, LATEST_VERSION, META, MIGRATIONS
from telepi.checkpoint.sqlite import _new_random_id
from telepi.errors import CheckpointError, NoCheckpoint, PassingError, UserFixableError

T = TypeVar("T")
_RETRIES = 20
_CHANGES_LOCK = 0x54504932  # advisory lock key (with the route id): recording edits and deletes of a route
# A session stopped inside a transaction (SIGSTOP, a frozen VM) would hold its row locks until it resumes:
# the server ends such a transaction after this long idle, and the others go on (every transaction of
# telepi's is a few statements without a pause; the stopped session finds its connection gone on resuming).
IDLE_IN_TRANSACTION_SECONDS = 10
_ANALYZE_AFTER = 1000  # rows enqueued before the statistics are looked at (see _analyze_if_stale)
_HEAD = "telepi_head"  # NOTIFY channel: a write that may move a route's head, the route id as payload
_CLAIMABLE_NOW = (
    "((status = 'pending' AND (not_before IS NULL OR not_before <= %(now)s)) "
    f"OR (status = 'processing' AND (lease_expires < %(now)s OR (send_started_at < %(now)s - {SENDING_STALE_SECONDS}"
    " AND send_started_at >= claimed_at))))"
)
_CLAIMABLE = f"""
    route_id = %(route)s AND status IN ('pending', 'processing', 'failed')
    AND {_CLAIMABLE_NOW}
"""
# The hot operations are each one statement in autocommit: one round trip, one implicit transaction. Their
# ``now`` is read once per statement (a MATERIALIZED CTE), from the test clock when it passes one, else from
# the server's clock, as ``_Tx.now`` does for the multi-statement transactions.
_CLOCK = (
    "clock AS MATERIALIZED (SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) AS now)"
)
# Marked sending by %(session)s as of the clock. A retry by the session that marked the row keeps its first
# attempt's time; another session's mark starts anew (it looked in the target for the earlier copy first).
_MARKED = (
    "send_session = %(session)s, send_started_at = clock.now, send_first_at = CASE "
    "WHEN m.send_session = %(session)s AND m.send_first_at IS NOT NULL THEN m.send_first_at ELSE clock.now END"
)
_CLAIMABLE_AT_CLOCK = _CLAIMABLE.replace("%(now)s", "clock.now")
# A completed row ``d`` moved a head (wait_head) when no pending or processing row of its topic (of the route
# without topics) lay below it: the head of its topic, and of the route when it was the route's. Only then
# does ``complete`` notify: every NOTIFY holds one cluster-wide lock from its commit's start to its end (WAL
# flush included), so notifying each complete put every session's completes in one file behind each fsync.
# Two completes racing below a waiter's row may each see the other's row still open and neither notify: the
# waiter then looks again after its wait's timeout (HEAD_WAIT), as after a write it began to listen too late.
_MOVED_HEAD = (
    "COALESCE(d.source_msg_id <= CASE WHEN d.topic_id IS NULL THEN (SELECT MIN(o.source_msg_id) FROM messages o "
    "WHERE o.route_id = %(route)s AND o.topic_id IS NULL AND o.status IN ('pending', 'processing')) "
    "ELSE (SELECT MIN(o.source_msg_id) FROM messages o WHERE o.route_id = %(route)s AND o.topic_id = d.topic_id "
    "AND o.status IN ('pending', 'processing')) END, TRUE)"
)
# A completion commits without waiting for its WAL flush: synchronous_commit off for its own transaction, set
# inside the statement (the setting is read when the statement commits, and ends with it). The sending mark
# before it was flushed, so the only completions a crash of the database server can lose (the WAL writer's
# last 0.6 s at most; any later durable commit flushes them too) leave their units as a send whose answer never
# came leaves them: marked, claimable once the mark is SENDING_STALE_SECONDS old (or its leases are given back),
# and settled by a claim that looks in the target first. One WAL flush per unit less.
_NO_FLUSH_WAIT = "lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))"
# What a person must fix (wrong password, no such database or role, refused by pg_hba.conf) exits 78;
# anything else while connecting (server down, restarting, full) passes by itself and exits 75.
_FIXABLE_CONNECT = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "password supplied",
    "no password",
    "permission denied",
    "invalid",
    "service file",
    "definition of service",
)


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Once per pooled connection, never per transaction: a transaction left idle is ended by the server."""
    conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_SECONDS * 1000}".encode())


def redact(url: str) -> str:
    """The URL as it may be shown: user, host, port and database, never a password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable SHARED_DB_URL)"
    if "service" in parts and "host" not in parts:
        return f"postgresql service {parts['service']}"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class _Tx:
    """One transaction's cursor and its ``now``: the test clock, or the server's, read once."""

    def __init__(self, cur: psycopg.Cursor[DictRow], clock: Callable[[], float] | None) -> None:
        self.cur = cur
        self._clock = clock
        self._now: float | None = None

    def now(self) -> float:
        if self._now is None:
            if self._clock is not None:
                self._now = self._clock()
            else:
                row = self.one("SELECT extract(epoch FROM clock_timestamp())::float8 AS now")
                self._now = float(row["now"])
        return self._now

    def run(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> int:
        self.cur.execute(sql.encode(), params)
        return self.cur.rowcount

    def all(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[DictRow]:
        self.cur.execute(sql.encode(), params)
        return self.cur.fetchall()

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> DictRow:
        self.cur.execute(sql.encode(), params)
        row = self.cur.fetchone()
        assert row is not None
        return row

    def first(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> DictRow | None:
        self.cur.execute(sql.encode(), params)
        return self.cur.fetchone()


class PostgresStore:
    """The shared checkpoint on a PostgreSQL database (see :class:`telepi.checkpoint.store.Store`)."""

    notifies = True  # wait_head is woken by the writes of other sessions (LISTEN/NOTIFY)

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        create: bool = True,
        read_only: bool = False,
        pool_size: int = 4,
    ) -> None:
        self._url = url
        self.where = redact(url)
        self.path = self.where  # what `telepi status` names as the checkpoint
        self._clock = clock
        self._read_only = read_only
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        # The one-statement operations (claim, mark, complete, head) run on a connection of the calling
        # thread's own, kept open: no pool checkout and return per call, and their plans stay generic.
        self._hot = threading.local()
        self._hot_lock = threading.Lock()
        self._hot_conns: list[HotConnection] = []
        self._inserted = 0  # rows this store enqueued since it last refreshed the statistics
        self._probe()  # connect once first: the pool would hide why a connection fails
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            open=False,
            name="telepi-checkpoint",
        )
        try:
            self._pool.open(wait=True, timeout=30)
            if read_only:
                self._check_version()
            else:
                self._migrate(create)
        except BaseException:
            self._pool.close()
            raise

    # ---- connection and schema -------------------------------------------------------------

    def _probe(self) -> None:
        try:
            psycopg.connect(self._url, connect_timeout=15).close()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def _scrub(self, text: str) -> str:
        try:
            password = conninfo_to_dict(self._url).get("password")
        except psycopg.ProgrammingError:
            return "the URL could not be read"
        text = " ".join(str(text).split())
        return text.replace(str(password), "***") if password else text

    def _unavailable(self, exc: BaseException) -> UserFixableError:
        """A connection problem as one sentence with its fix; the password never appears."""
        said = self._scrub(str(exc))
        where = f"the checkpoint database {self.where}"
        if isinstance(exc, psycopg.ProgrammingError) or any(part in said.lower() for part in _FIXABLE_CONNECT):
            return CheckpointError(
                f"{where} refused the connection ({said}): fix SHARED_DB_URL (user, password, database) "
                "or the server's pg_hba.conf."
            )
        return PassingError(f"{where} cannot be reached ({said}): telepi retries; check that the server runs.")

    def _migrate(self, create: bool) -> None:
        def work(db: _Tx) -> None:
            # One migrator at a time across hosts; the others find the schema done when they get the lock.
            db.run("SELECT pg_advisory_xact_lock(%s)", (APPLICATION_ID,))
            version = self._identify(db)
            if version is None:
                if not create:
                    raise NoCheckpoint(f"{self.where} holds no telepi checkpoint yet: start a session once.")
                db.run(META)
                db.run("INSERT INTO telepi_meta (application_id, version) VALUES (%s, 0)", (APPLICATION_ID,))
                version = 0
            if version > LATEST_VERSION:
                raise self._newer(version)
            for number in range(version, LATEST_VERSION):
                db.run(MIGRATIONS[number])
            if version < LATEST_VERSION:
                db.run("UPDATE telepi_meta SET version = %s", (LATEST_VERSION,))

        self._run(work)

    def _identify(self, db: _Tx) -> int | None:
        """The schema version, None for an empty schema; a schema holding other tables is refused."""
        row = db.one(
            "SELECT to_regclass('telepi_meta') IS NOT NULL AS ours, "
            "(SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()) AS tables"
        )
        if not row["ours"]:
            if row["tables"]:
                raise CheckpointError(
                    f"{self.where} holds tables that are not a telepi checkpoint; they were left untouched: "
                    "point SHARED_DB_URL at an empty database."
                )
            return None
        meta = db.first("SELECT application_id, version FROM telepi_meta")
        if meta is None or meta["application_id"] != APPLICATION_ID:
            raise CheckpointError(f"{self.where} is not a telepi checkpoint: point SHARED_DB_URL elsewhere.")
        return int(meta["version"])

    def _newer(self, version: int) -> CheckpointError:
        return CheckpointError(
            f"{self.where} was written by a newer telepi (schema {version}, this one knows {LATEST_VERSION}): "
            "upgrade telepi on this machine."
        )

    def _check_version(self) -> None:
        version = self._run(self._identify, write=False)
        if version is None:
            raise NoCheckpoint(f"{self.where} holds no telepi checkpoint yet: start a session once.")
        if version > LATEST_VERSION:
            raise self._newer(version)
        if version < LATEST_VERSION:
            raise CheckpointError(
                f"{self.where} has schema {version}, this telepi reads {LATEST_VERSION}: "
                "start a session once (telepi run) so it upgrades the checkpoint."
            )

    def _run(self, work: Callable[[_Tx], T], *, write: bool = True) -> T:
        """``work`` as one transaction, again from the start after a deadlock, a serialization failure or
        the server ending it while this process was stopped."""
        for attempt in range(_RETRIES):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    if not write:  # one snapshot for the whole read (telepi status)
                        conn.execute(b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    with conn.cursor(row_factory=dict_row) as cur:
                        return work(_Tx(cur, self._clock))
            # Ended by the server (this process was stopped mid-transaction, see IDLE_IN_TRANSACTION_SECONDS):
            # nothing of it was committed, so it runs again from the start on a fresh connection.
            except (
                pg_errors.DeadlockDetected,
                pg_errors.SerializationFailure,
                pg_errors.IdleInTransactionSessionTimeout,
            ):
                if attempt == _RETRIES - 1:
                    raise PassingError(
                        f"{self.where} stayed contended for {_RETRIES} attempts: telepi retries."
                    ) from None
                time.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except PoolTimeout as exc:
                raise self._unavailable(exc) from None
            except psycopg.OperationalError as exc:
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    def _statement(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One statement that returns rows, in autocommit: its own transaction in a single round trip (no
        BEGIN, no COMMIT, no separate read of the clock), prepared on its first run (``pg_hot``). Retried as
        ``_run`` retries a transaction; ``%(now)s`` is the test clock, or NULL for the server's (``_CLOCK``)."""
        for attempt in range(_RETRIES):
            try:
                return self._hot_connection().rows(
                    sql, {**params, "now": None if self._clock is None else self._clock()}
                )
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise PassingError(
                        f"{self.where} stayed contended for {_RETRIES} attempts: telepi retries."
                    ) from None
                time.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except psycopg.OperationalError as exc:
                broken = getattr(self._hot, "conn", None)
                if broken is not None:  # whatever state it was left in: the next call starts afresh
                    broken.close()
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")

    def _hot_connection(self) -> HotConnection:
        """This thread's connection for ``_statement``, opened on first use and again after it broke (a server
        restart: that call failed as passing, the next one reconnects)."""
        hot: HotConnection | None = getattr(self._hot, "conn", None)
        if hot is not None and not hot.closed:
            return hot
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=15)
        _configure(conn)
        # PostgreSQL's default plans a prepared statement again whenever the generic plan's estimate looks
        # dearer (a complete's array of ids, a claim's LIMIT): 0.2 ms of planning per complete and 2 ms per
        # claim, more than their execution. Their generic plans are keyed lookups (the claim's is written so:
        # see _CLAIM), so they are planned once per connection.
        conn.execute(b"SET plan_cache_mode = force_generic_plan")
        hot = self._hot.conn = HotConnection(conn)
        with self._hot_lock:
            self._hot_conns = [c for c in self._hot_conns if not c.closed]
            self._hot_conns.append(hot)
        return hot

    def close(self) -> None:
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        with self._hot_lock:
            for conn in self._hot_conns:
                conn.close()
            self._hot_conns = []
        self._pool.close()

    def wait_head(self, route_id: int, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for another session's write that may move the route's head (a
        send recorded, a lease given back); True when one came. A lease running out is no write: the caller
        looks again after ``timeout`` all the same."""
        with self._listen_lock:
            try:
                if self._listener is None:
                    # Listening from the first wait on: a write between the caller's look and this LISTEN
                    # is missed once, and costs one ``timeout``.
                    self._listener = psycopg.connect(self._url, autocommit=True, connect_timeout=15)
                    self._listener.execute(f"LISTEN {_HEAD}".encode())
                deadline = time.monotonic() + timeout
                moved = False
                while not moved and (left := deadline - time.monotonic()) > 0:
                    for notice in self._listener.notifies(timeout=left, stop_after=1):
                        moved = moved or notice.payload == str(route_id)
                # Notices queued meanwhile are about what the caller reads next anyway: drop them.
                for notice in self._listener.notifies(timeout=0):
                    moved = moved or notice.payload == str(route_id)
                return moved
            except psycopg.Error:
                # The listener broke (server restart): the caller looks itself; the next wait reconnects.
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
                return False

    # ---- routes -----------------------------------------------------------------------------

    def route(self, source_chat: str, target_chat: str, label: str = "") -> Route:
        def work(db: _Tx) -> Route:
            db.run(
                "INSERT INTO routes (source_chat, target_chat, label, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (source_chat, target_chat) DO NOTHING",
                (source_chat, target_chat, label or f"{source_chat} -> {target_chat}", db.now()),
            )
            return Route.from_row(
                db.one("SELECT * FROM routes WHERE source_chat = %s AND target_chat = %s", (source_chat, target_chat))
            )

        return self._run(work)

    def routes(self) -> list[Route]:
        return self._run(
            lambda db: [Route.from_row(row) for row in db.all("SELECT * FROM routes ORDER BY id")], write=False
        )

    def raise_high_water(self, route_id: int, source_msg_id: int) -> None:
        self._run(
            lambda db: db.run(
                "UPDATE routes SET high_water = GREATEST(high_water, %s) WHERE id = %s", (source_msg_id, route_id)
            )
        )

    def source_pts(self, route_id: int) -> int | None:
        row = self._run(lambda db: db.first("SELECT source_pts FROM routes WHERE id = %s", (route_id,)), write=False)
        return None if row is None or row["source_pts"] is None else int(row["source_pts"])

    def advance_source_pts(self, route_id: int, pts: int, *, restart: bool = False) -> int:
        value = "%s" if restart else "GREATEST(COALESCE(source_pts, 0), %s)"
        row = self._run(
            lambda db: db.first(
                f"UPDATE routes SET source_pts = {value} WHERE id = %s RETURNING source_pts", (pts, route_id)
            )
        )
        return int(row["source_pts"]) if row is not None else pts

    # ---- work items -------------------------------------------------------------------------

    def enqueue(self, route_id: int, items: Sequence[NewItem]) -> int:
        if not items:
            return 0

        def work(db: _Tx) -> int:
            now = db.now()
            skipped = [i.skip_reason is not None for i in items]
            return db.run(
                "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at, "
                "status, skip_reason, processed_at) SELECT %s, s, g, t, r, %s, st, sr, pa FROM unnest("
                "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::float8[]) "
                "AS u(s, g, t, r, st, sr, pa) ORDER BY s ON CONFLICT (route_id, source_msg_id) DO NOTHING",
                (
                    route_id,
                    now,
                    [i.source_msg_id for i in items],
                    [i.grouped_id for i in items],
                    [i.topic_id for i in items],
                    [_new_random_id() for _ in items],
                    ["skipped" if s else "pending" for s in skipped],
                    [i.skip_reason for i in items],
                    [now if s else None for s in skipped],
                ),
            )

        inserted = self._run(work)
        self._inserted += inserted
        if self._inserted >= _ANALYZE_AFTER:
            self._run(self._analyze_if_stale)
        return inserted

    def _analyze_if_stale(self, db: _Tx) -> None:
        """Fresh statistics once this store has enqueued a fifth of what the last ones counted. psycopg prepares
        the hot statements, and PostgreSQL may then run them on a generic plan that trusts the statistics: a
        table analyzed while nearly empty made each ``complete`` scan its whole route (0.6 ms instead of
        0.2 ms at 3,000 rows, and growing with the route) until autovacuum next looked, up to a minute later."""
        row = db.one("SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass")
        if self._inserted >= max(_ANALYZE_AFTER, 0.2 * float(row["reltuples"])):
            db.run("ANALYZE messages")
            self._inserted = 0

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
        below = "" if after is None else " AND source_msg_id > %(after)s"
        below += "" if before is None else " AND source_msg_id < %(before)s"
        params = {"route": route_id, "after": after, "before": before, "limit": limit}
        if not topic_run:
            rows = self._statement(
                _CLAIM.format(below=below),
                {**params, "session": session, "lease": lease_seconds, "at_least": at_least},
            )
            return sorted((_work_item(route_id, row) for row in rows), key=lambda item: item.source_msg_id)

        def work(db: _Tx) -> tuple[list[DictRow], float]:
            now = db.now()
            params_now = {**params, "now": now}
            candidates = _topic_run(db, params_now, below, topic, limit)
            if len(candidates) < at_least:
                return [], now
            chosen: dict[int, DictRow] = {}
            albums_seen: set[int] = set()
            for row in candidates:
                if len(chosen) >= limit:
                    break
                grouped_id = row["grouped_id"]
                if grouped_id is None:
                    chosen[row["source_msg_id"]] = row
                elif grouped_id not in albums_seen:
                    albums_seen.add(grouped_id)
                    # An album is one item for the engine: lease every claimable member together, or none
                    # when another claim holds part of it right now (it takes the album whole, or gives it up).
                    album = {**params_now, "grouped": grouped_id}
                    members = db.all(
                        f"SELECT * FROM messages WHERE {_CLAIMABLE} AND grouped_id = %(grouped)s "
                        "ORDER BY source_msg_id FOR UPDATE SKIP LOCKED",
                        album,
                    )
                    claimable = db.one(
                        f"SELECT COUNT(*) AS n FROM messages WHERE {_CLAIMABLE} AND grouped_id = %(grouped)s", album
                    )["n"]
                    if len(members) >= claimable:
                        chosen.update((member["source_msg_id"], member) for member in members)
            db.run(
                "UPDATE messages SET status = 'processing', session = %s, claimed_at = %s, lease_expires = %s, "
                "attempts = attempts + (CASE WHEN status = 'processing' THEN 1 ELSE 0 END) "
                "WHERE route_id = %s AND source_msg_id = ANY(%s::bigint[])",
                (session, now, now + lease_seconds, route_id, list(chosen)),
            )
            return sorted(chosen.values(), key=lambda r: int(r["source_msg_id"])), now

        rows, now = self._run(work)
        return [
            WorkItem(
                route_id=route_id,
                source_msg_id=row["source_msg_id"],
                grouped_id=row["grouped_id"],
                topic_id=row["topic_id"],
                random_id=row["random_id"],
                # A lease that ran out while processing means its holder died: that counts as an attempt.
                attempts=row["attempts"] + (1 if row["status"] == "processing" else 0),
                lease_expires=now + lease_seconds,
                takeover=row["send_started_at"] is not None,
                send_session=row["send_session"],
                send_started_at=row["send_started_at"],
                first_send_at=row["send_first_at"],
            )
            for row in rows
        ]

    def heartbeat(self, session: str, lease_seconds: float, pulse: Pulse | None = None) -> int:
        def work(db: _Tx) -> int:
            now = db.now()
            db.run("UPDATE sessions SET last_seen = %s WHERE name = %s", (now, session))
            if pulse is not None:
                db.run(
                    "UPDATE sessions SET heartbeat_every = %s, link_down_since = %s, bytes_down = %s, bytes_up = %s "
                    "WHERE name = %s",
                    (pulse.every, pulse.link_down_since, pulse.bytes_down, pulse.bytes_up, session),
                )
            return db.run(
                "UPDATE messages SET lease_expires = %s WHERE session = %s AND status = 'processing'",
                (now + lease_seconds, session),
            )

        return self._run(work)

    def confirm_send(self, route_id: int, source_ids: Sequence[int], session: str, spare_seconds: float) -> bool:
        return self._mark(route_id, source_ids, session, " AND lease_expires > clock.now + %(spare)s", spare_seconds)

    def mark_sending(self, route_id: int, source_ids: Sequence[int], session: str) -> bool:
        return self._mark(route_id, source_ids, session, "", 0.0)

    def _mark(self, route_id: int, source_ids: Sequence[int], session: str, lease_left: str, spare: float) -> bool:
        # Locked, then decided, in one statement: a takeover claiming these rows meanwhile is either seen
        # (PostgreSQL rechecks a locked row's newest version) or waits for this one. All or nothing: the
        # update runs only when every row is still this session's.
        wanted = len(set(source_ids))
        params = {"route": route_id, "session": session, "ids": _bigints(source_ids), "spare": spare, "wanted": wanted}
        if wanted == 1:
            # One row is all or nothing by itself: the update's own check on the row's newest version is the
            # lock-then-decide, without locking the row first (a second write of it, WAL included).
            rows = self._statement(
                f"WITH {_CLOCK} UPDATE messages m SET {_MARKED} "
                "FROM clock WHERE route_id = %(route)s AND session = %(session)s AND status = 'processing' "
                f"AND source_msg_id = ANY(%(ids)s::bigint[]){lease_left} RETURNING m.source_msg_id",
                params,
            )
            return len(rows) == 1
        rows = self._statement(
            f"WITH {_CLOCK}, held AS MATERIALIZED (SELECT source_msg_id FROM messages, clock "
            "WHERE route_id = %(route)s AND session = %(session)s AND status = 'processing' "
            f"AND source_msg_id = ANY(%(ids)s::bigint[]){lease_left} ORDER BY source_msg_id FOR UPDATE OF messages) "
            f"UPDATE messages m SET {_MARKED} FROM clock "
            "WHERE m.route_id = %(route)s AND m.source_msg_id = ANY(%(ids)s::bigint[]) "
            "AND (SELECT COUNT(*) FROM held) = %(wanted)s RETURNING m.source_msg_id",
            params,
        )
        return len(rows) == wanted

    def unmark_refused(self, route_id: int, source_ids: Sequence[int], session: str) -> int:
        rows = self._statement(
            f"UPDATE messages SET {UNMARKED} WHERE route_id = %(route)s "
            "AND session = %(session)s AND send_session = %(session)s AND status = 'processing' "
            "AND source_msg_id = ANY(%(ids)s::bigint[]) RETURNING source_msg_id",
            {"route": route_id, "session": session, "ids": _bigints(source_ids)},
        )
        return len(rows)

    def complete(self, route_id: int, targets: Mapping[int, int | None], session: str) -> int:
        # Whoever really sent the message records it, even if its lease was taken over meanwhile:
        # the row then stops the new holder before its own send (mark_sending fails on a done row).
        # One statement; it wakes the sessions waiting on the head when it moved a head (_MOVED_HEAD).
        row = self._statement(
            # The rows by key (= ANY), each one's target looked up in the arrays: a join with unnest() may be
            # planned, once prepared, as a scan of the whole route.
            f"WITH {_CLOCK}, done AS (UPDATE messages m SET status = 'done', session = %(session)s, "
            "target_msg_id = (%(targets)s::bigint[])[array_position(%(sources)s::bigint[], m.source_msg_id)], "
            "processed_at = clock.now, lease_expires = NULL, last_error = NULL FROM clock "
            "WHERE m.route_id = %(route)s AND m.source_msg_id = ANY(%(sources)s::bigint[]) "
            "AND m.status NOT IN ('done', 'skipped') RETURNING m.source_msg_id, m.topic_id), "
            f"counted AS (SELECT COUNT(*)::int AS n, bool_or({_MOVED_HEAD}) AS moved FROM done d), {_NO_FLUSH_WAIT} "
            f"SELECT n, CASE WHEN moved THEN pg_notify('{_HEAD}', %(route)s::text) END AS woke FROM counted, lazy",
            {
                "session": session,
                "sources": _bigints(targets),
                "targets": _bigints(targets.values()),
                "route": route_id,
            },
        )[0]
        return int(row["n"])

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
        def work(db: _Tx) -> int:
            now = db.now()
            _notify_head(db, route_id)
            return db.run(
                """UPDATE messages SET
                        attempts = attempts + 1,
                        last_error = %(error)s,
                        processed_at = %(now)s,
                        lease_expires = NULL,
                        status = CASE WHEN %(again)s AND attempts + 1 < %(max)s THEN 'pending' ELSE 'failed' END,
                        not_before = CASE WHEN %(again)s AND attempts + 1 < %(max)s THEN %(later)s::float8 END
                    WHERE route_id = %(route)s AND session = %(session)s AND status = 'processing'
                    AND source_msg_id = ANY(%(ids)s::bigint[])""",
                {
                    "error": error[:1000],
                    "now": now,
                    "again": retryable,
                    "max": max_attempts,
                    "later": now + backoff_seconds,
                    "route": route_id,
                    "session": session,
                    "ids": list(source_ids),
                },
            )

        return self._run(work)

    def skip(self, route_id: int, source_ids: Sequence[int], reason: str, session: str) -> int:
        def work(db: _Tx) -> int:
            _notify_head(db, route_id)
            return db.run(
                "UPDATE messages SET status = 'skipped', skip_reason = %s, session = %s, processed_at = %s, "
                "lease_expires = NULL WHERE route_id = %s AND status NOT IN ('done', 'skipped') "
                "AND source_msg_id = ANY(%s::bigint[])",
                (reason, session, db.now(), route_id, list(source_ids)),
            )

        return self._run(work)

    def hand_back(self, route_id: int, session: str, refused: Sequence[int] = (), doubtful: Sequence[int] = ()) -> int:
        def work(db: _Tx) -> int:
            _notify_head(db, route_id)
            if refused:
                db.run(
                    f"UPDATE messages SET {UNMARKED} WHERE route_id = %s "
                    "AND session = %s AND status = 'processing' AND source_msg_id = ANY(%s::bigint[])",
                    (route_id, session, list(refused)),
                )
            handed = db.run(
                "UPDATE messages SET status = 'pending', session = NULL, lease_expires = NULL "
                "WHERE route_id = %s AND session = %s AND status = 'processing' "
                f"AND ({NOT_SENDING_HERE} OR source_msg_id = ANY(%s::bigint[]))",
                (route_id, session, list(doubtful)),
            )
            db.run("UPDATE sessions SET last_seen = %s WHERE name = %s", (db.now(), session))
            return handed

        return self._run(work)

    def release(self, session: str, *, route_id: int | None = None, only_unsent: bool = False) -> int:
        conditions = ["session = %s", "status = 'processing'"]
        params: list[object] = [session]
        if route_id is not None:
            conditions.append("route_id = %s")
            params.append(route_id)
        if only_unsent:
            conditions.append(NOT_SENDING_HERE)

        def work(db: _Tx) -> int:
            rows = db.all(
                "UPDATE messages SET status = 'pending', session = NULL, lease_expires = NULL "
                f"WHERE {' AND '.join(conditions)} RETURNING route_id",
                params,
            )
            for moved in {int(row["route_id"]) for row in rows}:
                _notify_head(db, moved)
            return len(rows)

        return self._run(work)

    def retry(self, route_id: int | None = None, source_ids: Sequence[int] | None = None) -> int:
        conditions, params = _requeue_filter("failed", route_id, source_ids)
        return self._run(
            lambda db: db.run(
                "UPDATE messages SET status = 'pending', attempts = 0, not_before = NULL, session = NULL "
                f"WHERE {' AND '.join(conditions)}",
                params,
            )
        )

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
            conditions.append("skip_reason = ANY(%s::text[])")
            params.append(list(reasons))
        if exclude:
            conditions.append("NOT (COALESCE(skip_reason, '') = ANY(%s::text[]))")
            params.append(list(exclude))

        def work(db: _Tx) -> dict[str, int]:
            # As if never tried: no attempts, no send marks (nothing was sent), the same random_id. The
            # reasons are read from the rows the update changed, so the counts are exactly what it requeued.
            rows = db.all(
                "WITH old AS (SELECT route_id, source_msg_id, skip_reason FROM messages "
                f"WHERE {' AND '.join(conditions)} FOR UPDATE) "
                "UPDATE messages m SET status = 'pending', skip_reason = NULL, attempts = 0, not_before = NULL, "
                f"session = NULL, claimed_at = NULL, lease_expires = NULL, {UNMARKED}, "
                "last_error = NULL, target_msg_id = NULL, processed_at = NULL FROM old "
                "WHERE m.route_id = old.route_id AND m.source_msg_id = old.source_msg_id "
                "RETURNING old.skip_reason AS reason",
                params,
            )
            counts: dict[str, int] = {}
            for row in rows:
                counts[str(row["reason"] or "")] = counts.get(str(row["reason"] or ""), 0) + 1
            return counts

        return self._run(work)

    def low_water_mark(self, route_id: int) -> int | None:
        row = self._run(
            lambda db: db.one(
                "SELECT MIN(source_msg_id) AS low FROM messages "
                "WHERE route_id = %s AND status IN ('pending', 'processing', 'failed')",
                (route_id,),
            ),
            write=False,
        )
        return None if row["low"] is None else int(row["low"])

    def mapped_targets(self, route_id: int, target_ids: Sequence[int]) -> set[int]:
        if not target_ids:
            return set()
        # Every route into the same target chat counts: its copies are not this route's to adopt.
        rows = self._run(
            lambda db: db.all(
                "SELECT target_msg_id FROM messages WHERE route_id IN (SELECT id FROM routes WHERE target_chat = "
                "(SELECT target_chat FROM routes WHERE id = %s)) AND target_msg_id = ANY(%s::bigint[])",
                (route_id, list(target_ids)),
            ),
            write=False,
        )
        return {int(row["target_msg_id"]) for row in rows}

    def route_counts(self, route_id: int) -> tuple[int, int]:
        row = self._run(
            # From the counters and the open and skipped rows' indexes: a progress line must not read the history.
            lambda db: db.one(
                "SELECT (SELECT COALESCE(SUM(done), 0)::bigint FROM done_counts WHERE route_id = %(route)s) "
                "+ (SELECT COUNT(*) FROM messages WHERE route_id = %(route)s AND status = 'skipped') AS finished, "
                "(SELECT COUNT(*) FROM messages WHERE route_id = %(route)s "
                "AND status IN ('pending', 'processing', 'failed')) AS open",
                {"route": route_id},
            ),
            write=False,
        )
        return int(row["finished"]), int(row["finished"] + row["open"])

    def head(self, route_id: int, topic: TopicFilter = ANY_TOPIC) -> Head | None:
        in_topic = "" if topic is ANY_TOPIC else _in_topic(topic)
        rows = self._statement(  # one statement: one snapshot, as the read-only transaction gave
            f"WITH {_CLOCK} SELECT source_msg_id, {_CLAIMABLE_NOW.replace('%(now)s', 'clock.now')} AS claimable, "
            "CASE status WHEN 'processing' THEN session END AS holder "
            f"FROM messages, clock WHERE route_id = %(route)s{in_topic} AND status IN ('pending', 'processing') "
            "ORDER BY source_msg_id LIMIT 1",
            {"route": route_id, "topic": topic},
        )
        return _head(rows)

    def open_item(self, route_id: int, source_msg_id: int) -> Head | None:
        rows = self._statement(
            f"WITH {_CLOCK} SELECT source_msg_id, {_CLAIMABLE_NOW.replace('%(now)s', 'clock.now')} AS claimable, "
            "CASE status WHEN 'processing' THEN session END AS holder FROM messages, clock "
            "WHERE route_id = %(route)s AND source_msg_id = %(id)s AND status IN ('pending', 'processing')",
            {"route": route_id, "id": source_msg_id},
        )
        return _head(rows)

    def target_ids(self, route_id: int, source_ids: Sequence[int]) -> dict[int, int]:
        if not source_ids:
            return {}
        rows = self._run(
            lambda db: db.all(
                "SELECT source_msg_id, target_msg_id FROM messages WHERE route_id = %s AND status = 'done' "
                "AND target_msg_id IS NOT NULL AND source_msg_id = ANY(%s::bigint[])",
                (route_id, list(source_ids)),
            ),
            write=False,
        )
        return {int(row["source_msg_id"]): int(row["target_msg_id"]) for row in rows}

    # ---- source edits and deletes -------------------------------------------------------------

    def copied_ids(self, route_id: int) -> list[int]:
        rows = self._run(
            lambda db: db.all(
                "SELECT source_msg_id FROM messages WHERE route_id = %s AND status = 'done' "
                "AND target_msg_id IS NOT NULL ORDER BY source_msg_id",
                (route_id,),
            ),
            write=False,
        )
        return [int(row["source_msg_id"]) for row in rows]

    def enqueue_edits(self, route_id: int, edits: Mapping[int, int | None]) -> int:
        return self._run(lambda db: self._enqueue_edits(db, route_id, edits))

    def _enqueue_edits(self, db: _Tx, route_id: int, edits: Mapping[int, int | None]) -> int:
        # Edits and deletes of one route are recorded one transaction at a time (as SQLite does): an edit
        # must see a delete recorded a moment ago, never slip in beside it.
        db.run("SELECT pg_advisory_xact_lock(%s, %s)", (_CHANGES_LOCK, route_id))
        changed = 0
        now = db.now()
        for msg_id, date in edits.items():
            # An open edit takes the later edit_date (and is applied once more if it is being applied now);
            # a done or failed one reopens for an edit as late or later; a recorded delete makes edits moot.
            changed += db.run(
                "INSERT INTO changes (route_id, source_msg_id, kind, edit_date, updated_at) "
                "SELECT %(route)s, %(msg)s, 'edit', %(date)s::bigint, %(now)s WHERE NOT EXISTS (SELECT 1 FROM "
                "changes WHERE route_id = %(route)s AND source_msg_id = %(msg)s AND kind = 'delete') "
                "ON CONFLICT (route_id, source_msg_id, kind) DO UPDATE SET "
                "edit_date = GREATEST(COALESCE(changes.edit_date, 0), COALESCE(excluded.edit_date, 0)), "
                "status = 'pending', holder = NULL, lease_expires = NULL, not_before = NULL, last_error = NULL, "
                "note = NULL, "
                "attempts = CASE WHEN changes.status IN ('pending', 'processing') THEN changes.attempts ELSE 0 END, "
                "updated_at = excluded.updated_at "
                "WHERE changes.status IN ('pending', 'processing') "
                "OR COALESCE(excluded.edit_date, 0) >= COALESCE(changes.edit_date, 0)",
                {"route": route_id, "msg": msg_id, "date": date, "now": now},
            )
        return changed

    def enqueue_stale_edits(self, route_id: int, edits: Mapping[int, int], slack: float) -> int:
        if not edits:
            return 0

        def work(db: _Tx) -> int:
            db.run("SELECT pg_advisory_xact_lock(%s, %s)", (_CHANGES_LOCK, route_id))
            stale: dict[int, int | None] = {}
            for row in db.all(
                "SELECT m.source_msg_id, m.claimed_at, c.edit_date AS recorded FROM messages m "
                "LEFT JOIN changes c ON c.route_id = m.route_id AND c.source_msg_id = m.source_msg_id "
                "AND c.kind = 'edit' WHERE m.route_id = %s AND m.status = 'done' "
                "AND m.target_msg_id IS NOT NULL AND m.source_msg_id = ANY(%s::bigint[])",
                (route_id, list(edits)),
            ):
                edit_date = edits[int(row["source_msg_id"])]
                recorded = row["recorded"]
                # without a recorded edit: edited after the copy's fetch could have read it
                newer = edit_date > recorded if recorded is not None else edit_date >= (row["claimed_at"] or 0) - slack
                if newer:
                    stale[int(row["source_msg_id"])] = edit_date
            return self._enqueue_edits(db, route_id, stale)

        return self._run(work)

    def enqueue_deletes(self, route_id: int, source_ids: Sequence[int]) -> int:
        def work(db: _Tx) -> int:
            db.run("SELECT pg_advisory_xact_lock(%s, %s)", (_CHANGES_LOCK, route_id))
            now = db.now()
            added = db.run(
                "INSERT INTO changes (route_id, source_msg_id, kind, updated_at) "
                "SELECT %s, s, 'delete', %s FROM unnest(%s::bigint[]) AS u(s) "
                "ON CONFLICT (route_id, source_msg_id, kind) DO NOTHING",
                (route_id, now, list(source_ids)),
            )
            db.run(
                "UPDATE changes SET status = 'done', note = 'deleted', holder = NULL, lease_expires = NULL, "
                "updated_at = %s WHERE route_id = %s AND source_msg_id = ANY(%s::bigint[]) AND kind = 'edit' "
                "AND status IN ('pending', 'processing', 'failed')",
                (now, route_id, list(source_ids)),
            )
            return added

        return self._run(work)

    def claim_changes(
        self, route_id: int, session: str, user_id: int, limit: int, lease_seconds: float
    ) -> list[ChangeItem]:
        def work(db: _Tx) -> list[ChangeItem]:
            now = db.now()
            chosen: list[ChangeItem] = []
            rows = db.all(
                "SELECT c.source_msg_id, c.kind, c.edit_date, c.author_user_id, c.attempts, c.status, "
                "m.status AS copy_status, m.target_msg_id, m.random_id, "
                "(SELECT s.user_id FROM sessions s WHERE s.name = COALESCE(m.send_session, m.session)) AS copier "
                "FROM changes c LEFT JOIN messages m ON m.route_id = c.route_id "
                "AND m.source_msg_id = c.source_msg_id WHERE c.route_id = %(route)s "
                "AND ((c.status = 'pending' AND (c.not_before IS NULL OR c.not_before <= %(now)s)) "
                "OR (c.status = 'processing' AND c.lease_expires < %(now)s)) "
                "ORDER BY c.source_msg_id, c.kind FOR UPDATE OF c SKIP LOCKED",
                {"route": route_id, "now": now},
            )
            for row in rows:
                key = (route_id, row["source_msg_id"], row["kind"])
                if row["copy_status"] in (None, "skipped") or (
                    row["copy_status"] == "done" and row["target_msg_id"] is None
                ):
                    # No copy exists, and a message copied later reads the source as it is then.
                    db.run(
                        "UPDATE changes SET status = 'done', note = 'not_copied', holder = NULL, "
                        "lease_expires = NULL, updated_at = %s WHERE route_id = %s AND source_msg_id = %s "
                        "AND kind = %s",
                        (now, *key),
                    )
                    continue
                if row["copy_status"] != "done":
                    continue  # being copied: the change waits for the copy
                author = row["author_user_id"] if row["author_user_id"] is not None else row["copier"]
                if author is not None and row["author_user_id"] is None:
                    db.run(
                        "UPDATE changes SET author_user_id = %s WHERE route_id = %s AND source_msg_id = %s "
                        "AND kind = %s",
                        (author, *key),
                    )
                if author != user_id or len(chosen) >= limit:
                    continue
                db.run(
                    "UPDATE changes SET status = 'processing', holder = %s, lease_expires = %s, "
                    "attempts = attempts + (CASE WHEN status = 'processing' THEN 1 ELSE 0 END), updated_at = %s "
                    "WHERE route_id = %s AND source_msg_id = %s AND kind = %s",
                    (session, now + lease_seconds, now, *key),
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

        return self._run(work)

    def finish_change(self, route_id: int, source_msg_id: int, kind: ChangeKind, session: str, note: str = "") -> bool:
        changed = self._run(
            lambda db: db.run(
                "UPDATE changes SET status = 'done', note = %s, holder = NULL, lease_expires = NULL, "
                "last_error = NULL, updated_at = %s WHERE route_id = %s AND source_msg_id = %s AND kind = %s "
                "AND holder = %s AND status = 'processing'",
                (note or None, db.now(), route_id, source_msg_id, kind, session),
            )
        )
        return changed > 0

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
        def work(db: _Tx) -> None:
            now = db.now()
            db.run(
                "UPDATE changes SET attempts = attempts + 1, last_error = %(error)s, holder = NULL, "
                "lease_expires = NULL, "
                "status = CASE WHEN %(again)s AND attempts + 1 < %(max)s THEN 'pending' ELSE 'failed' END, "
                "not_before = CASE WHEN %(again)s AND attempts + 1 < %(max)s THEN %(later)s::float8 END, "
                "updated_at = %(now)s WHERE route_id = %(route)s AND source_msg_id = %(msg)s AND kind = %(kind)s "
                "AND holder = %(session)s AND status = 'processing'",
                {
                    "error": error[:1000],
                    "again": retryable,
                    "max": max_attempts,
                    "later": now + backoff_seconds,
                    "now": now,
                    "route": route_id,
                    "msg": source_msg_id,
                    "kind": kind,
                    "session": session,
                },
            )

        self._run(work)

    def reassign_change(self, route_id: int, source_msg_id: int, kind: ChangeKind, author_user_id: int) -> None:
        self._run(
            lambda db: db.run(
                "UPDATE changes SET author_user_id = %s, status = 'pending', holder = NULL, lease_expires = NULL, "
                "updated_at = %s WHERE route_id = %s AND source_msg_id = %s AND kind = %s",
                (author_user_id, db.now(), route_id, source_msg_id, kind),
            )
        )

    def change_counts(self, route_id: int | None = None) -> dict[str, int]:
        counts = dict.fromkeys(("pending", "processing", "done", "failed"), 0)
        rows = self._run(
            lambda db: db.all(
                "SELECT status, COUNT(*) AS n FROM changes WHERE %s::bigint IS NULL OR route_id = %s GROUP BY status",
                (route_id, route_id),
            ),
            write=False,
        )
        for row in rows:
            counts[str(row["status"])] = int(row["n"])
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
        def work(db: _Tx) -> TopicClaim:
            now = db.now()
            # An empty row first, so that two sessions asking at once queue on its lock and the second
            # sees the first one's claim (a row that does not exist yet cannot be locked).
            db.run(
                "INSERT INTO topics (route_id, source_topic_id, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (route_id, source_topic_id) DO NOTHING",
                (route_id, source_topic_id, now),
            )
            row = db.one(
                "SELECT * FROM topics WHERE route_id = %s AND source_topic_id = %s FOR UPDATE",
                (route_id, source_topic_id),
            )
            if row["target_topic_id"] is not None:
                return TopicClaim("mapped", int(row["target_topic_id"]))
            if row["holder"] is not None and row["holder"] != session and (row["lease_expires"] or 0) >= now:
                return TopicClaim("wait", holder=row["holder"])
            random_id = row["random_id"] or _new_random_id()
            previous = row["creator_user_id"]
            db.run(
                "UPDATE topics SET title = %s, holder = %s, lease_expires = %s, updated_at = %s, random_id = %s, "
                "creator_user_id = COALESCE(%s, creator_user_id) WHERE route_id = %s AND source_topic_id = %s",
                (title, session, now + lease_seconds, now, random_id, user_id, route_id, source_topic_id),
            )
            return TopicClaim(
                "create",
                holder=session,
                random_id=int(random_id),
                previous_creator=int(previous) if previous is not None else None,
            )

        return self._run(work)

    def forget_topic(self, route_id: int, source_topic_id: int, target_topic_id: int) -> bool:
        changed = self._run(
            lambda db: db.run(
                "UPDATE topics SET target_topic_id = NULL, random_id = NULL, creator_user_id = NULL, "
                "holder = NULL, lease_expires = NULL, updated_at = %s WHERE route_id = %s "
                "AND source_topic_id = %s AND target_topic_id = %s",
                (db.now(), route_id, source_topic_id, target_topic_id),
            )
        )
        return changed > 0

    def complete_topic(self, route_id: int, source_topic_id: int, target_topic_id: int, title: str) -> None:
        self._run(
            lambda db: db.run(
                "INSERT INTO topics (route_id, source_topic_id, target_topic_id, title, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (route_id, source_topic_id) DO UPDATE SET "
                "target_topic_id = excluded.target_topic_id, title = excluded.title, holder = NULL, "
                "lease_expires = NULL, updated_at = excluded.updated_at",
                (route_id, source_topic_id, target_topic_id, title, db.now()),
            )
        )

    def topic_title(self, route_id: int, source_topic_id: int) -> str | None:
        row = self._run(
            lambda db: db.first(
                "SELECT title FROM topics WHERE route_id = %s AND source_topic_id = %s",
                (route_id, source_topic_id),
            ),
            write=False,
        )
        return None if row is None else str(row["title"])

    def topic_map(self, route_id: int) -> dict[int, int]:
        rows = self._run(
            lambda db: db.all(
                "SELECT source_topic_id, target_topic_id FROM topics "
                "WHERE route_id = %s AND target_topic_id IS NOT NULL",
                (route_id,),
            ),
            write=False,
        )
        return {int(row["source_topic_id"]): int(row["target_topic_id"]) for row in rows}

    def bind_route(self, route_id: int, user_id: int) -> int:
        def work(db: _Tx) -> int:
            db.run("UPDATE routes SET bound_user_id = %s WHERE id = %s AND bound_user_id IS NULL", (user_id, route_id))
            return int(db.one("SELECT bound_user_id FROM routes WHERE id = %s", (route_id,))["bound_user_id"])

        return self._run(work)

    def sessions_of_user(self, user_id: int) -> list[str]:
        rows = self._run(
            lambda db: db.all("SELECT name FROM sessions WHERE user_id = %s ORDER BY name", (user_id,)), write=False
        )
        return [str(row["name"]) for row in rows]

    # ---- sessions ---------------------------------------------------------------------------

    def register_session(self, name: str, host: str, pid: int, user_id: int | None = None) -> None:
        # A session name has one live process (the caller checks): whatever the name still holds
        # belongs to a dead incarnation, and its heartbeats would otherwise keep those leases forever.
        def work(db: _Tx) -> None:
            now = db.now()
            for row in db.all(
                "WITH freed AS (UPDATE messages SET status = 'pending', session = NULL, lease_expires = NULL, "
                "attempts = attempts + 1 WHERE session = %s AND status = 'processing' RETURNING route_id) "
                "SELECT DISTINCT route_id FROM freed",
                (name,),
            ):
                _notify_head(db, int(row["route_id"]))
            db.run("UPDATE topics SET holder = NULL, lease_expires = NULL WHERE holder = %s", (name,))
            db.run(
                "INSERT INTO sessions (name, host, pid, user_id, started_at, last_seen, state, detail, wait_until) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'running', '', NULL) ON CONFLICT (name) DO UPDATE SET "
                "host = excluded.host, pid = excluded.pid, user_id = COALESCE(excluded.user_id, sessions.user_id), "
                "started_at = excluded.started_at, last_seen = excluded.last_seen, state = 'running', "
                "detail = '', wait_until = NULL, link_down_since = NULL, bytes_down = 0, bytes_up = 0",
                (name, host, pid, user_id, now, now),
            )

        self._run(work)

    def others_alive(self, session: str, within: float) -> int:
        row = self._run(
            lambda db: db.one(
                "SELECT COUNT(*) AS n FROM sessions WHERE name != %s AND state IN ('running', 'flood_wait') "
                "AND last_seen >= %s",
                (session, db.now() - within),
            ),
            write=False,
        )
        return int(row["n"])

    def session_user_ids(self) -> set[int]:
        rows = self._run(
            lambda db: db.all("SELECT DISTINCT user_id FROM sessions WHERE user_id IS NOT NULL"), write=False
        )
        return {int(row["user_id"]) for row in rows}

    def session_user_id(self, name: str) -> int | None:
        row = self._run(lambda db: db.first("SELECT user_id FROM sessions WHERE name = %s", (name,)), write=False)
        return None if row is None or row["user_id"] is None else int(row["user_id"])

    def session_process(self, name: str) -> tuple[str, int, str] | None:
        """The host, pid and state the session's last start registered, or None if it never ran."""
        row = self._run(
            lambda db: db.first("SELECT host, pid, state FROM sessions WHERE name = %s", (name,)), write=False
        )
        return None if row is None else (str(row["host"]), int(row["pid"]), str(row["state"]))

    def set_session_state(
        self, name: str, state: SessionState, detail: str = "", wait_until: float | None = None
    ) -> None:
        self._run(
            lambda db: db.run(
                "UPDATE sessions SET state = %s, detail = %s, wait_until = %s, last_seen = %s WHERE name = %s",
                (state, detail, wait_until, db.now(), name),
            )
        )

    def record_flood_wait(self, session: str, method: str, seconds: float) -> None:
        self._run(
            lambda db: db.run(
                "INSERT INTO flood_waits (session, method, waits, seconds, last_at) VALUES (%s, %s, 1, %s, %s) "
                "ON CONFLICT (session, method) DO UPDATE SET waits = flood_waits.waits + 1, "
                "seconds = flood_waits.seconds + excluded.seconds, last_at = excluded.last_at",
                (session, method, seconds, db.now()),
            )
        )

    def save_pace(self, user_id: int, pace: Pace) -> None:
        self._run(lambda db: db.run(_SAVE_PACE, (user_id, *_pace_values(pace))))

    def paces(self, user_id: int) -> list[Pace]:
        return self._run(
            lambda db: [
                Pace.from_row(r) for r in db.all("SELECT * FROM paces WHERE user_id = %s ORDER BY grp", (user_id,))
            ]
        )

    # ---- reporting --------------------------------------------------------------------------

    def report(self, failures: int = 10, skipped_ids: int = 5) -> StatusReport:
        def work(db: _Tx) -> StatusReport:
            now = db.now()
            routes = [Route.from_row(row) for row in db.all("SELECT * FROM routes ORDER BY id")]
            reports = [_route_report(db, route, now, skipped_ids) for route in routes]
            floods: dict[str, list[FloodTotal]] = {}
            for row in db.all("SELECT * FROM flood_waits ORDER BY session, method"):
                floods.setdefault(row["session"], []).append(FloodTotal(row["method"], row["waits"], row["seconds"]))
            paces: dict[int, list[Pace]] = {}
            for row in db.all("SELECT * FROM paces ORDER BY user_id, grp"):
                paces.setdefault(row["user_id"], []).append(Pace.from_row(row))
            sessions = [
                SessionInfo.from_row(row, floods.get(row["name"], []), paces.get(row["user_id"], []))
                for row in db.all(
                    # Totals from the counters, the last 5 minutes from the time index: never the whole history.
                    """SELECT s.*,
                         (SELECT COALESCE(SUM(c.done), 0)::bigint FROM done_counts c WHERE c.session = s.name)
                            AS done_total,
                         (SELECT COUNT(*) FROM messages m WHERE m.processed_at >= %s AND m.session = s.name
                            AND m.status = 'done') AS done_recent
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
                for row in db.all(
                    "SELECT * FROM messages WHERE last_error IS NOT NULL AND status IN ('failed', 'pending') "
                    "ORDER BY processed_at DESC NULLS LAST LIMIT %s",
                    (failures,),
                )
            ]
            return StatusReport(self.where, now, reports, sessions, latest_failures)

        return self._run(work, write=False)

    # ---- verify and adopt (telepi verify) ---------------------------------------------------

    def ledger(self, route_id: int) -> dict[int, tuple[str, int | None]]:
        rows = self._run(
            lambda db: db.all(
                "SELECT source_msg_id, CASE WHEN status = 'skipped' AND skip_reason = ANY(%s) THEN 'review' "
                "ELSE status END AS status, target_msg_id FROM messages WHERE route_id = %s",
                (list(REVIEW_REASONS), route_id),
            ),
            write=False,
        )
        return {
            int(row["source_msg_id"]): (
                str(row["status"]),
                None if row["target_msg_id"] is None else int(row["target_msg_id"]),
            )
            for row in rows
        }

    def sending_count(self, route_id: int) -> int:
        row = self._run(
            lambda db: db.one(
                # Every route into the same target chat, as in the SQLite store (a copy another route is
                # sending is in the target unrecorded too).
                "SELECT COUNT(*) AS n FROM messages WHERE route_id IN (SELECT id FROM routes WHERE target_chat = "
                "(SELECT target_chat FROM routes WHERE id = %s)) AND send_started_at IS NOT NULL "
                "AND status NOT IN ('done', 'skipped')",
                (route_id,),
            ),
            write=False,
        )
        return int(row["n"])

    def adopt(
        self, route_id: int, copies: Sequence[tuple[NewItem, int]], review: Sequence[NewItem], through: int
    ) -> int:
        def work(db: _Tx) -> int:
            now = db.now()
            adopted = 0
            for item, target in copies:
                adopted += db.run(
                    "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at, "
                    "status, session, target_msg_id, processed_at) VALUES (%s, %s, %s, %s, %s, %s, 'done', 'verify', "
                    "%s, %s) ON CONFLICT (route_id, source_msg_id) DO UPDATE SET status = 'done', session = 'verify', "
                    "target_msg_id = excluded.target_msg_id, processed_at = excluded.processed_at, "
                    "lease_expires = NULL, skip_reason = NULL WHERE messages.status NOT IN ('done', 'processing')",
                    (route_id, item.source_msg_id, item.grouped_id, item.topic_id, _new_random_id(), now, target, now),
                )
            # Doubtful matches are never guessed: held back as skipped until a person looks
            # (telepi retry --skipped adopt_review sends them).
            for item in review:
                db.run(
                    "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at, "
                    "status, skip_reason, session, processed_at) VALUES (%s, %s, %s, %s, %s, %s, 'skipped', "
                    "'adopt_review', 'verify', %s) ON CONFLICT (route_id, source_msg_id) DO UPDATE SET "
                    "status = 'skipped', skip_reason = 'adopt_review', processed_at = excluded.processed_at, "
                    "lease_expires = NULL WHERE messages.status IN ('pending', 'failed')",
                    (route_id, item.source_msg_id, item.grouped_id, item.topic_id, _new_random_id(), now, now),
                )
            db.run(
                "UPDATE routes SET adopted_through = GREATEST(COALESCE(adopted_through, 0), %s) WHERE id = %s",
                (through, route_id),
            )
            return adopted

        return self._run(work)

    def requeue_missing(self, route_id: int, items: Sequence[NewItem]) -> int:
        def work(db: _Tx) -> int:
            now = db.now()
            changed = 0
            # A new random_id: the lost copy's one may still be remembered by Telegram and the resend dropped.
            for item in items:
                changed += db.run(
                    "INSERT INTO messages (route_id, source_msg_id, grouped_id, topic_id, random_id, enqueued_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (route_id, source_msg_id) DO UPDATE SET "
                    "status = 'pending', random_id = excluded.random_id, target_msg_id = NULL, attempts = 0, "
                    f"not_before = NULL, session = NULL, lease_expires = NULL, {UNMARKED}, "
                    "skip_reason = NULL, last_error = NULL, processed_at = NULL "
                    "WHERE messages.status != 'processing'",
                    (route_id, item.source_msg_id, item.grouped_id, item.topic_id, _new_random_id(), now),
                )
            return changed

        return self._run(work)


def _bigints(values: Iterable[int | None]) -> str:
    """An array parameter as PostgreSQL's text literal, cast in the SQL (``::bigint[]``): psycopg would look
    at every element of a list to choose its type, a third of a cycle's client CPU."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _notify_head(db: _Tx, route_id: int) -> None:
    """Wake the sessions waiting on this route's head (wait_head) when this transaction commits."""
    db.run("SELECT pg_notify(%s, %s)", (_HEAD, str(route_id)))


def _route_report(db: _Tx, route: Route, now: float, skipped_ids: int) -> RouteReport:
    # Open rows counted from their own index, skipped ones from theirs, done ones from the counters.
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for row in db.all(
        "SELECT status, COUNT(*) AS n FROM messages WHERE route_id = %s "
        "AND status IN ('pending', 'processing', 'failed') GROUP BY status",
        (route.id,),
    ):
        counts[row["status"]] = int(row["n"])
    counts["done"] = int(
        db.one("SELECT COALESCE(SUM(done), 0)::bigint AS n FROM done_counts WHERE route_id = %s", (route.id,))["n"]
    )
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
        for row in db.all(
            "SELECT * FROM messages WHERE route_id = %s AND status = 'processing' ORDER BY source_msg_id",
            (route.id,),
        )
    ]
    open_rows = db.one(
        "SELECT MIN(source_msg_id) AS low, MIN(enqueued_at) FILTER (WHERE status != 'failed') AS oldest "
        "FROM messages WHERE route_id = %s AND status IN ('pending', 'processing', 'failed')",
        (route.id,),
    )
    recent = db.one(
        "SELECT COUNT(*) AS n FROM messages WHERE processed_at >= %s AND route_id = %s AND status = 'done'",
        (now - 300, route.id),
    )["n"]
    return RouteReport(
        route=route,
        counts=counts,
        low_water=open_rows["low"],
        oldest_open_at=open_rows["oldest"],
        done_last_5min=int(recent),
        leases=[lease for lease in leases if lease.expires_in >= 0],
        expired=[lease for lease in leases if lease.expires_in < 0],
        skipped=skipped,
    )


def _skipped(db: _Tx, route_id: int, latest: int) -> list[Skipped]:
    """Skipped rows of a route by reason, read from the skipped rows' own index (never the done history)."""
    found = []
    for group in db.all(
        "SELECT skip_reason, COUNT(*) AS n FROM messages WHERE route_id = %s AND status = 'skipped' "
        "GROUP BY skip_reason",
        (route_id,),
    ):
        ids = db.all(
            "SELECT source_msg_id FROM messages WHERE route_id = %s AND status = 'skipped' "
            "AND skip_reason IS NOT DISTINCT FROM %s "
            "ORDER BY processed_at DESC NULLS LAST, source_msg_id DESC LIMIT %s",
            (route_id, group["skip_reason"], latest),
        )
        found.append(Skipped(str(group["skip_reason"] or ""), int(group["n"]), [int(r["source_msg_id"]) for r in ids]))
    return sorted(found, key=lambda s: (-s.count, s.reason))


def _requeue_filter(
    status: str, route_id: int | None, source_ids: Sequence[int] | None
) -> tuple[list[str], list[object]]:
    """WHERE conditions and parameters for rows of ``status``, of one route and/or some ids."""
    conditions = [f"status = '{status}'"]
    params: list[object] = []
    if route_id is not None:
        conditions.append("route_id = %s")
        params.append(route_id)
    if source_ids is not None:
        conditions.append("source_msg_id = ANY(%s::bigint[])")
        params.append(list(source_ids))
    return conditions, params


_SAVE_PACE = (
    "INSERT INTO paces (user_id, grp, calls, period, learned_at, reason, session, wait_until) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, grp) DO UPDATE SET calls = excluded.calls, "
    "period = excluded.period, learned_at = excluded.learned_at, reason = excluded.reason, "
    "session = excluded.session, wait_until = excluded.wait_until"
)


def _pace_values(pace: Pace) -> tuple[object, ...]:
    return (pace.group, pace.calls, pace.period, pace.learned_at, pace.reason, pace.session, pace.wait_until)


# The default claim as one statement (``claim`` without ``topic_run``), the same decisions as the loop in
# ``claim``'s ORDERED=topic path: the lowest ``limit`` claimable rows, skipping rows another claim is
# locking right now (SKIP LOCKED); an album is one unit, leased whole with every claimable member (locked,
# wherever they are) or not at all when another claim holds part of it right now; units are taken in order
# while fewer than ``limit`` rows are chosen (an album may end over the limit, as in the SQLite store).
_CLAIM = f"""
WITH {_CLOCK},
cand AS MATERIALIZED (
    SELECT source_msg_id, grouped_id FROM messages, clock WHERE {_CLAIMABLE_AT_CLOCK}{{below}}
    ORDER BY source_msg_id LIMIT GREATEST(%(limit)s, 1) FOR UPDATE OF messages SKIP LOCKED
),
members AS MATERIALIZED (
    SELECT k.source_msg_id, k.grouped_id FROM (SELECT DISTINCT grouped_id FROM cand WHERE grouped_id IS NOT NULL) g
    CROSS JOIN LATERAL (
        SELECT source_msg_id, grouped_id FROM messages, clock WHERE {_CLAIMABLE_AT_CLOCK}
        AND grouped_id = g.grouped_id FOR UPDATE OF messages SKIP LOCKED
    ) k
),
units AS (
    SELECT MIN(source_msg_id) AS first, grouped_id FROM cand
    GROUP BY grouped_id, CASE WHEN grouped_id IS NULL THEN source_msg_id END
),
sized AS (
    SELECT u.first, u.grouped_id, CASE
        WHEN u.grouped_id IS NULL THEN 1
        WHEN (SELECT COUNT(*) FROM members k WHERE k.grouped_id = u.grouped_id)
            >= (SELECT COUNT(*) FROM messages, clock WHERE {_CLAIMABLE_AT_CLOCK} AND grouped_id = u.grouped_id)
        THEN (SELECT COUNT(*) FROM members k WHERE k.grouped_id = u.grouped_id)
        ELSE 0 END AS size
    FROM units u
),
taken AS (
    SELECT first, grouped_id FROM (
        SELECT first, grouped_id, size,
            COALESCE(SUM(size) OVER (ORDER BY first ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
        FROM sized
    ) s WHERE size > 0 AND before < %(limit)s
),
chosen AS (
    SELECT first AS source_msg_id FROM taken WHERE grouped_id IS NULL
    UNION ALL SELECT k.source_msg_id FROM members k JOIN taken t ON k.grouped_id = t.grouped_id
)
UPDATE messages m SET status = 'processing', session = %(session)s, claimed_at = clock.now,
    lease_expires = clock.now + %(lease)s,
    attempts = m.attempts + (CASE WHEN m.status = 'processing' THEN 1 ELSE 0 END)
FROM clock
WHERE m.route_id = %(route)s AND m.source_msg_id = ANY(ARRAY(SELECT source_msg_id FROM chosen))
    AND (SELECT COUNT(*) FROM cand) >= %(at_least)s
RETURNING m.source_msg_id, m.grouped_id, m.topic_id, m.random_id, m.attempts, m.lease_expires, m.send_session,
    m.send_started_at, m.send_first_at
"""


def _work_item(route_id: int, row: DictRow) -> WorkItem:
    """A claimed row as ``_CLAIM`` returns it: its attempts already count a lease that ran out while
    processing (its holder died)."""
    return WorkItem(
        route_id=route_id,
        source_msg_id=row["source_msg_id"],
        grouped_id=row["grouped_id"],
        topic_id=row["topic_id"],
        random_id=row["random_id"],
        attempts=row["attempts"],
        lease_expires=row["lease_expires"],
        takeover=row["send_started_at"] is not None,
        send_session=row["send_session"],
        send_started_at=row["send_started_at"],
        first_send_at=row["send_first_at"],
    )


def _head(rows: Sequence[DictRow]) -> Head | None:
    if not rows:
        return None
    return Head(int(rows[0]["source_msg_id"]), bool(rows[0]["claimable"]), rows[0]["holder"])


def _in_topic(topic: int | AnyTopic | None) -> str:
    """The SQL that keeps one topic's rows (None: a chat without topics), bound as ``%(topic)s``."""
    return " AND topic_id IS NULL" if topic is None else " AND topic_id = %(topic)s"


def _topic_run(db: _Tx, params: Mapping[str, object], below: str, topic: TopicFilter, limit: int) -> list[DictRow]:
    """ORDERED=topic, as in the SQLite store: the lowest claimable row (of ``topic`` when given) and the open
    rows of its topic after it while claimable. Rows another claim is taking right now (locked) end the
    run like rows another session holds: the run is read first, then locked, and cut at the first row
    that could not be locked or is no longer claimable."""
    in_topic = "" if topic is ANY_TOPIC else _in_topic(topic)
    start = db.first(
        f"SELECT source_msg_id, topic_id FROM messages WHERE {_CLAIMABLE}{below}{in_topic} "
        "ORDER BY source_msg_id LIMIT 1 FOR UPDATE SKIP LOCKED",
        {**params, "topic": topic},
    )
    if start is None:
        return []
    upto = "" if params.get("before") is None else " AND source_msg_id < %(before)s"
    scan = {**params, "topic": start["topic_id"], "start": start["source_msg_id"], "limit": max(limit, 1)}
    rows = db.all(
        f"SELECT source_msg_id, {_CLAIMABLE_NOW} AS claimable FROM messages "
        f"WHERE route_id = %(route)s{_in_topic(start['topic_id'])} AND status IN ('pending', 'processing') "
        f"AND source_msg_id >= %(start)s{upto} ORDER BY source_msg_id LIMIT %(limit)s",
        scan,
    )
    wanted: list[int] = []
    for row in rows:
        if not row["claimable"]:
            break
        wanted.append(int(row["source_msg_id"]))
    locked = {
        int(row["source_msg_id"]): row
        for row in db.all(
            f"SELECT * FROM messages WHERE {_CLAIMABLE} AND source_msg_id = ANY(%(ids)s::bigint[]) "
            "ORDER BY source_msg_id FOR UPDATE SKIP LOCKED",
            {**params, "ids": wanted},
        )
    }
    run: list[DictRow] = []
    for msg_id in wanted:
        if msg_id not in locked:
            break
        run.append(locked[msg_id])
    return run
