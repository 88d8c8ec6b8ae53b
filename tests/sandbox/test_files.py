"""FileStore (world/files.py) and the upload/download handlers (rpc/upload.py), without the network."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import sqlite3
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telethon.extensions import BinaryReader
from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.centres import upload_owner
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError, serialize_result
from telepi.sandbox.rpc.upload import build_registry, check_range
from telepi.sandbox.world.files import (
    GEN_BLOCK,
    MAX_PART_SIZE,
    SMALL_FILE_MAX,
    FileStore,
    KiB,
    MiB,
    generated_bytes,
    generated_sha256,
    open_generated,
)

OWNER = 7


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[FileStore]:
    with FileStore(tmp_path, upload_ttl=600, clock=clock) as s:
        yield s


def error_of(call: object, *args: object, **kwargs: object) -> str:
    assert callable(call)
    with pytest.raises(RpcError) as info:
        call(*args, **kwargs)
    return info.value.message


def split(data: bytes, part_size: int) -> list[bytes]:
    return [data[i : i + part_size] for i in range(0, len(data), part_size)]


def upload(
    store: FileStore, data: bytes, part_size: int, *, big: bool, client_id: int = 1, shuffle: bool = True
) -> int:
    parts = list(enumerate(split(data, part_size)))
    if shuffle:
        random.Random(client_id).shuffle(parts)
    for index, chunk in parts:
        store.save_part(OWNER, client_id, index, chunk, big=big, total_parts=len(parts) if big else None)
    if big:
        return store.finish_upload(OWNER, types.InputFileBig(client_id, len(parts), "f.bin"))
    md5 = hashlib.md5(data).hexdigest()
    return store.finish_upload(OWNER, types.InputFile(client_id, len(parts), "f.bin", md5))


# ---- generated content ----------------------------------------------------------------------


def test_generated_content_is_deterministic_and_keyed_by_seed_and_size() -> None:
    a = generated_bytes("s", 3 * GEN_BLOCK, 0, 3 * GEN_BLOCK)
    assert a == generated_bytes("s", 3 * GEN_BLOCK, 0, 3 * GEN_BLOCK)
    assert len(a) == 3 * GEN_BLOCK
    assert a != generated_bytes("t", 3 * GEN_BLOCK, 0, 3 * GEN_BLOCK)
    assert a[:GEN_BLOCK] != generated_bytes("s", 3 * GEN_BLOCK + 1, 0, GEN_BLOCK)
    assert generated_bytes(5, 100, 0, 100) == generated_bytes("5", 100, 0, 100)
    # Blocks differ from each other (an off-by-one-block read cannot go unnoticed).
    assert a[:GEN_BLOCK] != a[GEN_BLOCK : 2 * GEN_BLOCK]


def test_generated_reads_clip_at_the_end() -> None:
    size = GEN_BLOCK + 10
    whole = generated_bytes(1, size, 0, 10 * GEN_BLOCK)
    assert len(whole) == size
    assert generated_bytes(1, size, size - 4, 100) == whole[-4:]
    assert generated_bytes(1, size, size, 100) == b""
    assert generated_bytes(1, size, size + 5000, 100) == b""
    assert generated_bytes(1, 0, 0, 100) == b""
    with pytest.raises(ValueError):
        generated_bytes(1, size, -1, 10)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=5 * GEN_BLOCK),
    cuts=st.lists(st.integers(min_value=0, max_value=5 * GEN_BLOCK + 100), max_size=12),
)
def test_generated_slices_concatenate_to_one_read(size: int, cuts: list[int]) -> None:
    whole = generated_bytes("h", size, 0, size)
    bounds = [0, *sorted(cuts), max([size, *cuts]) + 100]
    pieces = [generated_bytes("h", size, a, b - a) for a, b in itertools.pairwise(bounds)]
    assert b"".join(pieces) == whole


def test_generated_file_in_store_costs_no_disk_and_reads_like_the_pure_function(
    store: FileStore, tmp_path: Path
) -> None:
    size = 2 * 1024 * MiB
    file_id = store.add_generated("big", size)
    assert store.size(file_id) == size
    offset = size - 300 * KiB
    assert store.read(file_id, offset, MiB) == generated_bytes("big", size, offset, MiB)
    assert len(store.read(file_id, offset, MiB)) == 300 * KiB
    assert store.read(file_id, size, MiB) == b""
    blob_bytes = sum(p.stat().st_size for p in (tmp_path / "blobs").iterdir())
    assert blob_bytes == 0


def test_sha256_matches_hashlib_and_is_cached_in_sqlite(store: FileStore, tmp_path: Path) -> None:
    size = 3 * MiB + 123
    file_id = store.add_generated("sha", size)
    expected = hashlib.sha256(generated_bytes("sha", size, 0, size)).hexdigest()
    assert generated_sha256("sha", size) == expected
    assert store.sha256(file_id) == expected
    row = sqlite3.connect(tmp_path / "files.sqlite").execute("SELECT sha256 FROM files WHERE id = ?", (file_id,))
    assert row.fetchone()[0] == expected


def test_streams_read_and_seek(store: FileStore) -> None:
    size = 2 * MiB + 77
    expected = generated_bytes("st", size, 0, size)
    with open_generated("st", size) as stream:
        assert stream.read() == expected
        stream.seek(-77, io.SEEK_END)
        assert stream.read() == expected[-77:]
    file_id = store.add_bytes(expected[:5000])
    with store.open_stream(file_id) as stream:
        stream.seek(4000)
        assert stream.read(10) == expected[4000:4010]
        assert stream.tell() == 4010
    assert b"".join(store.iter_bytes(file_id, 999)) == expected[:5000]


# ---- uploads: happy paths -------------------------------------------------------------------


def test_small_upload_out_of_order_with_md5(store: FileStore) -> None:
    data = random.Random(1).randbytes(3 * 128 * KiB + 1000)
    file_id = upload(store, data, 128 * KiB, big=False)
    assert store.size(file_id) == len(data)
    assert store.read(file_id, 0, len(data) + 10) == data
    assert store.sha256(file_id) == hashlib.sha256(data).hexdigest()


def test_small_upload_without_md5_and_single_part(store: FileStore) -> None:
    store.save_part(OWNER, 9, 0, b"hello", big=False, total_parts=None)
    file_id = store.finish_upload(OWNER, types.InputFile(9, 1, "a.txt", ""))
    assert store.read(file_id, 0, 100) == b"hello"


@pytest.mark.parametrize("part_size", [KiB, 128 * KiB, 256 * KiB, MAX_PART_SIZE])
def test_big_upload_out_of_order_any_slice_reads_back(store: FileStore, part_size: int) -> None:
    data = random.Random(part_size).randbytes(12 * MiB + 4321 if part_size > KiB else 300 * KiB + 5)
    file_id = upload(store, data, part_size, big=True)
    assert store.read(file_id, 0, len(data)) == data
    rng = random.Random(0)
    for _ in range(50):
        offset = rng.randrange(len(data) + 10)
        limit = rng.randrange(2 * MAX_PART_SIZE)
        assert store.read(file_id, offset, limit) == data[offset : offset + limit]


def test_resent_part_overwrites_and_same_input_file_finishes_once(store: FileStore) -> None:
    store.save_part(OWNER, 3, 0, b"x" * KiB, big=False, total_parts=None)
    store.save_part(OWNER, 3, 1, b"old", big=False, total_parts=None)
    store.save_part(OWNER, 3, 1, b"new", big=False, total_parts=None)  # a retry after a reconnect
    input_file = types.InputFile(3, 2, "a", hashlib.md5(b"x" * KiB + b"new").hexdigest())
    first = store.finish_upload(OWNER, input_file)
    assert store.read(first, KiB, 10) == b"new"
    assert store.finish_upload(OWNER, input_file) == first  # e.g. sendMedia retried
    assert error_of(store.finish_upload, OWNER, types.InputFile(3, 5, "a", "")) == "FILE_PARTS_INVALID"


def test_uploads_are_per_owner(store: FileStore) -> None:
    store.save_part(OWNER, 4, 0, b"mine", big=False, total_parts=None)
    assert error_of(store.finish_upload, OWNER + 1, types.InputFile(4, 1, "a", "")) == "FILE_PART_0_MISSING"


def test_upload_parts_go_to_disk_not_memory(store: FileStore) -> None:
    total = 64  # 32 MiB, each part a fresh object so that keeping any of them would show
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        for index in range(total):
            part = bytes([index]) * MAX_PART_SIZE
            expected.update(part)
            store.save_part(OWNER, 8, index, part, big=True, total_parts=total)
        del part
        file_id = store.finish_upload(OWNER, types.InputFileBig(8, total, "z"))
        assert store.sha256(file_id) == expected.hexdigest()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB


# ---- uploads: Telegram's errors -------------------------------------------------------------


def test_part_size_and_index_errors(store: FileStore) -> None:
    save = store.save_part
    assert error_of(save, OWNER, 1, 0, b"", big=False, total_parts=None) == "FILE_PART_EMPTY"
    too_big = bytes(MAX_PART_SIZE + 1)
    assert error_of(save, OWNER, 1, 0, too_big, big=False, total_parts=None) == "FILE_PART_TOO_BIG"
    assert error_of(save, OWNER, 1, -1, b"x", big=False, total_parts=None) == "FILE_PART_INVALID"
    assert error_of(save, OWNER, 1, 4000, b"x", big=False, total_parts=None) == "FILE_PART_INVALID"
    assert error_of(save, OWNER, 2, 5, bytes(KiB), big=True, total_parts=5) == "FILE_PART_INVALID"
    # A non-last big part must be a 1 KiB multiple dividing 512 KiB.
    assert error_of(save, OWNER, 2, 0, bytes(1000), big=True, total_parts=5) == "FILE_PART_SIZE_INVALID"
    assert error_of(save, OWNER, 2, 0, bytes(3 * KiB), big=True, total_parts=5) == "FILE_PART_SIZE_INVALID"
    save(OWNER, 2, 4, bytes(1000), big=True, total_parts=5)  # the last part may be any size
    save(OWNER, 2, 0, bytes(64 * KiB), big=True, total_parts=5)
    assert error_of(save, OWNER, 2, 1, bytes(128 * KiB), big=True, total_parts=5) == "FILE_PART_SIZE_CHANGED"
    assert error_of(save, OWNER, 2, 4, bytes(65 * KiB), big=True, total_parts=5) == "FILE_PART_SIZE_INVALID"


def test_part_count_errors_and_premium_cap(store: FileStore) -> None:
    save = store.save_part
    assert error_of(save, OWNER, 1, 0, b"x", big=True, total_parts=0) == "FILE_PARTS_INVALID"
    assert error_of(save, OWNER, 1, 0, bytes(KiB), big=True, total_parts=4001) == "FILE_PARTS_INVALID"
    save(OWNER, 1, 0, bytes(KiB), big=True, total_parts=8000, part_cap=8000)
    save(OWNER, 1, 7999, b"end", big=True, total_parts=8000, part_cap=8000)
    assert error_of(save, OWNER, 1, 1, bytes(KiB), big=True, total_parts=10, part_cap=8000) == (
        "FILE_PARTS_INVALID"  # total_parts changed mid-upload
    )
    assert error_of(save, OWNER, 1, 1, bytes(KiB), big=False, total_parts=None) == "FILE_PARTS_INVALID"
    assert error_of(store.finish_upload, OWNER, types.InputFileBig(1, 7000, "a")) == "FILE_PARTS_INVALID"
    assert error_of(store.finish_upload, OWNER, types.InputFile(1, 8000, "a", "")) == "FILE_PARTS_INVALID"
    assert error_of(store.finish_upload, OWNER, types.InputFileBig(1, 0, "a")) == "FILE_PARTS_INVALID"


def test_small_uploads_are_capped_at_10_mib(store: FileStore) -> None:
    save = store.save_part
    # Part 20 of 512 KiB would start at 10 MiB: refused on arrival.
    assert error_of(save, OWNER, 1, 20, bytes(MAX_PART_SIZE), big=False, total_parts=None) == "FILE_PART_INVALID"
    for index in range(SMALL_FILE_MAX // MAX_PART_SIZE):
        save(OWNER, 1, index, bytes(MAX_PART_SIZE), big=False, total_parts=None)
    assert store.finish_upload(OWNER, types.InputFile(1, 20, "ok", "")) > 0  # exactly 10 MiB is fine
    for index in range(SMALL_FILE_MAX // MAX_PART_SIZE):
        save(OWNER, 2, index, bytes(MAX_PART_SIZE), big=False, total_parts=None)
    save(OWNER, 2, 20, b"!", big=False, total_parts=None)
    assert error_of(store.finish_upload, OWNER, types.InputFile(2, 21, "no", "")) == "FILE_PARTS_INVALID"


def test_finish_errors(store: FileStore) -> None:
    finish = store.finish_upload
    assert error_of(finish, OWNER, types.InputFile(99, 1, "a", "")) == "FILE_PART_0_MISSING"
    for index in (0, 1, 3):
        store.save_part(OWNER, 1, index, bytes(KiB), big=False, total_parts=None)
    assert error_of(finish, OWNER, types.InputFile(1, 4, "a", "")) == "FILE_PART_2_MISSING"
    assert error_of(finish, OWNER, types.InputFile(1, 3, "a", "")) == "FILE_PARTS_INVALID"  # part 3 > count
    assert error_of(finish, OWNER, types.InputFileBig(1, 4, "a")) == "FILE_PARTS_INVALID"  # small as big
    store.save_part(OWNER, 1, 2, bytes(KiB), big=False, total_parts=None)
    assert error_of(finish, OWNER, types.InputFile(1, 4, "a", "0" * 32)) == "MD5_CHECKSUM_INVALID"
    assert finish(OWNER, types.InputFile(1, 4, "a", hashlib.md5(bytes(4 * KiB)).hexdigest().upper())) > 0


@pytest.mark.parametrize(
    ("sizes", "error"),
    [
        ([3 * KiB, 3 * KiB, 10], "FILE_PART_SIZE_INVALID"),  # 3 KiB does not divide 512 KiB
        ([1000, 1000], "FILE_PART_SIZE_INVALID"),  # not a 1 KiB multiple
        ([KiB, 2 * KiB], "FILE_PART_SIZE_INVALID"),  # last part larger than the others
        ([2 * KiB, KiB, 2 * KiB, 5], "FILE_PART_SIZE_CHANGED"),
    ],
)
def test_small_upload_part_size_rules_on_finish(store: FileStore, sizes: list[int], error: str) -> None:
    for index, size in enumerate(sizes):
        store.save_part(OWNER, 1, index, bytes(size), big=False, total_parts=None)
    assert error_of(store.finish_upload, OWNER, types.InputFile(1, len(sizes), "a", "")) == error


# ---- persistence and expiry -----------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    data = random.Random(2).randbytes(11 * MiB + 7)
    parts = split(data, 256 * KiB)
    with FileStore(tmp_path, clock=clock) as first:
        generated = first.add_generated("keep", 5 * MiB)
        for index in range(0, len(parts), 2):
            first.save_part(OWNER, 42, index, parts[index], big=True, total_parts=len(parts))
        small = upload(first, b"small file", KiB, big=False, client_id=43)
        digest = first.sha256(generated)
    with FileStore(tmp_path, clock=clock) as second:
        for index in range(1, len(parts), 2):
            second.save_part(OWNER, 42, index, parts[index], big=True, total_parts=len(parts))
        big = second.finish_upload(OWNER, types.InputFileBig(42, len(parts), "b"))
        assert second.read(big, 0, len(data)) == data
        assert second.read(small, 0, 100) == b"small file"
        assert second.read(generated, MiB, 10) == generated_bytes("keep", 5 * MiB, MiB, 10)
        assert second.sha256(generated) == digest
    with FileStore(tmp_path, clock=clock) as third:
        assert third.read(big, 0, len(data)) == data


def test_unfinished_uploads_expire_and_finished_files_stay(store: FileStore, clock: Clock, tmp_path: Path) -> None:
    store.save_part(OWNER, 1, 0, b"stale", big=False, total_parts=None)
    done = upload(store, b"finished", KiB, big=False, client_id=2)
    blobs_before = set((tmp_path / "blobs").iterdir())
    clock.now += 599
    assert store.expire_uploads() == 0
    clock.now += 2
    store.save_part(OWNER, 3, 0, b"fresh", big=False, total_parts=None)  # sweeps on the way
    assert error_of(store.finish_upload, OWNER, types.InputFile(1, 1, "a", "")) == "FILE_PART_0_MISSING"
    assert store.read(done, 0, 100) == b"finished"
    assert len(blobs_before - set((tmp_path / "blobs").iterdir())) == 1  # the stale part's blob is gone
    assert store.finish_upload(OWNER, types.InputFile(3, 1, "a", "")) > 0
    store.save_part(OWNER, 4, 0, b"forgotten", big=False, total_parts=None)
    clock.now += 601
    assert store.expire_uploads() == 1  # the sweep drops it without anyone naming it
    assert len(list((tmp_path / "blobs").iterdir())) == len(blobs_before)


def test_unknown_file_id(store: FileStore) -> None:
    assert error_of(store.read, 12345, 0, 10) == "FILE_ID_INVALID"
    assert not store.exists(12345)


# ---- handlers -------------------------------------------------------------------------------


class DictLocator:
    """Test locator: documents by id, with one valid file reference."""

    def __init__(self) -> None:
        self.documents: dict[int, int] = {}

    def locate(self, ctx: RpcContext, location: TLObject) -> int:
        if not isinstance(location, types.InputDocumentFileLocation | types.InputPhotoFileLocation):
            raise RpcError(400, "LOCATION_INVALID")
        if location.id not in self.documents:
            raise RpcError(400, "FILE_ID_INVALID")
        if location.file_reference != b"ref":
            raise RpcError(400, "FILE_REFERENCE_EXPIRED")
        return self.documents[location.id]


def ctx(user_id: int | None = OWNER) -> RpcContext:
    return RpcContext(auth_key_id=1, session_id=2, user_id=user_id)


async def call(registry: Registry, context: RpcContext, request: TLObject) -> object:
    """Invoke as the server would: parse the request's TL bytes, answer TL bytes, parse those back."""
    parsed = BinaryReader(bytes(request)).tgread_object()
    result = await registry.invoke(context, parsed)
    return BinaryReader(serialize_result(result)).tgread_object()


