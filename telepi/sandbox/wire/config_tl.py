"""``help.getConfig``'s answer for a sandbox: each data centre at its own local port (or all at one)
(https://core.telegram.org/method/help.getConfig, ``dcOption``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from telethon.tl import types

# Telegram's real values for the limits clients read from the config (layer 229).
_LIMITS = {
    "chat_size_max": 200,
    "megagroup_size_max": 200000,
    "forwarded_count_max": 100,
    "online_update_period_ms": 210000,
    "offline_blur_timeout_ms": 5000,
    "offline_idle_timeout_ms": 30000,
    "online_cloud_timeout_ms": 300000,
    "notify_cloud_delay_ms": 30000,
    "notify_default_delay_ms": 1500,
    "push_chat_period_ms": 60000,
    "push_chat_limit": 2,
    "edit_time_limit": 172800,
    "revoke_time_limit": 2147483647,
    "revoke_pm_time_limit": 2147483647,
    "rating_e_decay": 2419200,
    "stickers_recent_limit": 200,
    "channels_read_media_period": 604800,
    "call_receive_timeout_ms": 20000,
    "call_ring_timeout_ms": 90000,
    "call_connect_timeout_ms": 30000,
    "call_packet_timeout_ms": 10000,
    "caption_length_max": 1024,
    "message_length_max": 4096,
}


def make_config(
    dc_id: int,
    host: str,
    port: int,
    *,
    ports: Mapping[int, int] | None = None,
    cdn: frozenset[int] = frozenset(),
    now: dt.datetime | None = None,
) -> types.Config:
    """A valid ``Config`` listing data centres 1-5 (all of them, so Telethon never leaves the sandbox):
    each at ``host:ports[dc]``, or all at ``host:port`` without ``ports``; ``this_dc`` is ``dc_id`` and the
    config expires in an hour. DCs in ``cdn`` are listed as CDN DCs."""
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    where = dict(ports) if ports else {dc: port for dc in {1, 2, 3, 4, 5, dc_id}}
    options = [types.DcOption(id=dc, ip_address=host, port=where[dc], cdn=dc in cdn or None) for dc in sorted(where)]
    return types.Config(
        date=now,
        expires=now + dt.timedelta(hours=1),
        test_mode=False,
        this_dc=dc_id,
        dc_options=options,
        dc_txt_domain_name="localhost",
        me_url_prefix="https://t.me/",
        webfile_dc_id=dc_id,
        tmp_sessions=None,
        **_LIMITS,
    )
