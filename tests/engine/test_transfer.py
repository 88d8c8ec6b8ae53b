"""Streaming reupload against the sandbox: unmodified Telethon, real MTProto on loopback, real file store.

Byte identity is checked with the SHA-256 the sandbox's file store computes of the source file and of
the file that arrived in the target channel. The big copies run the cloner in a child process
(``bench.transfer.run_cloner``) so that its peak RSS is its own; the sandbox serves from this process.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telethon.tl import functions, types

from bench.transfer import ACCOUNT, SOURCE, TARGET, run_cloner, world
from telepi.engine.transfer import (
    FloodWaitTooLong,
    StreamingReuploader,
    TooLarge,
    TransferFailed,
    TransferOptions,
    TransferProgress,
    Transfers,
    reupload,
)
from telepi.engine.transfer.media import inline_thumbnail, input_media, pick_thumbnail, sent_as_file, source_file
from telepi.engine.transfer.pacing import Pacer
from telepi.engine.transfer.parts import (
    KiB,
    Layout,
    MiB,
    download_ranges,
    next_range,
    part_count,
    valid_download_part,
    valid_upload_part,
)
from telepi.engine.transfer.progress import ProgressMeter
from telepi.engine.transfer.stream import FileStream
from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.rpc.upload import check_range
from telepi.sandbox.sandbox import Sandbox
from telepi.sandbox.world.files import valid_part_size
from telepi.sandbox.world.photos import media_key

GiB = 1024 * MiB
RSS_LIMIT = 150 * 1000 * 1000
DAY = 24 * 3600.0


def video(size: int, seed: str, **extra: Any) -> dict[str, Any]:
    spec = {"kind": "video", "size": size, "seed": seed, "duration": 93.5, "w": 1920, "h": 1080}
    return {**spec, "filename": f"{seed}.mp4", "supports_streaming": True, "thumb": {"size": 9000}, **extra}


def document(size: int, seed: str) -> dict[str, Any]:
    return {"kind": "document", "size": size, "seed": seed, "filename": f"{seed}.pdf", "mime": "application/pdf"}


def comparable(media: dict[str, Any]) -> dict[str, Any]:
    """What must survive the copy: a photo's dimensions and sizes (Telegram re-encodes an uploaded photo, so
    its bytes never survive), a document's bytes and everything else but the image dimensions of thumbnails
    (the sandbox reads those from the image, and generated files are not images) and attribute flags left
    unset."""
    if media["kind"] == "photo":
        return {"kind": "photo", "sizes": media_key(media), "spoiler": media["spoiler"]}
    attributes = [{k: v for k, v in a.items() if v not in (False, None)} for a in media.get("attributes", [])]
    thumbs = [{k: v for k, v in t.items() if k not in ("w", "h")} for t in media.get("thumbs", [])]
    return {**media, "attributes": attributes, "thumbs": thumbs}


def source_items(sb: Sandbox) -> list[dict[str, Any]]:
    return [m for m in sb.messages(SOURCE) if m["media"]]


def assert_copied(sb: Sandbox, count: int = 1) -> None:
    src = source_items(sb)[-count:]
    dst = sb.messages(TARGET)[-count:]
    for s, d in zip(src, dst, strict=True):
        assert d["media"] is not None
        assert comparable(d["media"]) == comparable(s["media"])
        assert d["text"] == s["text"]


class Cloner:
    """The cloner account logged in from this process, with the source message(s) fetched."""

    def __init__(self, sb: Sandbox, client: Any, source: Any, target: Any, messages: list[Any]) -> None:
        self.sb = sb
        self.client = client
        self.source = source
        self.target = target
        self.messages = messages
        self.refreshes = 0

    @classmethod
    async def login(cls, sb: Sandbox) -> Cloner:
        client = await sb.client(ACCOUNT, flood_sleep_threshold=0, receive_updates=False)
        await client.get_dialogs()
        source = await client.get_input_entity(sb.chat(SOURCE).id)
        target = await client.get_input_entity(sb.chat(TARGET).id)
        messages = [m for m in await client.get_messages(source, limit=20) if m.media]
        return cls(sb, client, source, target, messages[::-1])

    def refresh_for(self, message: Any) -> Callable[[], Any]:
        async def refresh() -> Any:
            self.refreshes += 1
            return await self.client.get_messages(self.source, ids=message.id)

        return refresh

    async def send(self, message: Any, media: Any) -> None:
        request = functions.messages.SendMediaRequest(
            peer=self.target, media=media, message=message.message, random_id=secrets.randbits(63)
        )
        await asyncio.wait_for(self.client(request), 30)


def counter(sb: Sandbox, method: type) -> Any:
    """A fault rule that never fires but counts the calls of ``method`` (it must come first)."""
    return sb.faults.inject_error(method, "NEVER", rate=0.0)


# ---- the cloning process: big files, byte identity, peak memory -----------------------------------


async def clone_in_child(sb: Sandbox, tmp_path: Path, label: str) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    ids = [m["id"] for m in source_items(sb)]
    result = await run_cloner(sb, tmp_path / "cloner", ids, on_progress=samples.append, timeout=300)
    size = sum(m["media"]["size"] for m in source_items(sb))
    print(
        f"\n{label}: {result['elapsed']:.1f} s ({size / MiB / result['elapsed']:.0f} MiB/s); cloner peak RSS "
        f"{result['vmhwm'] / MiB:.0f} MiB (after login {result['idle_rss'] / MiB:.0f} MiB); "
        f"{len(samples)} progress reports"
    )
    assert samples and samples[-1]["done"] == samples[-1]["total"]
    return result


@pytest.mark.slow
async def test_a_1_gib_protected_video_arrives_byte_identical_and_the_cloner_stays_small(tmp_path: Path) -> None:
    async with Sandbox(world([video(GiB, "big-video")])) as sb:
        result = await clone_in_child(sb, tmp_path, "1 GiB protected video")
        assert_copied(sb)
        copy = sb.messages(TARGET)[-1]["media"]
        assert copy["kind"] == "video" and copy["size"] == GiB and copy["thumbs"]
        assert result["vmhwm"] < RSS_LIMIT


async def test_a_30_mib_document_arrives_byte_identical_with_its_thumbnail(tmp_path: Path) -> None:
    spec = {**document(30 * MiB + 123, "report"), "thumb": {"size": 5000, "w": 320, "h": 240}}
    async with Sandbox(world([spec])) as sb:
        result = await clone_in_child(sb, tmp_path, "30 MiB document")
        assert_copied(sb)
        copy = sb.messages(TARGET)[-1]["media"]
        assert copy["kind"] == "document" and copy["mime"] == "application/pdf" and len(copy["thumbs"]) == 1
        assert result["vmhwm"] < RSS_LIMIT


# ---- faults: the file still arrives intact ---------------------------------------------------------


async def test_failed_parts_flood_waits_a_dropped_connection_and_an_expired_reference_do_not_break_it() -> None:
    async with Sandbox(world([video(30 * MiB, "faulty")])) as sb:
        cloner = await Cloner.login(sb)
        message = cloner.messages[0]
        faults = sb.faults
        gets = counter(sb, functions.upload.GetFileRequest)
        saves = counter(sb, functions.upload.SaveBigFilePartRequest)
        injected = [
            faults.inject_error(functions.upload.GetFileRequest, "INTERNAL", 500, nth=4, times=2),
            faults.inject_error(functions.upload.GetFileRequest, "FLOOD_WAIT_1", 420, nth=12),
            faults.inject_error(functions.upload.SaveBigFilePartRequest, "INTERNAL", 500, nth=5),
            faults.inject_error(functions.upload.SaveBigFilePartRequest, "FLOOD_PREMIUM_WAIT_1", 420, nth=20),
        ]
        drop = faults.drop_on(functions.upload.SaveBigFilePartRequest, when="after", nth=30)
        expired_at: list[int] = []

        def progress(p: TransferProgress) -> None:
            if not expired_at and p.done >= p.total // 3:
                expired_at.append(p.done)  # every file reference handed out so far is now two days old
                sb.world.clock_offset += 2 * DAY

        options = TransferOptions(retry_delay=0.05, progress_interval=0.01)
        async with Transfers(cloner.client, options) as transfers:
            media = await asyncio.wait_for(
                transfers.reupload(message, refresh=cloner.refresh_for(message), progress=progress), 120
            )
            assert transfers.open_connections == options.download_connections + options.upload_connections
            floods = transfers.download_pacer.floods, transfers.upload_pacer.floods
        assert transfers.open_connections == 0
        await cloner.send(message, media)

        assert_copied(sb)
        assert [rule.fired for rule in injected] == [2, 1, 1, 1]
        assert drop.fired
        assert expired_at and cloner.refreshes >= 1
        assert floods[0] >= 1 and floods[1] >= 1
        # No part was fetched twice but for the failures, and the parts in flight when the reference
        # expired: nothing restarted from the beginning.
        ranges = 30 + 1  # 1 MiB parts, plus the thumbnail
        assert ranges <= gets.seen <= ranges + 3 + options.downloads_in_flight
        assert 60 <= saves.seen <= 60 + 2 + options.uploads_in_flight  # a drop may resend what was in flight


async def test_errors_that_retrying_cannot_fix_raise_at_once_and_repeated_failures_give_up() -> None:
    async with Sandbox(world([video(3 * MiB, "doomed")])) as sb:
        cloner = await Cloner.login(sb)
        message = cloner.messages[0]
        options = TransferOptions(part_retries=3, retry_delay=0.01, max_flood_wait=5)
        rule = sb.faults.inject_error(functions.upload.GetFileRequest, "LOCATION_INVALID", 400)
        with pytest.raises(TransferFailed) as failed:
            await asyncio.wait_for(reupload(cloner.client, message, options=options), 30)
        assert failed.value.error == "LOCATION_INVALID" and not failed.value.retryable
        sb.faults.clear()

        sb.faults.inject_error(functions.upload.SaveFilePartRequest, "INTERNAL", 500)
        with pytest.raises(TransferFailed) as failed:
            await asyncio.wait_for(reupload(cloner.client, message, options=options), 30)
        assert failed.value.retryable and "3 times" in str(failed.value)
        sb.faults.clear()

        sb.faults.inject_error(functions.upload.GetFileRequest, "FLOOD_WAIT_600", 420)
        with pytest.raises(FloodWaitTooLong) as waited:
            await asyncio.wait_for(reupload(cloner.client, message, options=options), 30)
        assert waited.value.seconds == 600 and waited.value.retryable
        assert rule.fired >= 1


async def test_a_file_over_the_part_cap_is_too_large_before_any_byte_moves() -> None:
    size = 2000 * MiB + 1  # 4001 parts of 512 KiB; the cap is 4000 without premium
    async with Sandbox(world([document(size, "huge")])) as sb:
        cloner = await Cloner.login(sb)
        gets = counter(sb, functions.upload.GetFileRequest)
        saves = [
            counter(sb, functions.upload.SaveFilePartRequest),
            counter(sb, functions.upload.SaveBigFilePartRequest),
        ]
        with pytest.raises(TooLarge) as refused:
            await asyncio.wait_for(reupload(cloner.client, cloner.messages[0]), 30)
        assert refused.value.reason == "too_large" and refused.value.cap == 4000 and refused.value.parts == 4001
        assert gets.seen == 0 and [s.seen for s in saves] == [0, 0]
        sb.world.set_premium(sb.account(ACCOUNT).id, True)
        async with Transfers(cloner.client) as premium:
            await premium.check_size(size)  # 8000 parts for premium accounts
            assert await premium.part_cap() == 8000


@pytest.mark.parametrize("size", [9 * MiB + 5, 20 * MiB + 5])  # saveFilePart + in-order MD5; saveBigFilePart
async def test_the_buffer_never_holds_more_blocks_than_the_window(size: int) -> None:
    async with Sandbox(world([document(size, "windowed")])) as sb:
        cloner = await Cloner.login(sb)
        message = cloner.messages[0]
        options = TransferOptions(downloads_in_flight=2, uploads_in_flight=2)  # 2 x 1 MiB + 2 x 512 KiB
        async with Transfers(cloner.client, options) as transfers:
            file = source_file(message)
            stream = FileStream(
                transfers.locate(file),
                file.size,
                file.name,
                downloads=transfers.downloads(file.dc_id),
                uploads=transfers.uploads(),
                options=options,
                meter=ProgressMeter(file.name, file.size, None, interval=1.0),
            )
            uploaded = await asyncio.wait_for(stream.run(), 60)
        assert 1 < stream.peak_blocks <= options.window // MiB == 3
        await cloner.send(message, input_media(message, uploaded))
        assert_copied(sb)


# ---- small files, photos, albums -------------------------------------------------------------------


async def test_an_album_of_small_files_goes_out_as_one_group_through_the_workers_reuploader() -> None:
    album = [
        {"kind": "photo", "size": 300_000, "seed": "p1", "w": 1280, "h": 960, "spoiler": True},
        video(2 * MiB + 7, "clip"),
        {"kind": "photo", "size": 150_000, "seed": "p2"},
    ]
    spec = world([])
    spec["chats"][0]["messages"] = [{"text": "", "media": m, "album": "a"} for m in album]
    spec["chats"][0]["messages"][0]["text"] = "album caption"
    async with Sandbox(spec) as sb:
        cloner = await Cloner.login(sb)
        assert len(cloner.messages) == 3
        saves = counter(sb, functions.upload.SaveFilePartRequest)
        big = counter(sb, functions.upload.SaveBigFilePartRequest)
        sb.world.clock_offset += 2 * DAY  # the references in hand are stale: the reuploader must re-fetch
        reports: list[TransferProgress] = []
        reuploader = StreamingReuploader(progress=reports.append)
        singles = []
        try:
            for message in cloner.messages:
                media = await asyncio.wait_for(
                    reuploader.media(cloner.client, message, for_album=True, target_peer=cloner.target), 30
                )
                assert isinstance(media, types.InputMediaPhoto | types.InputMediaDocument)
                singles.append(types.InputSingleMedia(media, message.message, random_id=secrets.randbits(63)))
        finally:
            await reuploader.close()
        await cloner.client(functions.messages.SendMultiMediaRequest(peer=cloner.target, multi_media=singles))

        assert_copied(sb, 3)  # the server checked every small upload's MD5 (MD5_CHECKSUM_INVALID otherwise)
        copies = sb.messages(TARGET)[-3:]
        assert len({c["grouped_id"] for c in copies}) == 1 and copies[0]["grouped_id"] is not None
        assert [c["media"]["kind"] for c in copies] == ["photo", "video", "photo"]
        assert copies[0]["media"]["spoiler"] and copies[0]["text"] == "album caption"
        assert big.seen == 0 and saves.seen >= 1 + 5 + 1  # photos, the 2 MiB video, its thumbnail
        assert {r.name for r in reports if r.done == r.total} == {"photo.jpg", "clip.mp4"}


# ---- pure parts -----------------------------------------------------------------------------------


@given(
    start=st.integers(0, 8 * MiB // KiB).map(lambda k: k * KiB),
    length=st.integers(1, 5 * MiB),
    part=st.sampled_from([4 * KiB, 64 * KiB, 128 * KiB, 512 * KiB, MiB, 3 * KiB, 100 * KiB, 768 * KiB]),
)
def test_download_ranges_follow_telegrams_get_file_rules_and_cover_the_span(start: int, length: int, part: int) -> None:
    ranges = download_ranges(start, start + length, part)
    assert ranges[0].offset == start
    for previous, current in itertools.pairwise(ranges):
        assert current.offset == previous.end
    assert ranges[-1].end >= start + length
    for rng in ranges:
        check_range(rng.offset, rng.limit, precise=rng.precise)  # the sandbox's RpcError means a broken rule
        assert rng.limit <= part
        assert rng.precise == (rng.offset % (4 * KiB) != 0 or part < 4 * KiB)  # only when no plain request fits


def test_a_request_off_the_4_kib_grid_is_the_only_one_that_needs_precise() -> None:
    assert next_range(MiB - 3 * KiB, MiB) == next_range(MiB - 3 * KiB, 4 * MiB)
    assert next_range(MiB - 3 * KiB, MiB).precise and next_range(MiB - 3 * KiB, MiB).limit == 3 * KiB
    assert not next_range(MiB + 4 * KiB, MiB).precise
    with pytest.raises(RpcError):
        check_range(MiB - 4 * KiB, 8 * KiB, precise=False)  # the oracle does refuse a crossing request


@given(
    size=st.integers(1, 40 * MiB),
    download=st.sampled_from([4 * KiB, 64 * KiB, 256 * KiB, 512 * KiB, MiB]),
    upload=st.sampled_from([KiB, 32 * KiB, 128 * KiB, 512 * KiB]),
)
def test_a_layout_cuts_every_byte_into_exactly_one_upload_part(size: int, download: int, upload: int) -> None:
    layout = Layout(size, download, upload)
    assert valid_part_size(upload) and valid_download_part(download) and valid_upload_part(upload)
    parts = [p for b in range(layout.blocks) for p in layout.uploads(b)]
    assert parts == list(range(layout.upload_parts)) == list(range(part_count(size, upload)))
    fetched = sum(layout.expected(r) for b in range(layout.blocks) for r in layout.ranges(b))
    assert fetched == size
    assert layout.big == (size > 10 * MiB)


def test_options_refuse_part_sizes_telegram_would_refuse() -> None:
    for bad in ({"upload_part_size": MiB}, {"upload_part_size": 3 * KiB}, {"download_part_size": 2 * KiB}):
        with pytest.raises(ValueError):
            TransferOptions(**bad)
    assert TransferOptions().window == 8 * MiB + 16 * 512 * KiB


# ---- pure media building --------------------------------------------------------------------------


def _doc(attributes: list[Any], mime: str = "video/mp4", thumbs: list[Any] | None = None) -> Any:
    return types.Document(
        id=1, access_hash=2, file_reference=b"r", date=None, mime_type=mime, size=10, dc_id=2,
        attributes=attributes, thumbs=thumbs,
    )  # fmt: skip


def test_input_media_keeps_every_attribute_and_how_the_file_was_sent() -> None:
    uploaded = types.InputFileBig(id=5, parts=3, name="x")
    thumb = types.InputFile(id=6, parts=1, name="thumb.jpg", md5_checksum="")
    clip = types.DocumentAttributeVideo(duration=3.5, w=640, h=360, supports_streaming=True)
    name = types.DocumentAttributeFilename("clip.mp4")
    as_video = types.MessageMediaDocument(document=_doc([clip, name]), video=True, spoiler=True)
    built = input_media(as_video, uploaded, thumb=thumb)
    assert isinstance(built, types.InputMediaUploadedDocument)
    assert built.attributes == [clip, name] and built.mime_type == "video/mp4" and built.thumb is thumb
    assert built.spoiler and not built.force_file and not built.nosound_video

    as_file = types.MessageMediaDocument(document=_doc([clip, name]))  # a video sent "as file"
    assert input_media(as_file, uploaded).force_file
    gif = types.MessageMediaDocument(document=_doc([clip, types.DocumentAttributeAnimated()]), video=True)
    assert input_media(gif, uploaded).nosound_video and not input_media(gif, uploaded).force_file
    voice = types.MessageMediaDocument(
        document=_doc([types.DocumentAttributeAudio(duration=4, voice=True, waveform=b"\x01\x02")], "audio/ogg"),
        voice=True,
    )
    assert not sent_as_file(voice, voice.document)
    assert input_media(voice, uploaded).attributes[0].waveform == b"\x01\x02"
    sticker = _doc([types.DocumentAttributeSticker("😀", types.InputStickerSetEmpty())], "image/webp")
    assert not sent_as_file(types.MessageMediaDocument(document=sticker), sticker)
    plain = types.MessageMediaDocument(document=_doc([name], "application/zip"))
    assert input_media(plain, uploaded).force_file

    photo = types.Photo(
        id=1, access_hash=2, file_reference=b"r", date=None, dc_id=2,
        sizes=[types.PhotoSize("x", 800, 600, 1000), types.PhotoSize("y", 1280, 960, 3000)],
    )  # fmt: skip
    built_photo = input_media(types.MessageMediaPhoto(photo=photo, spoiler=True), uploaded)
    assert isinstance(built_photo, types.InputMediaUploadedPhoto) and built_photo.spoiler


def test_thumbnails_prefer_real_sizes_and_fall_back_to_the_inline_preview() -> None:
    stripped = types.PhotoStrippedSize("i", b"\x01\x28\x20" + b"\x11" * 50)
    small = types.PhotoSize("s", 90, 90, 1500)
    medium = types.PhotoSize("m", 320, 180, 9000)
    large = types.PhotoSize("x", 800, 450, 90000)
    assert pick_thumbnail(_doc([], thumbs=[stripped, small, medium, large])) is medium
    assert pick_thumbnail(_doc([], thumbs=[stripped, large])) is large
    assert pick_thumbnail(_doc([], thumbs=[stripped])) is stripped
    assert pick_thumbnail(_doc([], thumbs=None)) is None
    jpeg = inline_thumbnail(stripped)
    assert jpeg is not None and jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")
    assert inline_thumbnail(types.PhotoCachedSize("s", 90, 90, b"\xff\xd8cached")) == b"\xff\xd8cached"
    assert inline_thumbnail(medium) is None


# ---- pacing and progress --------------------------------------------------------------------------


async def test_a_flood_wait_pauses_every_request_of_the_direction_and_halves_the_parts_in_flight() -> None:
    pacer = Pacer(8)
    pacer.flooded(0.2)
    pacer.flooded(0.2)  # the same pause seen by another part in flight: halved once
    assert pacer.limit == 4 and pacer.waiting() > 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with pacer.slot():
        assert loop.time() - started >= 0.15
    for _ in range(4):
        pacer.succeeded()
    assert pacer.limit == 5  # grows back by one per run of successes

    entered = asyncio.Event()

    async def hold() -> None:
        async with pacer.slot():
            entered.set()
            await asyncio.sleep(0.1)

    holders = [asyncio.create_task(hold()) for _ in range(6)]
    await asyncio.wait_for(entered.wait(), 1)
    await asyncio.sleep(0.02)
    assert pacer.in_flight == pacer.limit == 5
    await asyncio.wait_for(asyncio.gather(*holders), 2)
    assert pacer.in_flight == 0


def test_progress_reports_rate_and_eta() -> None:
    now = [0.0]
    seen: list[TransferProgress] = []
    meter = ProgressMeter("f", 100 * MiB, seen.append, interval=1.0, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 0.5
        meter.sent(5 * MiB)
    assert [p.done for p in seen] == [5 * MiB, 15 * MiB, 25 * MiB, 35 * MiB, 45 * MiB]  # once per interval
    meter.report()  # the stream's last word
    assert seen[-1].done == 50 * MiB and seen[-1].fraction == 0.5
    assert seen[-1].rate == pytest.approx(10 * MiB, rel=0.01)
    assert seen[-1].eta == pytest.approx(5.0, rel=0.01)
