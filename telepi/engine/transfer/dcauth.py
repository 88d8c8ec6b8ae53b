"""One authorization per foreign data centre per process, shared by every connection to it.

A file lives on the DC of whoever uploaded it (core.telegram.org/api/datacenter). Reading it from
another DC takes an auth key there that ``auth.importAuthorization`` bound to the account, with bytes
the home DC gave out through ``auth.exportAuthorization``. Telethon's ``_create_exported_sender``
exports once per connection, and again for each new one; Telegram flood-limits exports (849 s reported
by Telethon users, Telethon#3107). Here the first connection to a DC exports and imports once; the key
it made is kept for the client's life and every later connection (and every reconnect) opens its own
MTProto session with that key, as Telethon's main connection does after a reconnect.

Export and import failures are never final: a flood wait is slept out, other errors go back to the
caller as ``ConnectionError`` (the transfer retries with backoff). A key the DC no longer knows (its
connection answers AUTH_KEY_UNREGISTERED, or the transport says the key is unknown) is forgotten and
the next connection exports again.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from telethon import errors
from telethon.crypto import rsa
from telethon.tl import functions

log = logging.getLogger(__name__)

EXPORT_TIMEOUT = 30.0


class DcAuth:
    """The authorized auth keys of one client on its foreign DCs (see module doc)."""

    def __init__(self, client: Any) -> None:
        self._client = weakref.ref(client)
        # per DC: the authorized key, with the salt and clock offset learnt with it
        self._keys: dict[int, tuple[bytes, tuple[int, int]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._addresses: dict[int, tuple[str, int]] = {}
        self.exports = 0  # auth.exportAuthorization calls made (for tests and logs)
        self._cdn_keys = False

    @property
    def client(self) -> Any:
        client = self._client()
        if client is None:
            raise ConnectionError("the client is gone")
        return client

    def known(self, dc_id: int) -> bytes | None:
        found = self._keys.get(dc_id)
        return None if found is None else found[0]

    def forget(self, dc_id: int, key: bytes | None = None) -> None:
        """Drop the key of ``dc_id`` (only if it is still ``key``, when given)."""
        if key is None or self.known(dc_id) == key:
            self._keys.pop(dc_id, None)

    async def address(self, dc_id: int) -> tuple[str, int]:
        """Where ``dc_id`` listens, from the client's own ``help.getConfig`` (Telethon keeps one per
        process, for every client: a test process meets several Telegrams)."""
        if dc_id not in self._addresses:
            config = await self.client(functions.help.GetConfigRequest())
            for option in config.dc_options:
                if not option.ipv6 and not option.media_only:
                    self._addresses.setdefault(option.id, (option.ip_address, option.port))
        try:
            return self._addresses[dc_id]
        except KeyError:
            raise ConnectionError(f"Telegram's config names no DC {dc_id}") from None

    async def cdn_keys(self) -> None:
        """Register the CDN DCs' RSA keys (``help.getCdnConfig``), needed to make a key there."""
        if self._cdn_keys:
            return
        config = await self.client(functions.help.GetCdnConfigRequest())
        for key in config.public_keys:
            rsa.add_key(key.public_key, old=False)
        self._cdn_keys = True

    def lock(self, dc_id: int) -> asyncio.Lock:
        return self._locks.setdefault(dc_id, asyncio.Lock())

    async def export(self, dc_id: int) -> Any:
        """``auth.exportAuthorization`` for ``dc_id`` on the home DC, flood waits slept out. It needs
        no connection to ``dc_id``, so it runs while that connection's key exchange does."""
        client = self.client
        while True:
            try:
                self.exports += 1
                async with asyncio.timeout(EXPORT_TIMEOUT):
                    return await client(functions.auth.ExportAuthorizationRequest(dc_id), flood_sleep_threshold=0)
            except errors.FloodError as exc:
                seconds = max(1, int(getattr(exc, "seconds", 0) or 0))
                log.info("exporting an authorization to DC %d: flood wait of %d s, waiting it out", dc_id, seconds)
                await asyncio.sleep(seconds)
            except errors.RPCError as exc:
                # Anything else (a 500) may pass: the caller retries.
                raise ConnectionError(f"authorization for DC {dc_id} failed: {exc}") from exc

    @staticmethod
    async def import_(dc_id: int, exported: Any, send: Any) -> None:
        """``auth.importAuthorization`` through ``send`` (the new connection's own send, which wraps it
        in initConnection)."""
        try:
            await send(functions.auth.ImportAuthorizationRequest(id=exported.id, bytes=exported.bytes))
        except errors.RPCError as exc:
            # AUTH_BYTES_INVALID after a race, a 500: the caller retries with a new export.
            raise ConnectionError(f"authorization for DC {dc_id} failed: {exc}") from exc

    def remember(self, dc_id: int, sender: Any) -> None:
        """Keep the key ``sender`` authorized on ``dc_id``, with the salt and clock offset it learnt:
        salts belong to the key, so the next connection with it skips a bad_server_salt round trip."""
        key = sender.auth_key
        if key.key is not None:
            self._keys[dc_id] = (bytes(key.key), (sender._state.salt, sender._state.time_offset))

    def state(self, dc_id: int) -> tuple[int, int] | None:
        """The salt and time offset learnt with the remembered key of ``dc_id``."""
        found = self._keys.get(dc_id)
        return None if found is None else found[1]


_by_client: weakref.WeakKeyDictionary[Any, DcAuth] = weakref.WeakKeyDictionary()


def dc_auth(client: Any) -> DcAuth:
    """The client's :class:`DcAuth`, made on first use and kept while the client lives."""
    found = _by_client.get(client)
    if found is None:
        found = _by_client[client] = DcAuth(client)
    return found
