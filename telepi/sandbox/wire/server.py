"""The sandbox's MTProto server: a TCP listener on loopback that the unmodified Telethon client talks to
(MTProto 2.0, https://core.telegram.org/mtproto).

It owns the connections (``wire/connection.py``), the persistent auth keys (``wire/keystore.py``), the MTProto
sessions and salts, and routes pushed updates to each account's live connections. What the requests
do is the :class:`~telepi.sandbox.rpc.dispatch.Registry`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import OrderedDict
from hashlib import sha256
from pathlib import Path

from telethon.tl.tlobject import TLObject

from telepi.sandbox.limits.faults import Faults
from telepi.sandbox.rpc.dispatch import Gate, Registry, UpdateSink
from telepi.sandbox.wire.connection import SALT_PERIOD, Connection, Session
from telepi.sandbox.wire.handshake import ServerKey
from telepi.sandbox.wire.keystore import AuthKeyRecord, KeyStore
from telepi.sandbox.wire.protocol import MsgIdClock

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_SESSIONS = 100_000  # remembered (auth key, session id) pairs; the oldest are forgotten first
STREAM_LIMIT = 4 * 1024 * 1024


class SandboxServer:
    """``await start()`` listens on ``host:port`` (port 0 picks a free one); ``await stop()`` ends it.

    ``state_dir`` keeps the RSA key and every auth key with its account, so Telethon session files
    survive a restart. ``faults`` may be changed at any time while the server runs.
    """

    def __init__(
        self,
        registry: Registry,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        dc_id: int = 2,
        server_key: ServerKey | None = None,
        gate: Gate | None = None,
    ) -> None:
        """``server_key`` seeds a new state dir (tests reuse one key instead of generating one each);
        ``gate(method, user_id, auth_key_id)`` may refuse a request before it runs (the account's standing)."""
        if host not in LOOPBACK:
            raise ValueError("the sandbox only listens on loopback")
        self.registry = registry
        self.state_dir = Path(state_dir)
        self.faults = faults if faults is not None else Faults()
        self.gate = gate
        self.dc_id = dc_id
        self.msg_ids = MsgIdClock()
        self.rpc_tasks: set[asyncio.Task[None]] = set()
        self.handshakes = 0  # auth-key exchanges completed since this object was made
        # Where handlers push updates; several DCs share one that pushes from each account's home DC.
        self.fanout: UpdateSink | None = None
        self._host = host
        self._wanted_port = port
        self._port: int | None = None
        self.store = KeyStore(self.state_dir)
        self.server_key = self.store.server_key(server_key)
        self._salt_secret = self.store.salt_secret()
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._connection_tasks: set[asyncio.Task[object]] = set()
        self._sessions: OrderedDict[tuple[int, int], Session] = OrderedDict()
        # Updates go to an auth key's last active connection that is not only for files.
        self._subscribers: dict[int, dict[Connection, Session]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("already started")
        if self.store.closed:
            self.store = KeyStore(self.state_dir)
        self._server = await asyncio.start_server(self._serve, self._host, self._wanted_port, limit=STREAM_LIMIT)
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("sandbox MTProto server listening on %s:%d", self._host, self._port)
        return self._port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._connections):
            conn.abort()
        for task in list(self.rpc_tasks):
            task.cancel()
        pending = [*self._connection_tasks, *self.rpc_tasks]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._sessions.clear()
        self._subscribers.clear()
        if not self.store.closed:
            self.store.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def public_key_pem(self) -> str:
        return self.server_key.public_pem

    def write_public_key(self, path: Path) -> None:
        Path(path).write_text(self.public_key_pem)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = Connection(self, reader, writer)
        self._connections.add(conn)
        self._connection_tasks.add(task)
        try:
            await conn.run()
        finally:
            self._connection_tasks.discard(task)

    # --- for tests -----------------------------------------------------------------------------

    def drop_connections(self, user_id: int | None = None) -> int:
        """Abruptly close every connection, or those of one account; returns how many."""
        victims = [c for c in self._connections if user_id is None or c.user_id == user_id]
        for conn in victims:
            conn.abort()
        return len(victims)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # --- UpdateSink ----------------------------------------------------------------------------

    @property
    def sink(self) -> UpdateSink:
        return self.fanout if self.fanout is not None else self

    def push(self, user_id: int, updates: TLObject, *, except_session: tuple[int, int] | None = None) -> None:
        """Send ``updates`` to the account: on each of its auth keys, to the last active connection
        that asked for updates (as Telegram does), unless that is ``except_session``."""
        data: bytes | None = None
        for key_id in self.store.keys_of(user_id):
            subscribers = self._subscribers.get(key_id)
            if not subscribers:
                continue
            conn, session = next(reversed(subscribers.items()))
            if session.key == except_session or conn.closed:
                continue
            data = data if data is not None else bytes(updates)
            conn.push(session, data)

    def push_to_key(self, auth_key_id: int, updates: TLObject) -> None:
        subscribers = self._subscribers.get(auth_key_id)
        if subscribers:
            conn, session = next(reversed(subscribers.items()))
            if not conn.closed:
                conn.push(session, bytes(updates))

    # --- ConnectionHost ------------------------------------------------------------------------

    def session(self, record: AuthKeyRecord, session_id: int) -> tuple[Session, bool]:
        key = (record.key_id, session_id)
        session = self._sessions.get(key)
        if session is not None:
            self._sessions.move_to_end(key)
            return session, False
        session = self._sessions[key] = Session(record, session_id)
        if len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session, True

    def forget_session(self, auth_key_id: int, session_id: int) -> bool:
        return self._sessions.pop((auth_key_id, session_id), None) is not None

    def salt(self, auth_key_id: int, now: float, offset: int = 0) -> int:
        """The server salt of an auth key for the period containing ``now`` (+ ``offset`` periods).
        Derived from a stored secret, so salts stay valid across restarts."""
        period = int(now) // SALT_PERIOD + offset
        digest = sha256(self._salt_secret + struct.pack("<qq", auth_key_id, period)).digest()
        value: int = struct.unpack("<q", digest[:8])[0]
        return value

    def salt_ok(self, auth_key_id: int, salt: int, now: float) -> bool:
        return salt in (self.salt(auth_key_id, now), self.salt(auth_key_id, now, -1))

    def handshake_done(self, key: bytes) -> AuthKeyRecord:
        self.handshakes += 1
        return self.store.add(key)

    def subscribe(self, conn: Connection, session: Session) -> None:
        subscribers = self._subscribers.setdefault(session.auth_key_id, {})
        subscribers.pop(conn, None)
        subscribers[conn] = session

    def closed(self, conn: Connection) -> None:
        self._connections.discard(conn)
        for key_id in [k for k, subs in self._subscribers.items() if conn in subs]:
            del self._subscribers[key_id][conn]
            if not self._subscribers[key_id]:
                del self._subscribers[key_id]
