"""Photos as Telegram keeps them (``telepi/sandbox/world/photos.py``): an upload is re-encoded into JPEG sizes,
so a copy of a photo shows its dimensions and sizes, never its bytes; documents stay byte-exact."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon.tl import functions, types

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.world.photos import MIN_SIZE, image_size, jpeg_bytes, plan
from tests.sandbox.worldkit import Harness, base_world


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, base_world())
    yield harness
    harness.close()


def png(w: int, h: int, padding: int = 64) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\0" * padding


async def send_photo(h: Harness, data: bytes, random_id: int = 1, *, spoiler: bool = False) -> types.Photo:
    media = types.InputMediaUploadedPhoto(h.upload("alice", data, name="p.png"), spoiler=spoiler)
    request = functions.messages.SendMediaRequest(h.input_peer("forum"), media, "", random_id=random_id)
    result = await h.call("alice", request)
    photo = result.updates[1].message.media.photo
    assert isinstance(photo, types.Photo)
    return photo


async def download(h: Harness, photo: types.Photo, size: str) -> bytes:
    location = types.InputPhotoFileLocation(photo.id, photo.access_hash, photo.file_reference, size)
    got = await h.call("bob", functions.upload.GetFileRequest(location, 0, 1024 * 1024))
    return bytes(got.bytes)


async def test_an_uploaded_photo_is_re_encoded_into_jpeg_sizes(h: Harness) -> None:
    image = png(1000, 500, padding=5000)
    photo = await send_photo(h, image)
    stripped, *boxes, largest = photo.sizes
    assert isinstance(stripped, types.PhotoStrippedSize) and stripped.type == "i" and stripped.bytes[0] == 1
    assert [(s.type, s.w, s.h) for s in boxes] == [("s", 100, 50), ("m", 320, 160), ("x", 800, 400)]
    assert all(isinstance(s, types.PhotoSize) for s in boxes)
    assert isinstance(largest, types.PhotoSizeProgressive) and (largest.type, largest.w, largest.h) == ("y", 1000, 500)
    full = await download(h, photo, "y")
    assert full != image and full.startswith(b"\xff\xd8") and image_size(full) == (1000, 500)
    assert len(full) == max(largest.sizes) < len(image)  # Telegram's JPEG, not the PNG that was sent
    for size in boxes:  # every size is a JPEG of its own dimensions
        data = await download(h, photo, size.type)
        assert len(data) == size.size and image_size(data) == (size.w, size.h)
    with pytest.raises(RpcError, match="LOCATION_INVALID"):  # the stripped preview lives in the message only
        await download(h, photo, "i")


async def test_the_same_photo_sent_again_keeps_its_sizes_but_not_its_bytes(h: Harness) -> None:
    first = await send_photo(h, jpeg_bytes("pic", 20_000, 1280, 720), random_id=1)
    bytes_first = await download(h, first, "y")
    again = await send_photo(h, bytes_first, random_id=2)
    bytes_again = await download(h, again, "y")
    shape = [(s.type, getattr(s, "w", 0), getattr(s, "h", 0)) for s in first.sizes]
    assert shape == [(s.type, getattr(s, "w", 0), getattr(s, "h", 0)) for s in again.sizes]
    assert bytes_again != bytes_first and image_size(bytes_again) == image_size(bytes_first) == (1280, 720)


async def test_a_photo_larger_than_2560_is_scaled_down(h: Harness) -> None:
    photo = await send_photo(h, png(4000, 3000))
    assert [(s.type, s.w, s.h) for s in photo.sizes[1:]][-2:] == [("y", 1280, 960), ("w", 2560, 1920)]
    assert image_size(await download(h, photo, "w")) == (2560, 1920)
    assert plan(10, 10) == [("s", 10, 10)]  # a small photo is kept whole, never scaled up


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"not an image at all" * 10, "IMAGE_PROCESS_FAILED"),
        (png(2100, 100), "PHOTO_INVALID_DIMENSIONS"),  # a ratio over 20
        (png(6000, 4500), "PHOTO_INVALID_DIMENSIONS"),  # over 10000 in total
    ],
)
async def test_an_image_telegram_cannot_take_is_refused(h: Harness, data: bytes, error: str) -> None:
    box = h.world.find_chat_ref("forum").id
    before = len(h.world.all_messages(box))
    with pytest.raises(RpcError, match=error):
        await send_photo(h, data)
    assert len(h.world.all_messages(box)) == before  # nothing was posted


async def test_a_document_stays_byte_exact(h: Harness) -> None:
    data = png(1000, 500, padding=3000)  # an image sent as a file is not re-encoded
    media = types.InputMediaUploadedDocument(h.upload("alice", data, name="p.png"), "image/png", [], force_file=True)
    result = await h.call("alice", functions.messages.SendMediaRequest(h.input_peer("forum"), media, "", random_id=3))
    doc = result.updates[1].message.media.document
    location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, "")
    assert (await h.call("bob", functions.upload.GetFileRequest(location, 0, 1024 * 1024))).bytes == data
    assert len(data) > MIN_SIZE