@pytest.fixture
def locator() -> DictLocator:
    return DictLocator()


@pytest.fixture
def registry(store: FileStore, locator: DictLocator) -> Registry:
    return build_registry(store, locator, lambda user_id: 8000 if user_id == 100 else 4000)


def doc(doc_id: int, ref: bytes = b"ref") -> types.InputDocumentFileLocation:
    return types.InputDocumentFileLocation(id=doc_id, access_hash=1, file_reference=ref, thumb_size="")


async def test_upload_then_download_like_telethon(registry: Registry, store: FileStore, locator: DictLocator) -> None:
    data = random.Random(3).randbytes(3 * MiB + 5)
    part_size = 128 * KiB  # Telethon's choice up to 100 MB
    parts = split(data, part_size)
    for index, chunk in enumerate(parts):
        request = functions.upload.SaveBigFilePartRequest(555, index, len(parts), chunk)
        assert await call(registry, ctx(), request) is True
    locator.documents[1] = store.finish_upload(upload_owner(OWNER, 2), types.InputFileBig(555, len(parts), "d.bin"))

    received, offset = [], 0
    while True:  # Telethon's _DirectDownloadIter: fixed size until a short chunk
        result = await call(registry, ctx(), functions.upload.GetFileRequest(doc(1), offset, 512 * KiB))
        assert isinstance(result, types.upload.File)
        assert isinstance(result.type, types.storage.FilePartial)
        received.append(result.bytes)
        if len(result.bytes) < 512 * KiB:
            break
        offset += 512 * KiB
    assert b"".join(received) == data


