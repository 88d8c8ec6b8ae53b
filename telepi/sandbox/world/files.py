"""The sandbox's file storage: generated files, uploaded parts and finished uploads.

Generated files cost nothing until read: their bytes are a pure function of (seed, size), produced
per 64 KiB block with SHAKE-128 (about 590 MiB/s on one core), so a 2 GiB file is neither on disk nor
in memory. Uploaded parts go straight to disk into a sparse blob with one 512 KiB slot per part, so
parts may arrive in any order and finishing an upload copies nothing: reads map logical offsets onto
the slots. Metadata lives in SQLite (WAL, one short transaction per write); blobs under ``blobs/``.

Upload rules follow https://core.telegram.org/api/files ("Uploading files") and Telegram's error
names; see :meth:`FileStore.save_part` and :meth:`FileStore.finish_upload`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telethon.tl import types

from telepi.sandbox.private import private_dir, private_file
from telepi.sandbox.rpc.dispatch import RpcError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

KiB = 1024
MiB = 1024 * KiB
MAX_PART_SIZE = 512 * KiB  # also the slot size of an upload blob
SMALL_FILE_MAX = 10 * MiB  # above this, uploads must use saveBigFilePart + InputFileBig
DEFAULT_PART_CAP = 4000  # upload_max_fileparts_default
PREMIUM_PART_CAP = 8000  # upload_max_fileparts_premium
DEFAULT_UPLOAD_TTL = 3600.0  # unfinished uploads are forgotten after this many idle seconds
GEN_BLOCK = 64 * KiB  # SHAKE output per block: large enough to be fast, small enough for 4 KiB reads
_SWEEP_INTERVAL = 60.0
_MAX_OPEN_FDS = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seed TEXT,                          -- generated content: the seed; NULL for stored content
    size INTEGER NOT NULL,
    path TEXT,                          -- stored content: blob name under blobs/
    chunk INTEGER NOT NULL DEFAULT 0,   -- logical part size in a slotted blob (0 = contiguous)
    sha256 TEXT,
    mtime INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner INTEGER NOT NULL,
    client_file_id INTEGER NOT NULL,
    big INTEGER NOT NULL,
    total_parts INTEGER,                -- declared by saveBigFilePart; the final count once finished
    part_size INTEGER,                  -- size of a non-last part, once one is known
    path TEXT NOT NULL,
    updated REAL NOT NULL,
    file_id INTEGER,                    -- the finished file, reused if the same InputFile is sent again
    UNIQUE (owner, client_file_id)
);
CREATE TABLE IF NOT EXISTS upload_parts (
    upload INTEGER NOT NULL,
    part INTEGER NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (upload, part)
) WITHOUT ROWID;
"""


def _bad(message: str) -> RpcError:
    return RpcError(400, message)


def valid_part_size(size: int) -> bool:
    """A non-last part's size: a multiple of 1 KiB that divides 512 KiB."""
    return 0 < size <= MAX_PART_SIZE and size % KiB == 0 and MAX_PART_SIZE % size == 0


# ---- generated content (pure) ---------------------------------------------------------------


def _gen_prefix(seed: int | str, size: int) -> bytes:
    # Length-prefixed so that no two (seed, size) pairs share a key.
    s = str(seed).encode()
    return b"telepi-gen\0" + len(s).to_bytes(4, "little") + s + size.to_bytes(8, "little")


@functools.lru_cache(maxsize=64)  # 4 MiB; small sequential reads hit the same block repeatedly
def _gen_block(prefix: bytes, block: int) -> bytes:
    return hashlib.shake_128(prefix + block.to_bytes(8, "little")).digest(GEN_BLOCK)


def generated_bytes(seed: int | str, size: int, offset: int, limit: int) -> bytes:
    """Bytes ``[offset, offset + limit)`` of the generated file (seed, size), clipped to ``size``.

    ``seed`` is used through ``str()``, so 7 and "7" name the same content. O(limit + 64 KiB).
    """
    if offset < 0 or limit < 0 or size < 0:
        raise ValueError("offset, limit and size must not be negative")
    end = min(size, offset + limit)
    if offset >= end:
        return b""
    prefix = _gen_prefix(seed, size)
    first, last = offset // GEN_BLOCK, (end - 1) // GEN_BLOCK
    base = first * GEN_BLOCK
    if first == last:
        return _gen_block(prefix, first)[offset - base : end - base]
    data = b"".join([_gen_block(prefix, block) for block in range(first, last + 1)])
    return data[offset - base : end - base]


def generated_sha256(seed: int | str, size: int) -> str:
    """Hex SHA-256 of a whole generated file, computed streaming."""
    digest = hashlib.sha256()
    for offset in range(0, size, MiB):
        digest.update(generated_bytes(seed, size, offset, MiB))
    return digest.hexdigest()


