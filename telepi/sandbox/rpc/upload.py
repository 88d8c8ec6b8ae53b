"""Upload and download RPCs of the sandbox: ``upload.saveFilePart``, ``saveBigFilePart``, ``getFile``.

Which stored file a download location names (documents, photos, thumbnails, file references) is the
world's business: it hands in a :class:`FileLocator`. Storage and upload rules live in ``world/files.py``
(https://core.telegram.org/api/files).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.cdn import Cdn, OnCdn
from telepi.sandbox.dcs.centres import upload_owner
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError
from telepi.sandbox.world.files import FileStore, KiB, MiB

_PHOTO_LOCATIONS = (types.InputPhotoFileLocation, types.InputPeerPhotoFileLocation)


class FileLocator(Protocol):
    def locate(self, ctx: RpcContext, location: TLObject) -> int:
        """The FileStore file id behind ``location`` (InputDocumentFileLocation, InputPhotoFileLocation,
        thumbnails...), or raise RpcError (FILE_REFERENCE_EXPIRED, FILE_ID_INVALID, LOCATION_INVALID)."""
        ...


def check_range(offset: int, limit: int, *, precise: bool) -> None:
    """Telegram's ``upload.getFile`` rules (core.telegram.org/api/files, "Downloading files").

    Without ``precise``: offset % 4096 == 0, limit % 4096 == 0 and 1048576 % limit == 0.
    With ``precise``: offset % 1024 == 0, limit % 1024 == 0 and limit <= 1048576.
    Both: offset // 1 MiB == (offset + limit - 1) // 1 MiB (a request stays inside one MiB).
    Telethon asks for 4 KiB-aligned power-of-two sizes at multiples of themselves, so it never trips these.
    """
    align = KiB if precise else 4 * KiB
    if offset < 0 or offset % align:
        raise RpcError(400, "OFFSET_INVALID")
    if limit <= 0 or limit % align or limit > MiB or (not precise and MiB % limit):
        raise RpcError(400, "LIMIT_INVALID")
    if offset // MiB != (offset + limit - 1) // MiB:
        raise RpcError(400, "LIMIT_INVALID")


def build_registry(
    store: FileStore, locate: FileLocator, part_cap_for: Callable[[int], int], *, cdn: Cdn | None = None
) -> Registry:
    """Handlers for uploads and downloads; ``part_cap_for(user_id)`` is 4000, or 8000 for premium.
    Parts belong to the DC they were saved on (``dcs.upload_owner``)."""
    registry = Registry()

    @registry.register(functions.upload.SaveFilePartRequest)
    async def save_file_part(ctx: RpcContext, request: Any) -> bool:
        owner = ctx.require_user()
        store.save_part(
            upload_owner(owner, ctx.dc_id),
            request.file_id,
            request.file_part,
            request.bytes,
            big=False,
            total_parts=None,
            part_cap=part_cap_for(owner),
        )
        return True

    @registry.register(functions.upload.SaveBigFilePartRequest)
    async def save_big_file_part(ctx: RpcContext, request: Any) -> bool:
        owner = ctx.require_user()
        store.save_part(
            upload_owner(owner, ctx.dc_id),
            request.file_id,
            request.file_part,
            request.bytes,
            big=True,
            total_parts=request.file_total_parts,
            part_cap=part_cap_for(owner),
        )
        return True

    @registry.register(functions.upload.GetFileRequest)
    async def get_file(ctx: RpcContext, request: Any) -> TLObject:
        ctx.require_user()
        check_range(request.offset, request.limit, precise=bool(request.precise))
        try:
            file_id = locate.locate(ctx, request.location)
        except OnCdn as on_cdn:
            if cdn is None:
                raise RpcError(500, "CDN_UNAVAILABLE") from None
            return cdn.redirect(on_cdn.file_id, request.offset)
        data = store.read(file_id, request.offset, request.limit)
        photo = isinstance(request.location, _PHOTO_LOCATIONS)
        kind = types.storage.FileJpeg() if photo else types.storage.FilePartial()
        return types.upload.File(type=kind, mtime=store.mtime(file_id), bytes=data)

    return registry