async def test_small_upload_through_handlers(registry: Registry, store: FileStore) -> None:
    assert await call(registry, ctx(), functions.upload.SaveFilePartRequest(9, 1, b"B" * 10)) is True
    assert await call(registry, ctx(), functions.upload.SaveFilePartRequest(9, 0, b"A" * KiB)) is True
    md5 = hashlib.md5(b"A" * KiB + b"B" * 10).hexdigest()
    file_id = store.finish_upload(upload_owner(OWNER, 2), types.InputFile(9, 2, "s", md5))
    assert store.read(file_id, KiB - 1, 100) == b"A" + b"B" * 10


async def test_handler_errors(registry: Registry, store: FileStore, locator: DictLocator) -> None:
    locator.documents[1] = store.add_generated("g", MiB)
    too_big = functions.upload.SaveFilePartRequest(1, 0, bytes(MAX_PART_SIZE + KiB))
    with pytest.raises(RpcError, match="FILE_PART_TOO_BIG"):
        await call(registry, ctx(), too_big)
    with pytest.raises(RpcError, match="FILE_REFERENCE_EXPIRED"):
        await call(registry, ctx(), functions.upload.GetFileRequest(doc(1, b"old"), 0, 4096))
    with pytest.raises(RpcError, match="FILE_ID_INVALID"):
        await call(registry, ctx(), functions.upload.GetFileRequest(doc(2), 0, 4096))
    with pytest.raises(RpcError, match="LIMIT_INVALID"):
        await call(registry, ctx(), functions.upload.GetFileRequest(doc(1), 0, 3 * 4096))


