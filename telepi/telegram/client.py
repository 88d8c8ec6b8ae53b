"""The Telethon client for a session: its ``.session`` file, retries, and the sandbox switch.

Nothing else touches Telethon's transport set-up (``TG_DC`` / ``TG_SERVER_KEY`` point a session at the
local sandbox).
"""

from __future__ import annotations

from telethon import TelegramClient
from telethon.crypto import rsa

from telepi.config import Settings

# Telethon's own FLOOD_WAIT sleeping would hide waits from status and logs: the engine handles them.
FLOOD_SLEEP_THRESHOLD = 0
_loaded_keys: set[str] = set()


def make_client(settings: Settings, *, receive_updates: bool = True) -> TelegramClient:
    """A client on the session's ``.session`` file; pointed at the sandbox when ``TG_DC`` is set."""
    if settings.server_key_path is not None:
        pem = settings.server_key_path.read_text()
        if pem not in _loaded_keys:  # rsa.add_key is process-global
            rsa.add_key(pem, old=False)
            _loaded_keys.add(pem)
    client = TelegramClient(
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
