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

from collections.abc import Awaitable, Callable
from typing import Any

from telethon import TelegramClient
from telethon.crypto import rsa

from telepi.config import Settings

# (request, the call itself) -> its result: what a middleware wraps around every request.
Middleware = Callable[[Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class GatedClient(TelegramClient):  # type: ignore[misc]
    """A TelegramClient whose every request goes through ``middleware`` (None: straight through)."""

    middleware: Middleware | None = None

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


def make_client(settings: Settings, *, receive_updates: bool = True) -> GatedClient:
    """A client on the session's ``.session`` file; pointed at the sandbox when ``TG_DC`` is set."""
    if settings.server_key_path is not None:
        pem = settings.server_key_path.read_text()
        if pem not in _loaded_keys:  # rsa.add_key is process-global
            rsa.add_key(pem, old=False)
            _loaded_keys.add(pem)
    client = GatedClient(
        str(settings.session_file.with_suffix("")),
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
    if settings.dc_address is not None:
        host, port = settings.dc_address
        client.session.set_dc(2, host, port)
    return client
