"""The CDN methods (``dcs/cdn.py`` has the rules, after
https://core.telegram.org/cdn): ``help.getCdnConfig``, ``upload.getCdnFile`` on the CDN DC,
``upload.reuploadCdnFile`` and ``upload.getCdnFileHashes`` on the file's DC."""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.cdn import CDN_DC, Cdn
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError


def register(registry: Registry, cdn: Cdn) -> None:
    @registry.register(functions.help.GetCdnConfigRequest)
    async def get_cdn_config(ctx: RpcContext, request: Any) -> TLObject:
        return types.CdnConfig(public_keys=[types.CdnPublicKey(dc_id=CDN_DC, public_key=cdn.public_key_pem)])

    @registry.register(functions.upload.GetCdnFileRequest)
    async def get_cdn_file(ctx: RpcContext, request: Any) -> object:
        if ctx.dc_id != CDN_DC:  # only CDN DCs serve it (core.telegram.org/cdn)
            raise RpcError(400, "FILE_TOKEN_INVALID")
        return cdn.get(bytes(request.file_token), int(request.offset), int(request.limit))

    @registry.register(functions.upload.ReuploadCdnFileRequest)
    async def reupload_cdn_file(ctx: RpcContext, request: Any) -> list[TLObject]:
        ctx.require_user()
        return list(cdn.reupload(bytes(request.file_token), bytes(request.request_token)))

    @registry.register(functions.upload.GetCdnFileHashesRequest)
    async def get_cdn_file_hashes(ctx: RpcContext, request: Any) -> list[TLObject]:
        ctx.require_user()
        return list(cdn.file_hashes(bytes(request.file_token), int(request.offset)))
