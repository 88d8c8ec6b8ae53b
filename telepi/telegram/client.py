"""The Telethon client for a session: its ``.session`` file, retries, the sandbox switch, and the one
seam every call passes through.

Nothing else touches Telethon's transport set-up (``TG_DC`` / ``TG_SERVER_KEY`` point a session at the
local sandbox). Every request the client makes — ours and those Telethon makes inside its high-level
methods (``get_messages``, ``get_entity``, ``delete_messages``, …) — goes through
:meth:`GatedClient._call`, which hands it to the client's ``middleware`` when one is installed (the
engine installs the account's gateway: flood waits per method, account-level refusals). File parts
travel on the transfer's own connections and are paced there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from telethon import TelegramClient
from telethon.crypto import AuthKey, rsa
from telethon.extensions.messagepacker import MessagePacker
from telethon.sessions import MemorySession

from telepi.config import Settings

# (request, the call itself) -> its result: what a middleware wraps around every request.
Middleware = Callable[[Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class WithdrawingPacker(MessagePacker):  # type: ignore[misc]
    """Telethon's send queue without the requests whose caller gave up. Telethon 1.45 keeps a cancelled
    request queued (``MessagePacker.get`` packs it all the same) and, after a reconnect, sends again every
    request not yet answered (``MTProtoSender._reconnect`` re-queues ``_pending_state``): a send withdrawn
    at its timeout while the link was down would still land once the link came back, after another
    session had taken its message over."""

    async def get(self) -> Any:
        live = [state for state in self._deque if not state.future.cancelled()]
        if len(live) != len(self._deque):
            self._deque.clear()
            self._deque.extend(live)
        return await super().get()


class GatedClient(TelegramClient):  # type: ignore[misc]
    """A TelegramClient whose every request goes through ``middleware`` (None: straight through), and
    whose withdrawn (cancelled) requests are never sent later (:class:`WithdrawingPacker`)."""

    middleware: Middleware | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sender._send_queue.__class__ = WithdrawingPacker  # created by the sender once, kept for its life

    async def _call(
        self, sender: Any, request: Any, ordered: bool = False, flood_sleep_threshold: int | None = None
    ) -> Any:
        call = super()._call
        if self.middleware is None:
            return await call(sender, request, ordered, flood_sleep_threshold)
        return await self.middleware(request, lambda: call(sender, request, ordered, flood_sleep_threshold))


# Telethon's own FLOOD_WAIT sleeping would hide waits from status and logs: the engine handles them.
FLOOD_SLEEP_THRESHOLD = 0
_loaded_keys: set[str] = set()


def session_copy(path: Path) -> MemorySession:
    """The login (and known chats) of a ``.session`` file read without writing or locking it: for a check
    beside the running session, whose process holds the file (Telethon keeps a write transaction open)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT dc_id, server_address, port, auth_key FROM sessions").fetchone()
        entities = db.execute("SELECT id, hash, username, phone, name FROM entities").fetchall()
    finally:
        db.close()
    copy = MemorySession()
    if row is not None:
        copy.set_dc(row[0], row[1], row[2])
        copy.auth_key = AuthKey(data=row[3]) if row[3] else None
    copy._entities = set(entities)  # Telethon's in-memory entity cache: (id, hash, username, phone, name)
    return copy


def make_client(settings: Settings, *, receive_updates: bool = True, read_only: bool = False) -> GatedClient:
    """A client on the session's ``.session`` file; pointed at the sandbox when ``TG_DC`` is set.
    ``read_only``: on a copy of its login in memory, the file left alone (see :func:`session_copy`)."""
    if settings.server_key_path is not None:
        pem = settings.server_key_path.read_text()
        if pem not in _loaded_keys:  # rsa.add_key is process-global
            rsa.add_key(pem, old=False)
            _loaded_keys.add(pem)
    client = GatedClient(
        session_copy(settings.session_file) if read_only else str(settings.session_file.with_suffix("")),
        settings.api_id,
        settings.api_hash,
        flood_sleep_threshold=FLOOD_SLEEP_THRESHOLD,
        receive_updates=receive_updates,
        request_retries=3,
        connection_retries=-1,  # a VPS loses its link now and then: keep trying, the watchdog judges health
        retry_delay=2,
        auto_reconnect=True,
        device_model="telepi",
        app_version="telepi",
    )
    if settings.dc_address is not None and not read_only and _home_unknown_or_dc2(client.session):
        # TG_DC is where a login starts (DC 2). A login that moved to the account's home DC (PHONE_MIGRATE_X)
        # saved that DC's address and key in the session: pointing it back at DC 2 would show DC 2 a key
        # it never made, and the account would look logged out.
        host, port = settings.dc_address
        client.session.set_dc(2, host, port)
    return client


def _home_unknown_or_dc2(session: Any) -> bool:
    return session.auth_key is None or session.dc_id in (0, 2)


def transport_up(client: TelegramClient) -> bool:
    """Whether the client can reach Telegram right now. ``client.is_connected()`` only says the user has not
    disconnected: it stays true while Telethon's sender reconnects, for ever with ``connection_retries=-1``.
    The sender's transport is what is actually up (Telethon 1.45 ``MTProtoSender._transport_connected``:
    not reconnecting, and its connection open; ``_reconnect`` closes the connection before retrying)."""
    sender = getattr(client, "_sender", None)
    if sender is None or not sender.is_connected():
        return False
    return bool(sender._transport_connected())