async def test_calls_need_a_logged_in_user(registry: Registry) -> None:
    for request in (
        functions.upload.SaveFilePartRequest(1, 0, b"x"),
        functions.upload.SaveBigFilePartRequest(1, 0, 1, b"x"),
        functions.upload.GetFileRequest(doc(1), 0, 4096),
    ):
        with pytest.raises(RpcError) as info:
            await call(registry, ctx(None), request)
        assert (info.value.code, info.value.message) == (401, "AUTH_KEY_UNREGISTERED")


async def test_part_cap_comes_from_the_caller(registry: Registry) -> None:
    with pytest.raises(RpcError, match="FILE_PARTS_INVALID"):
        await call(registry, ctx(), functions.upload.SaveBigFilePartRequest(1, 0, 6000, bytes(KiB)))
    with pytest.raises(RpcError, match="FILE_PART_INVALID"):
        await call(registry, ctx(), functions.upload.SaveBigFilePartRequest(1, 5000, 6000, bytes(KiB)))
    request = functions.upload.SaveBigFilePartRequest(1, 5000, 6000, bytes(KiB))
    assert await call(registry, ctx(100), request) is True  # premium


async def test_download_edges(registry: Registry, store: FileStore, locator: DictLocator) -> None:
    size = MiB + 1000
    locator.documents[1] = store.add_generated("e", size)
    last = await call(registry, ctx(), functions.upload.GetFileRequest(doc(1), MiB, 4096))
    assert isinstance(last, types.upload.File)
    assert last.bytes == generated_bytes("e", size, MiB, 1000)
    past = await call(registry, ctx(), functions.upload.GetFileRequest(doc(1), 2 * MiB, MiB))
    assert isinstance(past, types.upload.File)
    assert past.bytes == b""
    precise = functions.upload.GetFileRequest(doc(1), 3 * KiB, 5 * KiB, precise=True)
    result = await call(registry, ctx(), precise)
    assert isinstance(result, types.upload.File)
    assert result.bytes == generated_bytes("e", size, 3 * KiB, 5 * KiB)
    assert result.mtime == store.mtime(locator.documents[1])
    photo = types.InputPhotoFileLocation(id=1, access_hash=1, file_reference=b"ref", thumb_size="y")
    result = await call(registry, ctx(), functions.upload.GetFileRequest(photo, 0, 4096))
    assert isinstance(result, types.upload.File)
    assert isinstance(result.type, types.storage.FileJpeg)


