"""Session plumbing a client calls around the real work: config, nearest DC, app config, status.

``help.getConfig`` (https://core.telegram.org/method/help.getConfig) and the app config's limits
(https://core.telegram.org/api/config#client-configuration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.cdn import CDN_DC
from telepi.sandbox.rpc.common import CAPTION_LENGTH_MAX, CAPTION_LENGTH_MAX_PREMIUM, Env
from telepi.sandbox.rpc.custom_emoji import ANIMATED_EMOJI_MAX
from telepi.sandbox.rpc.dispatch import Registry, RpcContext
from telepi.sandbox.wire import config_tl

# (host, port) of every DC the sandbox runs.
Endpoint = Callable[[], Mapping[int, tuple[str, int]]]


def register(registry: Registry, env: Env, endpoint: Endpoint) -> None:
    @registry.register(functions.help.GetConfigRequest)
    async def get_config(ctx: RpcContext, request: Any) -> TLObject:
        where = endpoint()
        host, port = where.get(ctx.dc_id) or next(iter(where.values()))
        ports = {dc: p for dc, (_h, p) in where.items()}
        return config_tl.make_config(ctx.dc_id, host, port, ports=ports, cdn=frozenset({CDN_DC}))

    @registry.register(functions.help.GetNearestDcRequest)
    async def get_nearest_dc(ctx: RpcContext, request: Any) -> TLObject:
        return types.NearestDc(country="XX", this_dc=ctx.dc_id, nearest_dc=ctx.dc_id)

    @registry.register(functions.help.GetAppConfigRequest)
    async def get_app_config(ctx: RpcContext, request: Any) -> TLObject:
        def number(key: str, value: float) -> TLObject:
            return types.JsonObjectValue(key=key, value=types.JsonNumber(value=value))

        config = types.JsonObject(
            value=[
                number("upload_max_fileparts_default", 4000),
                number("upload_max_fileparts_premium", 8000),
                number("caption_length_limit_default", CAPTION_LENGTH_MAX),
                number("caption_length_limit_premium", CAPTION_LENGTH_MAX_PREMIUM),
                number("topics_pinned_limit", 5),
                number("message_animated_emoji_max", ANIMATED_EMOJI_MAX),
            ]
        )
        return types.help.AppConfig(hash=1, config=config)

    @registry.register(functions.account.UpdateStatusRequest)
    async def update_status(ctx: RpcContext, request: Any) -> bool:
        ctx.require_user()
        return True

    @registry.register(functions.account.GetNotifySettingsRequest)
    async def get_notify_settings(ctx: RpcContext, request: Any) -> TLObject:
        ctx.require_user()
        return types.PeerNotifySettings()
