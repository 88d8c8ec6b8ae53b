"""``auth.exportAuthorization`` / ``auth.importAuthorization``: an account's key on another DC.

As core.telegram.org/api/datacenter has it: the home DC exports bytes for a target DC; importing them
there, once, binds the calling key (made on that DC) to the account. The rules live in ``dcs/centres.py``.
"""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env
from telepi.sandbox.rpc.dispatch import Registry, RpcContext


def register(registry: Registry, env: Env) -> None:
    @registry.register(functions.auth.ExportAuthorizationRequest)
    async def export_authorization(ctx: RpcContext, request: Any) -> TLObject:
        user_id = ctx.require_user()
        token = env.dcs.export(user_id, ctx.dc_id, int(request.dc_id))
        return types.auth.ExportedAuthorization(id=user_id, bytes=token)

    @registry.register(functions.auth.ImportAuthorizationRequest)
    async def import_authorization(ctx: RpcContext, request: Any) -> TLObject:
        user_id = int(request.id)
        env.dcs.import_(user_id, bytes(request.bytes), ctx.dc_id)
        ctx.bind_user(user_id)
        return types.auth.Authorization(user=env.render.user(env.world.user(user_id), user_id))