@pytest.mark.parametrize(
    ("offset", "limit", "precise", "error"),
    [
        (0, MiB, False, None),
        (512 * KiB, 512 * KiB, False, None),
        (4096, 4096, False, None),
        (MiB - 4096, 4096, False, None),
        (0, 2 * MiB, False, "LIMIT_INVALID"),
        (0, 0, False, "LIMIT_INVALID"),
        (0, 12 * KiB, False, "LIMIT_INVALID"),  # does not divide 1 MiB
        (0, 2 * KiB, False, "LIMIT_INVALID"),  # not a 4 KiB multiple
        (2 * KiB, 4096, False, "OFFSET_INVALID"),
        (-4096, 4096, False, "OFFSET_INVALID"),
        (4096, MiB, False, "LIMIT_INVALID"),  # crosses a 1 MiB boundary
        (MiB - 4096, 8192, False, "LIMIT_INVALID"),  # crosses a 1 MiB boundary
        (KiB, 3 * KiB, True, None),
        (MiB - KiB, KiB, True, None),
        (KiB, MiB - KiB, True, None),
        (KiB, MiB, True, "LIMIT_INVALID"),  # crosses
        (MiB - KiB, 2 * KiB, True, "LIMIT_INVALID"),  # crosses
        (0, MiB + KiB, True, "LIMIT_INVALID"),
        (512, KiB, True, "OFFSET_INVALID"),
        (0, 1500, True, "LIMIT_INVALID"),
    ],
)
def test_get_file_range_rules(offset: int, limit: int, precise: bool, error: str | None) -> None:
    if error is None:
        check_range(offset, limit, precise=precise)
    else:
        assert error_of(check_range, offset, limit, precise=precise) == error


# ---- property: random slices of uploaded (slotted) and generated files ----------------------


@pytest.fixture(scope="module")
def slotted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FileStore, int, int, bytes]]:
    data = random.Random(4).randbytes(5 * 64 * KiB + 333)
    with FileStore(tmp_path_factory.mktemp("slotted")) as s:
        uploaded = upload(s, data, 64 * KiB, big=True)
        generated = s.add_generated("p", len(data))
        yield s, uploaded, generated, data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=5 * 64 * KiB + 400), max_size=10))
def test_store_slices_concatenate(slotted: tuple[FileStore, int, int, bytes], cuts: list[int]) -> None:
    store, uploaded, generated, data = slotted
    bounds = [0, *sorted(cuts), max([len(data), *cuts]) + 50]
    for file_id, whole in ((uploaded, data), (generated, store.read(generated, 0, len(data)))):
        pieces = [store.read(file_id, a, b - a) for a, b in itertools.pairwise(bounds)]
        assert b"".join(pieces) == whole