class _RangeReader(io.RawIOBase):
    """A seekable read-only stream over ``read_at(offset, limit)``."""

    def __init__(self, read_at: Callable[[int, int], bytes], size: int) -> None:
        super().__init__()
        self._read_at = read_at
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read_at(self._pos, min(len(view), MiB))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def open_generated(seed: int | str, size: int) -> io.BufferedReader:
    """A seekable binary stream of a generated file (e.g. for ``client.upload_file``)."""
    return io.BufferedReader(_RangeReader(lambda o, n: generated_bytes(seed, size, o, n), size), buffer_size=MiB)


# ---- the store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    seed: str | None
    size: int
    path: str | None
    chunk: int  # 0: contiguous; else part k's bytes live at k * MAX_PART_SIZE
    mtime: int


@dataclass(frozen=True)
class _Upload:
    id: int
    big: bool
    total_parts: int | None
    part_size: int | None
    path: str
    file_id: int | None
    updated: float


class FileStore:
    """Files of the sandbox, persisted in ``state_dir`` (``files.sqlite`` + ``blobs/``).

    Not thread-safe: use it from one thread (the server's event loop) at a time.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        upload_ttl: float = DEFAULT_UPLOAD_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._blobs = Path(state_dir) / "blobs"
        private_dir(self._blobs)
        self._ttl = upload_ttl
        self._clock = clock
        self._db = sqlite3.connect(
            private_file(Path(state_dir) / "files.sqlite"), isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._files: dict[int, _File] = {}  # files never change once written: cache them
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._next_sweep = 0.0
        self.expire_uploads()

    # -- lifecycle

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._db.close()

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        fd = os.open(self._blobs / path, os.O_RDWR | os.O_CREAT, 0o600)
        self._fds[path] = fd
        if len(self._fds) > _MAX_OPEN_FDS:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def _forget_fd(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    # -- adding files

    def add_generated(self, seed: int | str, size: int) -> int:
        """A file whose content is ``generated_bytes(seed, size, ...)``; costs no disk."""
        if size < 0:
            raise ValueError("size must not be negative")
        return self._insert_file(seed=str(seed), size=size, path=None, chunk=0)

    def add_bytes(self, data: bytes) -> int:
        """A file with the given content (for small seeded media such as photos)."""
        path = f"b-{secrets.token_hex(8)}.bin"
        with open(private_file(self._blobs / path), "wb") as f:
            f.write(data)
        return self._insert_file(seed=None, size=len(data), path=path, chunk=0)

    def _insert_file(self, *, seed: str | None, size: int, path: str | None, chunk: int) -> int:
        mtime = int(self._clock())
        cur = self._db.execute(
            "INSERT INTO files (seed, size, path, chunk, mtime) VALUES (?, ?, ?, ?, ?)",
            (seed, size, path, chunk, mtime),
        )
        file_id = cur.lastrowid
        assert file_id is not None
        self._files[file_id] = _File(seed, size, path, chunk, mtime)
        return file_id

    # -- uploads

    def save_part(
        self,
        owner: int,
        file_id: int,
        part: int,
        data: bytes,
        *,
        big: bool,
        total_parts: int | None,
        part_cap: int = DEFAULT_PART_CAP,
    ) -> None:
        """Store one part of the upload ``(owner, file_id)``; parts may arrive in any order.

        Raises ``RpcError`` FILE_PART_EMPTY, FILE_PART_TOO_BIG (> 512 KiB), FILE_PART_INVALID (index
        outside ``0..part_cap-1``/``total_parts``, or past 10 MiB of a small upload),
        FILE_PARTS_INVALID (``total_parts`` outside ``1..part_cap`` or changed, small/big mixed),
        FILE_PART_SIZE_INVALID (a non-last part whose size is not a 1 KiB multiple dividing 512 KiB,
        or a last part larger than the others) and FILE_PART_SIZE_CHANGED (non-last parts differ).
        Only big uploads know which part is last; small ones are checked fully by ``finish_upload``.
        """
        size = len(data)
        if size == 0:
            raise _bad("FILE_PART_EMPTY")
        if size > MAX_PART_SIZE:
            raise _bad("FILE_PART_TOO_BIG")
        if not 0 <= part < part_cap:
            raise _bad("FILE_PART_INVALID")
        is_last: bool | None = None  # unknown for small uploads
        if big:
            if total_parts is None or not 1 <= total_parts <= part_cap:
                raise _bad("FILE_PARTS_INVALID")
            if part >= total_parts:
                raise _bad("FILE_PART_INVALID")
            is_last = part == total_parts - 1
            if not is_last and not valid_part_size(size):
                raise _bad("FILE_PART_SIZE_INVALID")
        elif (part + 1) * size > SMALL_FILE_MAX:
            # Every earlier part is at least this big, so the file would exceed 10 MiB.
            raise _bad("FILE_PART_INVALID")

        now = self._clock()
        if now >= self._next_sweep:
            self.expire_uploads()
        upload = self._upload(owner, file_id, now)
        if upload is not None and upload.file_id is not None:
            # The client reuses an id whose upload was finished: that is a new upload.
            self._drop(upload)
            upload = None
        if upload is None:
            upload = self._new_upload(owner, file_id, big, total_parts if big else None, now)
        if upload.big != big:
            raise _bad("FILE_PARTS_INVALID")
        part_size = upload.part_size
        if big:
            if upload.total_parts != total_parts:
                raise _bad("FILE_PARTS_INVALID")
            if not is_last:
                if part_size is not None and part_size != size:
                    raise _bad("FILE_PART_SIZE_CHANGED")
                part_size = size
            elif part_size is not None and size > part_size:
                raise _bad("FILE_PART_SIZE_INVALID")

        os.pwrite(self._fd(upload.path), data, part * MAX_PART_SIZE)  # before the row: no row without data
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO upload_parts (upload, part, size) VALUES (?, ?, ?)",
                (upload.id, part, size),
            )
            db.execute("UPDATE uploads SET updated = ?, part_size = ? WHERE id = ?", (now, part_size, upload.id))

    def _upload(self, owner: int, client_file_id: int, now: float) -> _Upload | None:
        """The live upload ``(owner, client_file_id)``; one idle past the TTL is dropped on sight."""
        row = self._db.execute(
            "SELECT id, big, total_parts, part_size, path, file_id, updated FROM uploads"
            " WHERE owner = ? AND client_file_id = ?",
            (owner, client_file_id),
        ).fetchone()
        if row is None:
            return None
        upload = _Upload(row[0], bool(row[1]), row[2], row[3], row[4], row[5], row[6])
        if upload.updated < now - self._ttl:
            self._drop(upload)
            return None
        return upload

    def _drop(self, upload: _Upload) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM upload_parts WHERE upload = ?", (upload.id,))
            db.execute("DELETE FROM uploads WHERE id = ?", (upload.id,))
        if upload.file_id is None:  # a finished upload's blob belongs to its file
            self._forget_fd(upload.path)
            (self._blobs / upload.path).unlink(missing_ok=True)

    def _new_upload(self, owner: int, client_file_id: int, big: bool, total_parts: int | None, now: float) -> _Upload:
        path = f"u-{secrets.token_hex(8)}.bin"
        cur = self._db.execute(
            "INSERT INTO uploads (owner, client_file_id, big, total_parts, path, updated) VALUES (?, ?, ?, ?, ?, ?)",
            (owner, client_file_id, int(big), total_parts, path, now),
        )
        assert cur.lastrowid is not None
        return _Upload(cur.lastrowid, big, total_parts, None, path, None, now)

    def finish_upload(self, owner: int, input_file: types.InputFile | types.InputFileBig) -> int:
        """Turn the uploaded parts named by ``input_file`` into a file; returns its file id.

        Sending the same InputFile again returns the same file. Raises ``RpcError``
        FILE_PARTS_INVALID (count outside 1..saved parts, small/big mismatch, small file over
        10 MiB), FILE_PART_<n>_MISSING (lowest missing part), FILE_PART_SIZE_INVALID /
        FILE_PART_SIZE_CHANGED (part sizes break the rules) and MD5_CHECKSUM_INVALID (small files
        whose ``md5_checksum`` is set and differs).
        """
        big = isinstance(input_file, types.InputFileBig)
        parts: int = input_file.parts
        if parts < 1:
            raise _bad("FILE_PARTS_INVALID")
        now = self._clock()
        if now >= self._next_sweep:
            self.expire_uploads()
        upload = self._upload(owner, input_file.id, now)
        if upload is None:
            raise _bad("FILE_PART_0_MISSING")
        if upload.big != big:
            raise _bad("FILE_PARTS_INVALID")
        if upload.file_id is not None:
            if upload.total_parts != parts:
                raise _bad("FILE_PARTS_INVALID")
            return upload.file_id
        if big and upload.total_parts != parts:
            raise _bad("FILE_PARTS_INVALID")

        sizes = dict(self._db.execute("SELECT part, size FROM upload_parts WHERE upload = ?", (upload.id,)).fetchall())
        if max(sizes, default=-1) >= parts:
            raise _bad("FILE_PARTS_INVALID")
        for index in range(parts):
            if index not in sizes:
                raise _bad(f"FILE_PART_{index}_MISSING")
        part_size, last = sizes[0], sizes[parts - 1]
        if parts > 1:
            if not valid_part_size(part_size) or last > part_size:
                raise _bad("FILE_PART_SIZE_INVALID")
            if any(sizes[index] != part_size for index in range(1, parts - 1)):
                raise _bad("FILE_PART_SIZE_CHANGED")
        size = part_size * (parts - 1) + last
        if not big and size > SMALL_FILE_MAX:
            raise _bad("FILE_PARTS_INVALID")
        chunk = 0 if parts == 1 or part_size == MAX_PART_SIZE else part_size
        entry = _File(None, size, upload.path, chunk, int(now))

        md5 = "" if big else str(input_file.md5_checksum or "").lower()
        if md5:
            digest = hashlib.md5()
            for piece in self._iter(entry):
                digest.update(piece)
            if digest.hexdigest() != md5:
                raise _bad("MD5_CHECKSUM_INVALID")

        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO files (seed, size, path, chunk, mtime) VALUES (NULL, ?, ?, ?, ?)",
                (size, upload.path, chunk, entry.mtime),
            )
            file_id = cur.lastrowid
            assert file_id is not None
            db.execute(
                "UPDATE uploads SET file_id = ?, total_parts = ?, updated = ? WHERE id = ?",
                (file_id, parts, now, upload.id),
            )
            db.execute("DELETE FROM upload_parts WHERE upload = ?", (upload.id,))
        self._files[file_id] = entry
        return file_id

    def expire_uploads(self) -> int:
        """Delete uploads idle for longer than the TTL; returns how many unfinished ones were dropped.

        Runs by itself at most once a minute; an expired upload is also refused when it is next named.
        """
        now = self._clock()
        self._next_sweep = now + min(_SWEEP_INTERVAL, self._ttl)
        rows = self._db.execute(
            "SELECT id, big, total_parts, part_size, path, file_id, updated FROM uploads WHERE updated < ?",
            (now - self._ttl,),
        ).fetchall()
        for row in rows:
            self._drop(_Upload(row[0], bool(row[1]), row[2], row[3], row[4], row[5], row[6]))
        return sum(1 for row in rows if row[5] is None)

    # -- reading

    def _file(self, file_id: int) -> _File:
        entry = self._files.get(file_id)
        if entry is None:
            row = self._db.execute(
                "SELECT seed, size, path, chunk, mtime FROM files WHERE id = ?", (file_id,)
            ).fetchone()
            if row is None:
                raise _bad("FILE_ID_INVALID")
            entry = self._files[file_id] = _File(*row)
        return entry

    def exists(self, file_id: int) -> bool:
        try:
            self._file(file_id)
        except RpcError:
            return False
        return True

    def size(self, file_id: int) -> int:
        return self._file(file_id).size

    def mtime(self, file_id: int) -> int:
        return self._file(file_id).mtime

    def read(self, file_id: int, offset: int, limit: int) -> bytes:
        """Bytes ``[offset, offset + limit)`` of a file; fewer (or none) past its end. O(limit)."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        return self._read(self._file(file_id), offset, limit)

    def _read(self, entry: _File, offset: int, limit: int) -> bytes:
        if entry.seed is not None:
            return generated_bytes(entry.seed, entry.size, offset, limit)
        end = min(entry.size, offset + limit)
        if offset >= end:
            return b""
        assert entry.path is not None
        fd = self._fd(entry.path)
        if not entry.chunk:
            return os.pread(fd, end - offset, offset)
        pieces: list[bytes] = []
        pos = offset
        while pos < end:  # one pread per part touched (a few per request)
            part, within = divmod(pos, entry.chunk)
            count = min(entry.chunk - within, end - pos)
            pieces.append(os.pread(fd, count, part * MAX_PART_SIZE + within))
            pos += count
        return b"".join(pieces)

    def _iter(self, entry: _File, chunk_size: int = MiB) -> Iterator[bytes]:
        for offset in range(0, entry.size, chunk_size):
            yield self._read(entry, offset, chunk_size)

    def iter_bytes(self, file_id: int, chunk_size: int = MiB) -> Iterator[bytes]:
        """The whole file in chunks of ``chunk_size`` bytes."""
        return self._iter(self._file(file_id), chunk_size)

    def open_stream(self, file_id: int) -> io.BufferedReader:
        """A seekable binary stream of the file."""
        entry = self._file(file_id)
        return io.BufferedReader(_RangeReader(lambda o, n: self._read(entry, o, n), entry.size), buffer_size=MiB)

    def sha256(self, file_id: int) -> str:
        """Hex SHA-256 of the file, computed streaming once and cached in SQLite."""
        entry = self._file(file_id)
        row: Any = self._db.execute("SELECT sha256 FROM files WHERE id = ?", (file_id,)).fetchone()
        if row[0]:
            return str(row[0])
        digest = hashlib.sha256()
        for piece in self._iter(entry):
            digest.update(piece)
        value = digest.hexdigest()
        self._db.execute("UPDATE files SET sha256 = ? WHERE id = ?", (value, file_id))
        return value
