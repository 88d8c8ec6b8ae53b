"""Extra MTProto connections for file transfers, and one request sent on them.

Telethon 1.45 sends every request of a client on one connection (``client._sender``), and moves
files on it one part at a time. Telegram caps each connection's throughput, so parallel parts on
one connection stop scaling at that cap. A :class:`SenderPool` opens ``size`` more connections to a
DC with the account's own auth key: each is a new ``MTProtoSender`` and thus a new MTProto session
(as official clients open separate sessions for media), so nothing is shared with the client's main
connection but the key. The first request of each session is wrapped in ``invokeWithLayer`` +
``initConnection``, which Telegram expects on every new session. Connections to another DC use the
one key ``dcauth.py`` authorized there for this client: one export per DC per process, not one per
connection as Telethon's exported senders do.

This module is the only place that touches Telethon's private sender API (``_sender``, ``_log``,
``_connection``, ``_init_request``, ``_borrow_exported_sender``).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from telethon import errors
from telethon.crypto import AuthKey
from telethon.network.mtprotosender import MTProtoSender
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import functions
from telethon.tl.alltlobjects import LAYER

from telepi.engine.transfer.dcauth import dc_auth

log = logging.getLogger(__name__)

SENDER_RETRIES = 5  # reconnect attempts of a transfer connection before the pool replaces it


PLAIN_ABOVE = 64 * 1024  # payloads this large are file parts: never try to gzip them


class _PlainPartsState(MTProtoState):  # type: ignore[misc]  # Telethon is untyped
    """Telethon gzips every request over 512 bytes when that makes it smaller. File parts are media,
    already compressed: the attempt costs about 10 ms of CPU per 512 KiB part (zlib level 9) and never
    wins, which caps an upload near 50 MiB/s per core. Large payloads on transfer connections are sent
    as they are; everything else is unchanged."""

    def write_data_as_message(self, buffer: Any, data: bytes, content_related: bool, *, after_id: Any = None) -> int:
        if after_id is not None or len(data) < PLAIN_ABOVE:
            msg_id: int = super().write_data_as_message(buffer, data, content_related, after_id=after_id)
            return msg_id
        msg_id = self._get_new_msg_id()
        buffer.write(struct.pack("<qii", msg_id, self._get_seq_no(content_related), len(data)))
        buffer.write(data)
        return msg_id


class _DiscardUpdates:
    """A transfer session should receive no updates; if Telegram sends some anyway, drop them
    (the client's main connection gets its own)."""

    def put_nowait(self, _item: object) -> None:
        return None


class SenderPool:
    """``size`` connections to ``dc_id`` for one account, opened on first use; requests go to the
    least busy one. ``size == 0`` uses the client's main connection (Telethon's default behaviour)."""

    def __init__(self, client: Any, dc_id: int, size: int, *, name: str, cdn: bool = False) -> None:
        """``cdn``: a CDN DC, whose connections need no authorization (core.telegram.org/cdn)."""
        self.client = client
        self.cdn = cdn
        self.dc_id = dc_id
        self.size = size
        self.name = name
        self._senders: list[Any] = []
        self._load: dict[int, int] = {}  # id(sender) -> requests in flight
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def home(self) -> bool:
        return bool(self.dc_id == self.client.session.dc_id)

    @property
    def open_connections(self) -> int:
        return sum(1 for s in self._senders if s is not self.client._sender)

    async def call(self, request: Any, timeout: float) -> Any:
        """Send ``request`` and wait for its result; Telegram's errors are raised as Telethon's
        ``RPCError`` subclasses, a lost connection as ``ConnectionError``, no answer as ``TimeoutError``."""
        sender = await self._pick()
        key = id(sender)
        self._load[key] = self._load.get(key, 0) + 1
        try:
            try:
                future = sender.send(request)
                return await self._wait(future, timeout)
            except errors.UnauthorizedError as exc:
                if self.home or self.size == 0 or self.cdn:
                    raise
                # The DC forgot this account's imported authorization: authorize again, as a transient error
                # (once: the pool's other connections share the key and meet the same answer).
                dc_auth(self.client).forget(self.dc_id, sender.auth_key.key)
                await sender.disconnect()
                raise ConnectionError(f"DC {self.dc_id} answered {exc.message}; authorizing again") from exc
        finally:
            self._load[key] -= 1

    async def _wait(self, future: Any, timeout: float) -> Any:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the answer does, which leaves a cancelled transfer running.
        try:
            async with asyncio.timeout(timeout):
                return await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # Telethon cancels pending requests when a connection is closed under them.
            raise ConnectionError(f"{self.name} connection closed with the request pending") from None

    async def _pick(self) -> Any:
        if self._closed:
            raise ConnectionError(f"the {self.name} connections are closed")
        if not self._senders or any(not s.is_connected() for s in self._senders):
            async with self._lock:
                await self._fill()
        return min(self._senders, key=lambda s: self._load.get(id(s), 0))

    async def _fill(self) -> None:
        """Drop dead connections and open what is missing (concurrently). A transfer waits for all of
        them: parts asked for on the first one alone would queue behind its per-connection cap."""
        alive = [s for s in self._senders if s.is_connected()]
        for dead in (s for s in self._senders if not s.is_connected()):
            self._load.pop(id(dead), None)
        missing = max(1, self.size) - len(alive)
        opened = await asyncio.gather(*(self._open() for _ in range(missing)), return_exceptions=True)
        self._senders = alive + [s for s in opened if not isinstance(s, BaseException)]
        failures = [e for e in opened if isinstance(e, BaseException)]
        if failures:
            log.warning("%d of %d %s connections failed to open: %s", len(failures), missing, self.name, failures[0])
            if not self._senders:  # work on with fewer connections, never with none
                first = failures[0]
                if isinstance(first, errors.RPCError):  # opening a connection is never the file's fault
                    raise ConnectionError(f"opening a {self.name} connection to DC {self.dc_id}: {first}") from first
                raise first

    async def _open(self) -> Any:
        client = self.client
        if self.size == 0:
            if self.home:
                return client._sender
            return await client._borrow_exported_sender(self.dc_id)
        if self.cdn:
            auth = dc_auth(client)
            await auth.cdn_keys()
            host, port = await auth.address(self.dc_id)
            sender = await self._connect(None, host, port)  # a fresh key: a CDN knows no accounts
            await self._hello(sender, functions.help.GetConfigRequest())
            return sender
        if not self.home:
            return await self._open_foreign()
        sender = await self._connect(client.session.auth_key, client.session.server_address, client.session.port)
        await self._hello(sender, functions.help.GetConfigRequest())
        log.debug("opened a %s connection to DC %d", self.name, self.dc_id)
        return sender

    async def _open_foreign(self) -> Any:
        """A connection to another DC with the key authorized there (exported and imported once)."""
        auth = dc_auth(self.client)
        host, port = await auth.address(self.dc_id)
        key = auth.known(self.dc_id)
        if key is None:
            async with auth.lock(self.dc_id):
                key = auth.known(self.dc_id)  # another connection may have authorized meanwhile
                if key is None:
                    return await self._authorize(host, port)
        sender = await self._connect(AuthKey(key), host, port)
        await self._hello(sender, functions.help.GetConfigRequest())
        if sender.auth_key.key != key:
            # The DC did not know the key (transport -404): Telethon made a new one, not authorized.
            auth.forget(self.dc_id, key)
            await sender.disconnect()
            raise ConnectionError(f"DC {self.dc_id} forgot this account's authorization; authorizing again")
        return sender

    async def _authorize(self, host: str, port: int) -> Any:
        """The first connection to this DC: a new key, bound to the account by an exported authorization.
        The export (a home-DC call) runs while the key exchange does."""
        auth = dc_auth(self.client)
        exporting = asyncio.ensure_future(auth.export(self.dc_id))
        try:
            sender = await self._connect(None, host, port)
        except BaseException:
            exporting.cancel()
            await asyncio.gather(exporting, return_exceptions=True)
            raise
        try:
            await auth.import_(self.dc_id, await exporting, lambda query: self._hello(sender, query))
        except BaseException:
            exporting.cancel()
            await sender.disconnect()
            raise
        auth.remember(self.dc_id, sender)
        log.info("authorized this account on DC %d for %s connections", self.dc_id, self.name)
        return sender

    async def _connect(self, auth_key: Any, host: str, port: int) -> Any:
        client = self.client
        sender = MTProtoSender(
            auth_key,
            loggers=client._log,
            retries=SENDER_RETRIES,
            delay=1,
            auto_reconnect=True,
            connect_timeout=client._timeout,
            updates_queue=_DiscardUpdates(),
        )
        sender._state.__class__ = _PlainPartsState  # same state, without the futile gzip (see above)
        if self.home:
            # Start from what the main connection learnt: saves a bad_server_salt round trip.
            sender._state.time_offset = client._sender._state.time_offset
            sender._state.salt = client._sender._state.salt
        elif auth_key is not None and (learnt := dc_auth(client).state(self.dc_id)) is not None:
            sender._state.salt, sender._state.time_offset = learnt  # what the key's first connection learnt
        await sender.connect(
            client._connection(
                host, port, self.dc_id, loggers=client._log, proxy=client._proxy, local_addr=client._local_addr
            )
        )
        return sender

    async def _hello(self, sender: Any, query: Any) -> Any:
        """Send ``query`` as a new session's first request, wrapped in ``initConnection``."""
        init = self.client._init_request
        hello = functions.InitConnectionRequest(
            api_id=init.api_id,
            device_model=init.device_model,
            system_version=init.system_version,
            app_version=init.app_version,
            system_lang_code=init.system_lang_code,
            lang_pack=init.lang_pack,
            lang_code=init.lang_code,
            query=query,
            proxy=init.proxy,
            params=init.params,
        )
        try:
            async with asyncio.timeout(30):
                return await sender.send(functions.InvokeWithLayerRequest(LAYER, hello))
        except BaseException:
            await sender.disconnect()
            raise

    async def close(self) -> None:
        self._closed = True
        senders, self._senders = self._senders, []
        for sender in senders:
            if sender is self.client._sender:
                continue
            if self.size == 0:
                await self.client._return_exported_sender(sender)
            else:
                await sender.disconnect()
