"""Streaming reupload: copy a file from a protected chat to the target without ever holding the file.

Protected chats (``noforwards``) can only be cloned by downloading each file and uploading it again.
Here the download and the upload overlap: several ``upload.getFile`` requests in flight on several
connections, parts handed through a bounded buffer to several ``upload.saveBigFilePart`` /
``saveFilePart`` requests in flight; no temporary file, memory bounded by the window (see
:mod:`telepi.engine.transfer.options` for the tunables and their defaults).

Use::

    async with Transfers(client, options) as transfers:          # one per account, kept open
        media = await transfers.reupload(message, refresh=lambda: client.get_messages(chat, ids=message.id),
                                         progress=print)
        await client(SendMediaRequest(peer, media, message=message.message, random_id=...))

or the one-shot :func:`reupload`. Albums: reupload each member, pass each through
:func:`~telepi.engine.transfer.media.upload_media`, then send one ``messages.sendMultiMedia``.

Failures raise :class:`~telepi.engine.transfer.errors.TransferError` subclasses: :class:`TooLarge`
(before any byte moves), :class:`TransferFailed` (``retryable`` tells whether to try the item later),
:class:`SourceChanged`, :class:`FloodWaitTooLong`.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from telethon.tl import types

from telepi.engine.transfer.calls import PartCalls, Refresh, SourceLocation
from telepi.engine.transfer.errors import (
    TooLarge,
    TransferFailed,
)
from telepi.engine.transfer.media import (
    SourceFile,
    inline_thumbnail,
    input_media,
    pick_thumbnail,
    source_file,
    thumbnail_size,
    upload_media,
)
from telepi.engine.transfer.options import DEFAULT_OPTIONS, TransferOptions
from telepi.engine.transfer.pacing import Pacer
from telepi.engine.transfer.parts import part_cap, part_count
from telepi.engine.transfer.progress import ByteTotals, ProgressCallback, ProgressMeter
from telepi.engine.transfer.senders import SenderPool
from telepi.engine.transfer.stream import FileStream, download_bytes, upload_bytes

log = logging.getLogger(__name__)


class Transfers:
    """One account's transfer machinery, shared by all its items: connections per DC, the flood
    pacing of each direction, and the account's upload part cap. Close it (``async with``) when done."""

    def __init__(
        self,
        client: Any,
        options: TransferOptions = DEFAULT_OPTIONS,
        *,
        premium: bool | None = None,
        totals: ByteTotals | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.totals = ByteTotals() if totals is None else totals
        self.download_pacer = Pacer(options.downloads_in_flight)
        self.upload_pacer = Pacer(options.uploads_in_flight)
        self._premium = premium
        self._download_pools: dict[int, SenderPool] = {}
        self._cdn_pools: dict[int, SenderPool] = {}
        self._upload_pool: SenderPool | None = None

    async def __aenter__(self) -> Transfers:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        pools = [*self._download_pools.values(), *self._cdn_pools.values()]
        pools += [self._upload_pool] if self._upload_pool else []
        self._download_pools, self._cdn_pools, self._upload_pool = {}, {}, None
        for pool in pools:
            await pool.close()

    @property
    def open_connections(self) -> int:
        pools = [*self._download_pools.values(), *self._cdn_pools.values()]
        pools += [self._upload_pool] if self._upload_pool else []
        return sum(pool.open_connections for pool in pools)

    # ---- pieces

    async def part_cap(self) -> int:
        if self._premium is None:
            me = await self.client.get_me()
            self._premium = bool(getattr(me, "premium", False))
        return part_cap(self._premium)

    async def check_size(self, size: int) -> None:
        """Raise :class:`TooLarge` when a file of ``size`` bytes exceeds this account's part cap."""
        cap = await self.part_cap()
        parts = part_count(size, self.options.upload_part_size)
        if parts > cap:
            raise TooLarge(size, parts, cap)

    def download_pool(self, dc_id: int) -> SenderPool:
        pool = self._download_pools.get(dc_id)
        if pool is None:
            pool = self._download_pools[dc_id] = SenderPool(
                self.client, dc_id, self.options.download_connections, name="download"
            )
        return pool

    def cdn_pool(self, dc_id: int) -> SenderPool:
        pool = self._cdn_pools.get(dc_id)
        if pool is None:
            size = max(1, self.options.download_connections)
            pool = self._cdn_pools[dc_id] = SenderPool(self.client, dc_id, size, name="cdn", cdn=True)
        return pool

    def downloads(self, dc_id: int) -> PartCalls:
        """Download calls on ``dc_id``'s connections, following FILE_MIGRATE_X to another DC's and a
        CDN redirect to the CDN's."""
        return PartCalls(
            self.download_pool(dc_id),
            self.download_pacer,
            self.options,
            migrate=self.download_pool,
            cdn=self.cdn_pool,
        )

    def uploads(self) -> PartCalls:
        if self._upload_pool is None:
            self._upload_pool = SenderPool(
                self.client, self.client.session.dc_id, self.options.upload_connections, name="upload"
            )
        return PartCalls(self._upload_pool, self.upload_pacer, self.options)

    def locate(self, file: SourceFile, refresh: Refresh | None = None) -> SourceLocation:
        """Where ``file`` is read from, renewed through ``refresh()``; share it between the thumbnail
        and the file so one renewal serves both."""
        return SourceLocation(
            file.location, refresh, renewals=self.options.reference_renewals, timeout=self.options.request_timeout
        )

    def _waiting(self) -> float:
        return max(self.download_pacer.waiting(), self.upload_pacer.waiting())

    async def stream(
        self, file: SourceFile, source: SourceLocation, *, progress: ProgressCallback | None = None
    ) -> Any:
        """Copy ``file`` into a new upload of this account; returns its InputFile / InputFileBig."""
        await self.check_size(file.size)
        if file.size <= 0:
            raise TransferFailed(f"{file.name} is empty: Telegram has no empty files to copy")
        meter = ProgressMeter(
            file.name,
            file.size,
            progress,
            interval=self.options.progress_interval,
            waiting=self._waiting,
            totals=self.totals,
        )
        stream = FileStream(
            source,
            file.size,
            file.name,
            downloads=self.downloads(file.dc_id),
            uploads=self.uploads(),
            options=self.options,
            meter=meter,
        )
        uploaded = await stream.run()
        meter.report()
        return uploaded

    async def thumbnail(self, file: SourceFile, source: SourceLocation) -> Any | None:
        """The document's thumbnail uploaded as a small file (for ``InputMediaUploadedDocument.thumb``),
        or None when it has none. A thumbnail Telegram refuses to serve is left out with a warning: the
        file matters more than its preview."""
        thumb = pick_thumbnail(file.obj)
        if thumb is None:
            return None
        data = inline_thumbnail(thumb)
        try:
            if data is None:
                downloads = self.downloads(file.dc_id)
                size = thumbnail_size(thumb)
                data = await download_bytes(source, size, downloads, self.options, thumb_size=thumb.type)
            return await upload_bytes(data, "thumb.jpg", self.uploads(), self.options)
        except TransferFailed as exc:
            if exc.retryable:
                raise
            log.warning("thumbnail of %s not copied: %s", file.name, exc)
            return None

    async def reupload(
        self,
        source: Any,
        *,
        refresh: Refresh | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Download the file of ``source`` (a Message, its media, a Document or Photo) and upload it
        again, streaming; returns the ``InputMediaUploadedDocument``/``InputMediaUploadedPhoto`` to send.

        ``refresh()`` is called when the file reference expires mid-transfer and must return the source
        again (the re-fetched message is simplest). ``progress`` receives :class:`TransferProgress`.
        """
        file = source_file(source)
        await self.check_size(file.size)  # before any byte moves, thumbnail included
        location = self.locate(file, refresh)
        thumb = await self.thumbnail(file, location) if isinstance(file.obj, types.Document) else None
        uploaded = await self.stream(file, location, progress=progress)
        return input_media(source, uploaded, thumb=thumb)


async def reupload(
    client: Any,
    source: Any,
    *,
    refresh: Refresh | None = None,
    options: TransferOptions = DEFAULT_OPTIONS,
    progress: ProgressCallback | None = None,
    transfers: Transfers | None = None,
) -> Any:
    """One-shot :meth:`Transfers.reupload`; pass ``transfers`` to reuse an account's open connections."""
    if transfers is not None:
        return await transfers.reupload(source, refresh=refresh, progress=progress)
    async with Transfers(client, options) as own:
        return await own.reupload(source, refresh=refresh, progress=progress)


class StreamingReuploader:
    """The worker's ``Reuploader``: streams a message's file, with one :class:`Transfers` per client.

    ``media()`` returns uploaded input media for a single send, or media by reference (via
    ``messages.uploadMedia`` against the target) for an album member. ``close()`` ends the connections.
    """

    def __init__(self, options: TransferOptions = DEFAULT_OPTIONS, *, progress: ProgressCallback | None = None) -> None:
        self.options = options
        self.progress = progress
        self.totals = ByteTotals()  # every client's file parts: what the session's heartbeat records
        self._transfers: dict[int, Transfers] = {}

    def transfers(self, client: Any) -> Transfers:
        found = self._transfers.get(id(client))
        if found is None or found.client is not client:
            found = self._transfers[id(client)] = Transfers(client, self.options, totals=self.totals)
        return found

    async def media(self, client: Any, message: Any, *, for_album: bool, target_peer: Any) -> Any:
        async def refresh() -> Any:
            return await client.get_messages(message.peer_id, ids=message.id)

        media = await self.transfers(client).reupload(message, refresh=refresh, progress=self.progress)
        if for_album:
            return await upload_media(client, target_peer, media)
        return media

    async def close(self) -> None:
        transfers, self._transfers = list(self._transfers.values()), {}
        for item in transfers:
            await item.close()
