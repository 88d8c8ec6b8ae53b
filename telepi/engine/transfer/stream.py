"""The streaming pipeline of one file: download parts → bounded buffer → upload parts, overlapped.

Download workers take the file's ranges in order; a range's *block* (the larger of the download and
upload part sizes, see ``parts.py``) must first get a credit from the window, so no more than
``window // block`` blocks are ever held. A finished block is cut into upload parts (1 MiB downloads
become two 512 KiB uploads) and queued for the upload workers. A block's credit comes back once all
its parts are acknowledged (and, for small files, once the in-order MD5 has consumed it). Parts may
finish in any order: ``saveBigFilePart`` accepts that, and the MD5 of a small file is fed in order
from the blocks as they line up.

Nothing touches disk; memory follows the window, never the file size. The earliest block not yet
done always holds its credit, so the window cannot deadlock.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from telethon.tl import functions, types

from telepi.engine.transfer.calls import PartCalls, SourceLocation
from telepi.engine.transfer.errors import TransferError, TransferFailed
from telepi.engine.transfer.options import TransferOptions
from telepi.engine.transfer.parts import Layout, Range
from telepi.engine.transfer.progress import ProgressMeter


def _same(request: Any) -> Callable[[], Any]:
    return lambda: request


def _stored(result: Any) -> str | None:
    return None if result is True else "the server did not store the part"


def new_file_id() -> int:
    return secrets.randbits(63) or 1


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The exception that stopped the pipeline (the others are the workers it cancelled)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            found: BaseException = exc
            return found
    return group


class FileStream:
    """Copies the file at ``source`` (``size`` bytes) into a new upload; ``run()`` returns its InputFile."""

    def __init__(
        self,
        source: SourceLocation,
        size: int,
        name: str,
        *,
        downloads: PartCalls,
        uploads: PartCalls,
        options: TransferOptions,
        meter: ProgressMeter,
    ) -> None:
        self.layout = Layout(size, options.download_part_size, options.upload_part_size)
        self.source = source
        self.name = name
        self.file_id = new_file_id()
        self._downloads = downloads
        self._uploads = uploads
        self._options = options
        self._meter = meter
        layout = self.layout
        self._credits = asyncio.Semaphore(max(1, options.window // layout.block))
        self._ranges = [(block, rng) for block in range(layout.blocks) for rng in layout.ranges(block)]
        self._next = 0
        self._credited = -1  # highest block that has taken its credit
        self._issue = asyncio.Lock()
        self._pieces: dict[int, dict[int, bytes]] = {}  # block -> offset -> bytes, while it assembles
        self._unsent: dict[int, int] = {}  # block -> upload parts not yet acknowledged
        self._queue: asyncio.Queue[tuple[int, int, bytes] | None] = asyncio.Queue()
        self._saved = 0
        self._md5 = None if layout.big else hashlib.md5()
        self._md5_next = 0  # next block the MD5 needs
        self._md5_waiting: dict[int, bytes] = {}
        self.peak_blocks = 0  # most blocks held at once (tests check the window holds)

    async def run(self) -> Any:
        workers = self._options.downloads_in_flight, self._options.uploads_in_flight
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers[0]):
                    group.create_task(self._download_worker())
                for _ in range(workers[1]):
                    group.create_task(self._upload_worker())
        except BaseExceptionGroup as failed:
            raise _first_error(failed) from None
        layout = self.layout
        if layout.big:
            return types.InputFileBig(id=self.file_id, parts=layout.upload_parts, name=self.name)
        assert self._md5 is not None
        return types.InputFile(
            id=self.file_id, parts=layout.upload_parts, name=self.name, md5_checksum=self._md5.hexdigest()
        )

    # ---- downloading

    async def _download_worker(self) -> None:
        while (job := await self._take_range()) is not None:
            block, rng = job
            data = await self._fetch(rng)
            self._meter.received(len(data))
            self._landed(block, rng, data)

    async def _take_range(self) -> tuple[int, Range] | None:
        async with self._issue:  # ranges leave in order, and so do the blocks' credits
            if self._next >= len(self._ranges):
                return None
            block, rng = self._ranges[self._next]
            if block > self._credited:
                await self._credits.acquire()
                self._credited = block
                self._pieces[block] = {}
                self.peak_blocks = max(self.peak_blocks, len(self._pieces) + len(self._unsent))
            self._next += 1
            return block, rng

    async def _fetch(self, rng: Range) -> bytes:
        expected = self.layout.expected(rng)

        def make() -> Any:
            return functions.upload.GetFileRequest(
                location=self.source.location, offset=rng.offset, limit=rng.limit, precise=rng.precise or None
            )

        def accept(result: Any) -> str | None:
            if not isinstance(result, types.upload.File):
                return f"unexpected answer {type(result).__name__}"
            if len(result.bytes) != expected:
                return f"got {len(result.bytes)} bytes at offset {rng.offset}, expected {expected}"
            return None

        result = await self._downloads.call(
            make, f"download of bytes {rng.offset}+{rng.limit}", source=self.source, accept=accept
        )
        data: bytes = result.bytes
        return data

    def _landed(self, block: int, rng: Range, data: bytes) -> None:
        pieces = self._pieces[block]
        pieces[rng.offset] = data
        if len(pieces) < len(self.layout.ranges(block)):
            return
        del self._pieces[block]
        whole = pieces[rng.offset] if len(pieces) == 1 else b"".join(pieces[o] for o in sorted(pieces))
        start, _end = self.layout.block_span(block)
        parts = self.layout.uploads(block)
        self._unsent[block] = len(parts)
        size = self.layout.upload_part
        for part in parts:
            lo = part * size - start
            piece = whole if len(parts) == 1 else whole[lo : lo + size]
            self._queue.put_nowait((block, part, piece))
        if self._md5 is not None:
            self._md5_waiting[block] = whole
            while self._md5_next in self._md5_waiting:
                self._md5.update(self._md5_waiting.pop(self._md5_next))
                self._md5_next += 1
                self._release_if_done(self._md5_next - 1)

    # ---- uploading

    async def _upload_worker(self) -> None:
        while (job := await self._queue.get()) is not None:
            block, part, data = job
            await self._save(part, data)
            self._meter.sent(len(data))
            self._unsent[block] -= 1
            self._saved += 1
            self._release_if_done(block)
            if self._saved == self.layout.upload_parts:
                for _ in range(self._options.uploads_in_flight):
                    self._queue.put_nowait(None)  # every part is in: let the upload workers end

    async def _save(self, part: int, data: bytes) -> None:
        layout = self.layout
        if layout.big:
            request: Any = functions.upload.SaveBigFilePartRequest(
                file_id=self.file_id, file_part=part, file_total_parts=layout.upload_parts, bytes=data
            )
        else:
            request = functions.upload.SaveFilePartRequest(file_id=self.file_id, file_part=part, bytes=data)

        await self._uploads.call(_same(request), f"upload of part {part}/{layout.upload_parts}", accept=_stored)

    def _release_if_done(self, block: int) -> None:
        if self._unsent.get(block) == 0 and (self._md5 is None or block < self._md5_next):
            del self._unsent[block]
            self._credits.release()


async def upload_bytes(data: bytes, name: str, uploads: PartCalls, options: TransferOptions) -> Any:
    """A small file already in memory (a thumbnail) as an uploaded InputFile, parts sent in turn."""
    if not data:
        raise TransferFailed("cannot upload an empty file")
    if len(data) > 10 * 1024 * 1024:
        raise TransferError("upload_bytes is for small files")
    size = options.upload_part_size
    parts = -(-len(data) // size)
    file_id = new_file_id()
    for part in range(parts):
        request = functions.upload.SaveFilePartRequest(
            file_id=file_id, file_part=part, bytes=data[part * size : (part + 1) * size]
        )
        await uploads.call(_same(request), f"upload of {name} part {part}", accept=_stored)
    return types.InputFile(id=file_id, parts=parts, name=name, md5_checksum=hashlib.md5(data).hexdigest())


async def download_bytes(
    source: SourceLocation, size: int, downloads: PartCalls, options: TransferOptions, *, thumb_size: str
) -> bytes:
    """A small file (the source's thumbnail ``thumb_size``) into memory, one range after another."""
    layout = Layout(size, options.download_part_size, options.upload_part_size)
    chunks: list[bytes] = []
    for block in range(layout.blocks):
        for rng in layout.ranges(block):

            def make(rng: Range = rng) -> Any:
                return functions.upload.GetFileRequest(
                    location=source.get(thumb_size), offset=rng.offset, limit=rng.limit, precise=rng.precise or None
                )

            def accept(result: Any, rng: Range = rng) -> str | None:
                if not isinstance(result, types.upload.File):
                    return f"unexpected answer {type(result).__name__}"
                if len(result.bytes) != layout.expected(rng):
                    return f"got {len(result.bytes)} bytes at offset {rng.offset}, expected {layout.expected(rng)}"
                return None

            result = await downloads.call(
                make, f"download of a thumbnail at {rng.offset}", source=source, accept=accept
            )
            chunks.append(result.bytes)
    return b"".join(chunks)
