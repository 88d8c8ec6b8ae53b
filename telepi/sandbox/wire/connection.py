"""One client TCP connection to the sandbox: transport, handshake, MTProto sessions, RPC dispatch.

Transports: https://core.telegram.org/mtproto/mtproto-transports; sessions, msg_ids, seq_nos, salts and
containers: https://core.telegram.org/mtproto/description and https://core.telegram.org/mtproto/service_messages.

Three tasks per connection: the reader (bytes -> packets, inbound bandwidth), the processor
(decrypts packets in arrival order after the link latency; answers service messages at once and
starts one task per RPC so a slow call never blocks a ping), and the writer (packs queued replies
into containers, assigns msg_ids and seq_nos at send time so they increase on the wire, encrypts,
applies outbound latency and bandwidth).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from telethon.errors import TypeNotFoundError
from telethon.extensions import BinaryReader
from telethon.tl import functions, types
from telethon.tl.alltlobjects import LAYER
from telethon.tl.tlobject import TLObject, TLRequest

from telepi.sandbox.limits.faults import Faults, Throttle
from telepi.sandbox.rpc.dispatch import Gate, Registry, RpcContext, RpcError, UpdateSink, serialize_result
from telepi.sandbox.wire import protocol as proto
from telepi.sandbox.wire.handshake import Handshake, HandshakeError, ServerKey
from telepi.sandbox.wire.keystore import AuthKeyRecord, KeyStore

log = logging.getLogger(__name__)

# The one TL layer the sandbox serves: the schema of the installed Telethon (1.45: 229), whose classes
# read and write every object.
SERVED_LAYER: int = LAYER
DEFAULT_LAYER = SERVED_LAYER
# Client messages are acknowledged with the next reply, or after this long if nothing else goes out.
ACK_DELAY = 0.05
# Replies are packed into one container up to this size / count (Telethon's own limits).
CONTAINER_MAX_BYTES = 1024 * 1024
CONTAINER_MAX_COUNT = 100
READ_CHUNK = 1024 * 1024
# Server salts change every half hour; the previous one stays valid for another period.
SALT_PERIOD = 1800
# Server messages that need no acknowledgment, so their seq_no is even (core.telegram.org/mtproto/description
# #content-related-message): acks, and the BadMsgNotification type (bad_msg_notification, bad_server_salt) about a
# message the server ignored. A client with a wrong clock reads Telegram's time from them: kurigram 2.2 takes it
# from the msg_id of a seq_no-0 message (pyrogram/session/session.py); with an odd seq_no it never syncs and
# fails with error 16 for ever, what Pyrogram users with a wrong clock reported (pyrogram/pyrogram#1347).
_NOT_CONTENT_RELATED = frozenset({proto.MSGS_ACK_ID, proto.BAD_MSG_NOTIFICATION_ID, proto.BAD_SERVER_SALT_ID})
# Transport-level error answered for an auth key the server does not know (Telethon: AuthKeyNotFound).
AUTH_KEY_NOT_FOUND = struct.pack("<i", -404)


class Session:
    """An MTProto session: one (auth key, session id) pair and its outgoing seq_no counter."""

    __slots__ = ("announced", "auth_key", "auth_key_id", "seq", "session_id")

    def __init__(self, record: AuthKeyRecord, session_id: int) -> None:
        self.auth_key_id = record.key_id
        self.auth_key = record.key  # kept: destroy_auth_key's answer is encrypted with the gone key
        self.session_id = session_id
        self.seq = proto.SeqNo()
        self.announced = False  # new_session_created sent: with the first message that was processed

    @property
    def key(self) -> tuple[int, int]:
        return (self.auth_key_id, self.session_id)


class ConnectionHost(Protocol):
    """What a connection needs from the server that owns it."""

    registry: Registry
    faults: Faults
    gate: Gate | None
    store: KeyStore
    server_key: ServerKey
    msg_ids: proto.MsgIdClock
    dc_id: int
    # RPCs keep running when their connection drops (as on Telegram); the server cancels them on stop.
    rpc_tasks: set[asyncio.Task[None]]

    @property
    def sink(self) -> UpdateSink: ...

    def session(self, record: AuthKeyRecord, session_id: int) -> tuple[Session, bool]: ...

    def forget_session(self, auth_key_id: int, session_id: int) -> bool: ...

    def salt(self, auth_key_id: int, now: float, offset: int = 0) -> int: ...

    def salt_ok(self, auth_key_id: int, salt: int, now: float) -> bool: ...

    def handshake_done(self, key: bytes) -> AuthKeyRecord: ...

    def subscribe(self, conn: Connection, session: Session) -> None: ...

    def closed(self, conn: Connection) -> None: ...


@dataclass(slots=True)
class _Outgoing:
    session: Session | None  # None: an unencrypted packet of the auth-key exchange
    body: list[bytes]
    content_related: bool
    response: bool
    due: float

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.body)


@dataclass(slots=True)
class _Unwrapped:
    request: TLObject
    layer: int | None = None
    no_updates: bool = False
    after: tuple[int, ...] = ()


def unwrap(request: TLObject) -> _Unwrapped:
    """Peel invokeWithLayer / initConnection / invokeWithoutUpdates / invokeAfterMsg(s) off a query."""
    out = _Unwrapped(request)
    while True:
        req = out.request
        if isinstance(req, functions.InvokeWithLayerRequest):
            out.layer = req.layer
        elif isinstance(req, functions.InvokeWithoutUpdatesRequest):
            out.no_updates = True
        elif isinstance(req, functions.InvokeAfterMsgRequest):
            out.after += (req.msg_id,)
        elif isinstance(req, functions.InvokeAfterMsgsRequest):
            out.after += tuple(req.msg_ids)
        elif not isinstance(req, functions.InitConnectionRequest):
            return out
        out.request = req.query


def unknown_constructor_error(body: bytes, exc: TypeNotFoundError) -> bytes:
    """Telegram's answer to a constructor outside its schema (core.telegram.org/api/errors, 400).

    In a method's place (the body itself, or the query of invokeWithLayer / initConnection / ...)
    it is ``INPUT_METHOD_INVALID_<id>_<n>``, the id unsigned in decimal, as Telegram sends it
    (e.g. "INPUT_METHOD_INVALID_472471681_289215"; the second number is undocumented, the sandbox
    sends 0); inside a method's arguments ``INPUT_CONSTRUCTOR_INVALID``.
    """
    offset = len(body) - len(exc.remaining)
    if offset == 0 or _parses(body[:offset] + struct.pack("<I", functions.help.GetConfigRequest.CONSTRUCTOR_ID)):
        return proto.rpc_error(400, f"INPUT_METHOD_INVALID_{exc.invalid_constructor_id}_0")
    return proto.rpc_error(400, "INPUT_CONSTRUCTOR_INVALID")


def _parses(body: bytes) -> bool:
    """Whether ``body`` is exactly one TL object (the unknown id swapped for an argument-less method)."""
    try:
        with BinaryReader(body) as reader:
            reader.tgread_object()
            position: int = reader.tell_position()
            return position == len(body)
    except Exception:  # any failure means the swapped id was not in a method's place
        return False


def is_file_request(request: TLObject) -> bool:
    """File transfer calls do not subscribe a connection to updates (as on Telegram)."""
    return type(request).__module__.endswith(".upload")


class Connection:
    """Serves one TCP connection for :class:`~telepi.sandbox.wire.server.SandboxServer` (see module doc)."""

    def __init__(self, host: ConnectionHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._host = host
        self._reader = reader
        self._writer = writer
        self._transport = proto.ServerTransport()
        self._throttle = Throttle(host.faults)
        self._handshake: Handshake | None = None
        self.record: AuthKeyRecord | None = None
        self._loop = asyncio.get_running_loop()
        self._inbound: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._outbound: deque[_Outgoing] = deque()
        self._out_ready = asyncio.Event()
        self._acks: dict[Session, list[int]] = {}
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"

    @property
    def user_id(self) -> int | None:
        return self.record.user_id if self.record is not None else None

    async def run(self) -> None:
        """Serve until the client disconnects or :meth:`abort` is called."""
        self._tasks = [
            self._loop.create_task(self._read_loop()),
            self._loop.create_task(self._process_loop()),
            self._loop.create_task(self._write_loop()),
        ]
        try:
            done, _pending = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None and not isinstance(error, ConnectionError | OSError):
                    log.error("%s: connection failed", self.name, exc_info=error)
        finally:
            self.abort()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._host.closed(self)

    def abort(self) -> None:
        """Close the socket at once, without flushing (like a network failure)."""
        if self.closed:
            return
        self.closed = True
        for timer in (self._ack_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._writer.transport.abort()
        self._out_ready.set()
        for task in self._tasks:
            task.cancel()

    # --- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                return
            wait = self._throttle.delay(len(data), "in", self.user_id)
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                packets = self._transport.feed(data)
            except proto.TransportError as exc:
                log.info("%s: closing on transport error: %s", self.name, exc)
                return
            due = self._loop.time() + self._throttle.latency
            for packet in packets:
                self._inbound.put_nowait((due, packet))

    async def _process_loop(self) -> None:
        while True:
            due, packet = await self._inbound.get()
            delay = due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                self._process_packet(packet)
            except HandshakeError as exc:
                # Close, so Telethon retries the exchange on a clean connection.
                log.info("%s: auth key exchange failed: %s", self.name, exc)
                return
            except (proto.SecurityError, TypeNotFoundError, ValueError, struct.error, OSError, EOFError) as exc:
                log.info("%s: ignoring a malformed packet (%s: %s)", self.name, type(exc).__name__, exc)
            except Exception:
                log.exception("%s: ignoring a packet the server failed to handle", self.name)

    def _process_packet(self, packet: bytes) -> None:
        if len(packet) < 8:
            raise proto.SecurityError("packet too short")
        (key_id,) = struct.unpack_from("<q", packet)
        if key_id == 0:
            self._handle_plain(proto.parse_plain_packet(packet))
            return
        record = self._host.store.get(key_id)
        if record is None:
            # The connection stays open: closing with unread client bytes would send a TCP reset,
            # which can destroy the -404 before Telethon reads it. Telethon disconnects itself.
            log.info("%s: unknown auth key, answering -404", self.name)
            self._send_raw(AUTH_KEY_NOT_FOUND)
            return
        self.record = record
        # On the loop, not in a thread: measured, worker threads made 512 KiB parts no faster (the
        # client shares this process and its GIL) and 128 KiB parts 20% slower.
        plaintext = proto.decrypt_message(record.key, packet)
        envelope = proto.parse_plaintext(plaintext)
        session, _ = self._host.session(record, envelope.session_id)
        message = envelope.message
        now = time.time()
        # A message with a bad msg_id is ignored, not processed, so it creates no session: its
        # bad_msg_notification goes out alone (core.telegram.org/mtproto/service_messages_about_messages).
        # Clients rely on that: Telethon corrects a wrong clock only from a first message that is such a
        # notification, and drops every other message timed by the server's clock as "very old".
        if not self._check_msg_id(session, message, now):
            return
        if not session.announced:
            session.announced = True
            salt = self._host.salt(key_id, now)
            self._enqueue(session, proto.new_session_created(message.msg_id, _random_long(), salt))
        if not self._host.salt_ok(key_id, envelope.salt, now):
            # The client starts with salt 0; it takes the salt from here and resends the message.
            salt = self._host.salt(key_id, now)
            self._enqueue(session, proto.bad_server_salt(message.msg_id, message.seq_no, salt))
            return
        self._dispatch(session, message)

    def _check_msg_id(self, session: Session, message: proto.Message, now: float) -> bool:
        code = proto.check_client_msg_id(message.msg_id, now)
        if code is None:
            return True
        log.info("%s: bad msg_id %d (error %d)", self.name, message.msg_id, code)
        self._enqueue(session, proto.bad_msg_notification(message.msg_id, message.seq_no, code))
        return False

    def _handle_plain(self, message: proto.Message) -> None:
        if self._handshake is None:
            self._handshake = Handshake(self._host.server_key, exponent=self._host.faults.next_dh_exponent)
        with BinaryReader(message.body) as reader:
            request = reader.tgread_object()
        answer = self._handshake.handle(request)
        self._send_raw(proto.plain_packet(self._host.msg_ids.next(response=True), bytes(answer)))
        if self._handshake.auth_key is not None:
            self.record = self._host.handshake_done(self._handshake.auth_key)
            self._handshake = None

    # --- dispatch --------------------------------------------------------------------------

    def _dispatch(self, session: Session, message: proto.Message) -> None:
        constructor = proto.constructor_of(message.body)
        if constructor == proto.MSG_CONTAINER_ID:
            now = time.time()
            for inner in proto.unpack_container(message.body):
                if self._check_msg_id(session, inner, now):
                    self._dispatch(session, inner)
            return
        if constructor == proto.GZIP_PACKED_ID:
            self._dispatch(session, proto.Message(message.msg_id, message.seq_no, proto.unpack_gzip(message.body)))
            return
        if constructor == proto.MSGS_ACK_ID:
            return
        with BinaryReader(message.body) as reader:
            try:
                obj = reader.tgread_object()
            except TypeNotFoundError as exc:
                self._reply(session, message.msg_id, unknown_constructor_error(message.body, exc))
                log.info("%s: unknown constructor %08x", self.name, exc.invalid_constructor_id)
                return
        if not self._service(session, message.msg_id, obj) and isinstance(obj, TLRequest):
            self._ack(session, message.msg_id)
            task = self._loop.create_task(self._run_rpc(session, message.msg_id, obj))
            self._inflight[message.msg_id] = task
            self._host.rpc_tasks.add(task)
            task.add_done_callback(functools.partial(self._rpc_done, msg_id=message.msg_id))

    def _rpc_done(self, task: asyncio.Task[None], *, msg_id: int) -> None:
        self._inflight.pop(msg_id, None)
        self._host.rpc_tasks.discard(task)

    def _service(self, session: Session, msg_id: int, obj: TLObject) -> bool:
        """Answer MTProto service messages directly; ``False`` for anything else."""
        if isinstance(obj, functions.PingRequest | functions.PingDelayDisconnectRequest):
            self._enqueue(session, proto.pong(msg_id, obj.ping_id))
            if isinstance(obj, functions.PingDelayDisconnectRequest):
                if self._ping_timer is not None:
                    self._ping_timer.cancel()
                self._ping_timer = self._loop.call_later(obj.disconnect_delay, self.abort)
        elif isinstance(obj, functions.GetFutureSaltsRequest):
            self._enqueue(session, bytes(self._future_salts(session.auth_key_id, msg_id, obj.num)))
        elif isinstance(obj, functions.DestroySessionRequest):
            known = self._host.forget_session(session.auth_key_id, obj.session_id)
            kind = types.DestroySessionOk if known else types.DestroySessionNone
            self._enqueue(session, bytes(kind(obj.session_id)))
        elif isinstance(obj, functions.DestroyAuthKeyRequest):
            self._enqueue(session, bytes(types.DestroyAuthKeyOk()))
            self._host.store.delete(session.auth_key_id)
        elif isinstance(obj, functions.RpcDropAnswerRequest):
            task = self._inflight.get(obj.req_msg_id)
            answer: TLObject = types.RpcAnswerUnknown()
            if task is not None:
                task.cancel()
                answer = types.RpcAnswerDroppedRunning()
            self._reply(session, msg_id, bytes(answer))
        elif isinstance(obj, types.MsgsStateReq | types.MsgResendReq):
            # Minimal: the server keeps no sent-message log, so it knows nothing (status 1).
            self._enqueue(session, bytes(types.MsgsStateInfo(msg_id, "\x01" * len(obj.msg_ids))))
        elif isinstance(obj, types.MsgsStateInfo | types.MsgsAllInfo | types.MsgDetailedInfo | types.HttpWait):
            pass
        else:
            return False
        return True

    def _future_salts(self, key_id: int, msg_id: int, num: int) -> types.FutureSalts:
        now = time.time()
        salts = []
        for i in range(max(1, min(num, 64))):
            since = (int(now) // SALT_PERIOD + i) * SALT_PERIOD
            salts.append(
                types.FutureSalt(
                    valid_since=dt.datetime.fromtimestamp(since, dt.UTC),
                    valid_until=dt.datetime.fromtimestamp(since + SALT_PERIOD, dt.UTC),
                    salt=self._host.salt(key_id, now, i),
                )
            )
        return types.FutureSalts(req_msg_id=msg_id, now=int(now), salts=salts)

    async def _run_rpc(self, session: Session, msg_id: int, request: TLRequest) -> None:
        call = unwrap(request)
        host = self._host
        record = host.store.get(session.auth_key_id)
        if record is None:  # destroyed meanwhile
            return
        if call.layer is not None and call.layer != SERVED_LAYER:
            # Telegram lists 400 INPUT_LAYER_INVALID for invokeWithLayer (core.telegram.org/method/invokeWithLayer).
            # It serves older layers too; the sandbox speaks only Telethon 1.45's schema, so it refuses the rest.
            self._reply(session, msg_id, proto.rpc_error(400, "INPUT_LAYER_INVALID"))
            return
        if call.layer is not None:
            host.store.set_layer(record.key_id, call.layer)
        if not call.no_updates and not is_file_request(call.request):
            host.subscribe(self, session)
        for earlier in call.after:
            previous = self._inflight.get(earlier)
            if previous is not None and previous is not asyncio.current_task():
                await asyncio.wait([previous])
        method = type(call.request).__name__
        user_id = record.user_id
        if host.faults.should_drop(method, user_id, "before"):
            log.info("%s: fault: dropping the connection before %s", self.name, method)
            self.abort()
            return
        error = host.faults.check(method, call.request, user_id=user_id, auth_key_id=record.key_id)
        if error is None and host.gate is not None:
            error = host.gate(method, user_id, record.key_id)
        if error is not None:
            body = proto.rpc_error(error.code, error.message)
        else:
            body = await self._invoke(session, record, call.request)
            host.faults.executed(method, call.request, user_id=user_id)
        if host.faults.should_drop(method, user_id, "after"):
            log.info("%s: fault: dropping the connection after %s", self.name, method)
            self.abort()
            return
        self._reply(session, msg_id, body)

    async def _invoke(self, session: Session, record: AuthKeyRecord, request: TLObject) -> bytes:
        store = self._host.store

        def bind_user(user_id: int | None) -> None:
            store.bind(record.key_id, user_id)

        ctx = RpcContext(
            auth_key_id=record.key_id,
            session_id=session.session_id,
            user_id=record.user_id,
            layer=record.layer or DEFAULT_LAYER,
            dc_id=self._host.dc_id,
            sink=self._host.sink,
            bind_user=bind_user,
        )
        try:
            return serialize_result(await self._host.registry.invoke(ctx, request))
        except RpcError as exc:
            return proto.rpc_error(exc.code, exc.message)
        except Exception:
            log.exception("handler for %s failed", type(request).__name__)
            return proto.rpc_error(500, "INTERNAL")

    # --- writing ---------------------------------------------------------------------------

    def _reply(self, session: Session, req_msg_id: int, result: bytes) -> None:
        self._enqueue(session, *proto.rpc_result(req_msg_id, result))

    def _enqueue(self, session: Session | None, *body: bytes, response: bool = True) -> None:
        if self.closed:
            return
        due = self._loop.time() + self._throttle.latency
        content_related = not body or proto.constructor_of(body[0]) not in _NOT_CONTENT_RELATED
        self._outbound.append(_Outgoing(session, list(body), content_related, response, due))
        self._out_ready.set()

    def push(self, session: Session, update: bytes) -> None:
        """Send a server-initiated message (msg_id ending in binary 11)."""
        self._enqueue(session, update, response=False)

    def _send_raw(self, packet: bytes) -> None:
        self._enqueue(None, packet)

    def _ack(self, session: Session, msg_id: int) -> None:
        self._acks.setdefault(session, []).append(msg_id)
        if self._ack_timer is None:
            self._ack_timer = self._loop.call_later(ACK_DELAY, self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_timer = None
        for session in list(self._acks):
            self._enqueue(session, proto.msgs_ack(self._acks.pop(session)))

    async def _write_loop(self) -> None:
        while True:
            if not self._outbound:
                self._out_ready.clear()
                await self._out_ready.wait()
                continue
            delay = self._outbound[0].due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            payload = self._next_payload()
            frame = self._transport.encode(payload)
            wait = self._throttle.delay(len(frame), "out", self.user_id)
            if wait > 0:
                await asyncio.sleep(wait)
            self._writer.write(frame)
            await self._writer.drain()

    def _next_payload(self) -> bytes:
        first = self._outbound.popleft()
        session = first.session
        if session is None:
            return first.body[0]
        batch = [first]
        size = first.size
        now = self._loop.time()
        while self._outbound and len(batch) < CONTAINER_MAX_COUNT:
            item = self._outbound[0]
            if item.session is not session or item.due > now or size + item.size > CONTAINER_MAX_BYTES:
                break
            batch.append(self._outbound.popleft())
            size += item.size
        acks = self._acks.pop(session, None)
        if acks:
            batch.append(_Outgoing(session, [proto.msgs_ack(acks)], False, True, now))
        clock = self._host.msg_ids
        messages = [
            (clock.next(response=item.response), session.seq.next(item.content_related), item.body) for item in batch
        ]
        if len(messages) == 1:
            msg_id, seq_no, body = messages[0]
            inner = body
            length = sum(len(part) for part in body)
        else:
            # The container's id comes after its messages' ids, as Telethon does it.
            msg_id = clock.next(response=first.response)
            seq_no = session.seq.next(False)
            inner = [proto.container_head(len(messages)), *proto.pack_messages(messages)]
            length = sum(len(part) for part in inner)
        salt = self._host.salt(session.auth_key_id, time.time())
        parts = [proto.plaintext_header(salt, session.session_id, msg_id, seq_no, length), *inner]
        return proto.encrypt_message(session.auth_key, parts)


def _random_long() -> int:
    result: int = struct.unpack("<q", os.urandom(8))[0]
    return result
