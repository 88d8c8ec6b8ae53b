"""Byte arithmetic of one file transfer: download ranges, upload parts, part caps. Pure, no I/O.

Telegram's rules (core.telegram.org/api/files):

- ``upload.getFile``: ``limit`` at most 1 MiB; without ``precise`` the offset is a multiple of 4 KiB and
  the limit a multiple of 4 KiB that divides 1 MiB; with ``precise`` both are multiples of 1 KiB. Either
  way one request never crosses a 1 MiB boundary. Past the end the server returns fewer bytes.
- ``upload.saveFilePart`` / ``saveBigFilePart``: every part but the last has the same size, a multiple of
  1 KiB that divides 512 KiB; the last may be smaller. Files over 10 MiB must be uploaded as "big".
- An upload has at most 4000 parts (8000 for premium accounts).

Download and upload part sizes are both powers of two here, so one always divides the other: a
*block* (the larger of the two) is the unit that moves through the transfer's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
MAX_DOWNLOAD_LIMIT = MiB
MAX_UPLOAD_PART = 512 * KiB
SMALL_FILE_MAX = 10 * MiB  # above this: saveBigFilePart + InputFileBig
PART_CAP_DEFAULT = 4000  # upload_max_fileparts_default
PART_CAP_PREMIUM = 8000  # upload_max_fileparts_premium


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def valid_download_part(size: int) -> bool:
    """A download request size usable at every multiple of itself without ``precise``."""
    return _power_of_two(size) and 4 * KiB <= size <= MAX_DOWNLOAD_LIMIT


def valid_upload_part(size: int) -> bool:
    """A non-last upload part size: a multiple of 1 KiB dividing 512 KiB (so a power of two)."""
    return _power_of_two(size) and KiB <= size <= MAX_UPLOAD_PART


def is_big(size: int) -> bool:
    return size > SMALL_FILE_MAX


def part_count(size: int, part: int) -> int:
    return max(1, -(-size // part))


def part_cap(premium: bool) -> int:
    return PART_CAP_PREMIUM if premium else PART_CAP_DEFAULT


def max_upload_size(cap: int, part: int = MAX_UPLOAD_PART) -> int:
    return cap * part


@dataclass(frozen=True)
class Range:
    """One ``upload.getFile`` request."""

    offset: int
    limit: int
    precise: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.limit


def next_range(offset: int, part: int) -> Range:
    """The largest legal request starting at ``offset`` and asking for at most ``part`` bytes.

    ``offset`` must be a multiple of 1 KiB. ``precise`` is set only when the offset is not 4 KiB
    aligned, since then no plain request can start there.
    """
    if offset < 0 or offset % KiB:
        raise ValueError("a download offset is a multiple of 1 KiB")
    if part < KiB:
        raise ValueError("a download part is at least 1 KiB")
    room = min(part, MAX_DOWNLOAD_LIMIT, MiB - offset % MiB)  # never cross a 1 MiB boundary
    if offset % (4 * KiB) == 0 and room >= 4 * KiB:
        # Plain request: the largest power of two that fits and the offset is a multiple of,
        # which also keeps it inside the current MiB.
        limit = 4 * KiB
        while limit * 2 <= room and offset % (limit * 2) == 0:
            limit *= 2
        return Range(offset, limit)
    return Range(offset, room - room % KiB, precise=True)


def download_ranges(start: int, end: int, part: int) -> list[Range]:
    """Requests covering ``[start, end)`` (the last one may ask past ``end``: the server clips)."""
    ranges: list[Range] = []
    offset = start
    while offset < end:
        rng = next_range(offset, part)
        ranges.append(rng)
        offset = rng.end
    return ranges


@dataclass(frozen=True)
class Layout:
    """How a file of ``size`` bytes is cut: download ranges, upload parts and the blocks joining them."""

    size: int
    download_part: int
    upload_part: int

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError("a transferred file has at least one byte")
        if not valid_download_part(self.download_part):
            raise ValueError("the download part size is a power of two from 4 KiB to 1 MiB")
        if not valid_upload_part(self.upload_part):
            raise ValueError("the upload part size is a power of two from 1 KiB to 512 KiB")

    @property
    def block(self) -> int:
        return max(self.download_part, self.upload_part)

    @property
    def blocks(self) -> int:
        return part_count(self.size, self.block)

    @property
    def upload_parts(self) -> int:
        return part_count(self.size, self.upload_part)

    @property
    def big(self) -> bool:
        return is_big(self.size)

    def block_span(self, block: int) -> tuple[int, int]:
        start = block * self.block
        return start, min(self.size, start + self.block)

    def ranges(self, block: int) -> list[Range]:
        start, end = self.block_span(block)
        return download_ranges(start, end, self.download_part)

    def uploads(self, block: int) -> range:
        """Indexes of the upload parts inside ``block``."""
        start, end = self.block_span(block)
        return range(start // self.upload_part, part_count(end, self.upload_part))

    def expected(self, rng: Range) -> int:
        """How many bytes the server returns for ``rng`` of this file."""
        return max(0, min(rng.limit, self.size - rng.offset))
