"""The unmodified Telethon client against a running Sandbox over real MTProto on loopback."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dotenv import dotenv_values
from telethon import TelegramClient, errors, events
from telethon.crypto import rsa
from telethon.sessions import MemorySession, SQLiteSession
from telethon.tl import functions, types

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.sandbox import Sandbox, login
from telepi.sandbox.world.photos import image_size
from tests.sandbox.worldkit import base_world

T = TypeVar("T")
TIMEOUT = 20.0


async def wait(awaitable: Awaitable[T], timeout: float = TIMEOUT) -> T:
    return await asyncio.wait_for(awaitable, timeout)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    spec = base_world()
    spec["chats"][0]["generate"] = {"count": 330, "seed": 2, "max_size": 2048}
    async with Sandbox(spec) as sandbox:
        yield sandbox


def png(w: int, h: int, name: str) -> io.BytesIO:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\0" * 200
    stream = io.BytesIO(data + name.encode())
    stream.name = name
    return stream


async def collect(queue: asyncio.Queue[Any], count: int) -> list[Any]:
    return [await wait(queue.get()) for _ in range(count)]


# ---- login -------------------------------------------------------------------------------------


async def test_login_with_code_and_with_2fa(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    bob = await wait(sb.client("bob"))  # has a 2FA password: code, then SRP
    assert (await alice.get_me()).id == sb.account("alice").id
    assert (await bob.get_me()).id == sb.account("bob").id
    session = MemorySession()
    session.set_dc(2, sb.host, sb.port)
    client = TelegramClient(session, 1, "x")
    await wait(client.connect())
    try:
        await client.send_code_request(sb.account("bob").phone or "")
        with pytest.raises(errors.SessionPasswordNeededError):
            await client.sign_in(sb.account("bob").phone, "22222")
        with pytest.raises(errors.PasswordHashInvalidError):
            await client.sign_in(password="not it")
        assert await client.is_user_authorized() is False
    finally:
        await client.disconnect()


async def test_qr_login_tokens_are_accepted_once_by_a_logged_in_device(sb: Sandbox) -> None:
    # https://core.telegram.org/api/qr-login: only an authorised device accepts, a token once.
    alice = await wait(sb.client("alice"))
    session = MemorySession()
    session.set_dc(2, sb.host, sb.port)
    client = TelegramClient(session, 1, "x")
    await wait(client.connect())
    try:
        qr = await client.qr_login()
        waiting = asyncio.ensure_future(qr.wait(timeout=10))
        await asyncio.sleep(0.2)  # the waiting client subscribes to updates before the scan
        with pytest.raises(errors.AuthTokenInvalidError):
            await alice(functions.auth.AcceptLoginTokenRequest(b"\0" * 32))
        await alice(functions.auth.AcceptLoginTokenRequest(qr.token))
        with pytest.raises(errors.AuthTokenAlreadyAcceptedError):
            await alice(functions.auth.AcceptLoginTokenRequest(qr.token))
        assert (await wait(waiting)).id == sb.account("alice").id
        assert await client.is_user_authorized()
    finally:
        await client.disconnect()


# ---- reading -----------------------------------------------------------------------------------


async def test_forum_topics_all_pages(sb: Sandbox) -> None:
    forum = sb.chat("forum")
    with sb.world.batch():
        for i in range(120):
            sb.world.create_topic(forum.id, f"Topic {i}", creator_id=forum.creator_id)
    client = await wait(sb.client("dave"))
    peer = await client.get_input_entity("the_forum")
    seen: dict[int, str] = {}
    offset_date, offset_id, offset_topic = None, 0, 0
    while True:
        page = await wait(
            client(functions.messages.GetForumTopicsRequest(peer, offset_date, offset_id, offset_topic, 100))
        )
        if not page.topics:
            break
        seen.update((t.id, t.title) for t in page.topics)
        last = page.topics[-1]
        offset_date = next(m.date for m in page.messages if m.id == last.top_message)
        offset_id, offset_topic = last.top_message, last.id
    assert seen == {t["id"]: t["title"] for t in sb.topics("forum")}
    assert len(seen) == 123


async def test_history_forward_reverse_ranges_and_one_topic(sb: Sandbox) -> None:
    client = await wait(sb.client("bob"))
    chat = await client.get_entity("the_forum")
    expected = [m["id"] for m in sb.messages("forum")]
    newest_first = [m.id async for m in client.iter_messages(chat, wait_time=0)]
    assert newest_first == expected[::-1] and len(expected) > 300
    oldest_first = [m.id async for m in client.iter_messages(chat, reverse=True, min_id=50, wait_time=0)]
    assert oldest_first == [i for i in expected if i > 50]
    window = [m.id async for m in client.iter_messages(chat, min_id=100, max_id=260, wait_time=0)]
    assert window == [i for i in expected if 100 < i < 260][::-1]
    window_reverse = [m.id async for m in client.iter_messages(chat, reverse=True, min_id=100, max_id=260, wait_time=0)]
    assert window_reverse == [i for i in expected if 100 < i < 260]
    news = next(t["id"] for t in sb.topics("forum") if t["title"] == "News")
    in_topic = [m async for m in client.iter_messages(chat, reply_to=news, wait_time=0)]
    assert [m.id for m in in_topic] == [m["id"] for m in sb.messages("forum") if m["topic"] == news][::-1]
    for m in in_topic:
        if m.id != news:
            assert m.reply_to.forum_topic and (m.reply_to.reply_to_top_id or m.reply_to.reply_to_msg_id) == news


# ---- sending -----------------------------------------------------------------------------------


async def test_send_text_with_entities_reaches_other_members(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    bob = await wait(sb.client("bob"))
    got: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler(got.put, events.NewMessage(chats=[sb.chat("forum").id]))
    sent = await wait(alice.send_message("the_forum", "**bold** and [link](https://example.org)"))
    event = (await collect(got, 1))[0]
    assert event.message.id == sent.id and event.message.text == "**bold** and [link](https://example.org)"
    stored = sb.messages("forum")[-1]
    assert stored["text"] == "bold and link" and stored["sender"] == "alice"
    assert stored["entities"] == [
        {"type": "bold", "offset": 0, "length": 4},
        {"type": "text_url", "offset": 9, "length": 4, "url": "https://example.org"},
    ]
    assert stored["media"]["kind"] == "webpage"  # Telegram previews the link


async def test_media_uploaded_then_by_reference_round_trips(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    data = bytes(range(256)) * 1200  # 300 KiB: several parts
    video = io.BytesIO(data)
    video.name = "clip.mp4"
    attributes = [types.DocumentAttributeVideo(duration=7.0, w=640, h=360, supports_streaming=True)]
    sent = await wait(
        alice.send_file("the_forum", video, caption="clip", attributes=attributes, thumb=png(90, 60, "t.png"))
    )
    stored = sb.messages("forum")[-1]["media"]
    assert stored["kind"] == "video" and stored["size"] == len(data) and stored["mime"] == "video/mp4"
    assert {"type": "filename", "file_name": "clip.mp4"} in stored["attributes"]
    assert [(t["type"], t["w"], t["h"]) for t in stored["thumbs"]] == [("m", 90, 60)]
    bob = await wait(sb.client("bob"))
    [fetched] = await wait(bob.get_messages("the_forum", ids=[sent.id]))
    video_attr = next(a for a in fetched.media.document.attributes if isinstance(a, types.DocumentAttributeVideo))
    assert video_attr.duration == 7.0 and video_attr.supports_streaming and fetched.file.name == "clip.mp4"
    assert await wait(bob.download_media(fetched, file=bytes)) == data
    thumb = await wait(bob.download_media(fetched, file=bytes, thumb=-1))
    assert thumb is not None and thumb.startswith(b"\x89PNG")
    again = await wait(bob.send_file("the_forum", fetched.media, caption="by reference"))
    assert again.media.document.id == fetched.media.document.id
    photo = await wait(alice.send_file("the_forum", png(800, 600, "photo.png")))
    assert photo.photo is not None and photo.photo.sizes[-1].w == 800
    # Telegram re-encodes an uploaded photo: a JPEG comes back, whatever was sent (see test_photos.py)
    assert (await wait(bob.download_media(photo, file=bytes))).startswith(b"\xff\xd8")


async def test_album_is_one_group(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    files = [png(100 + i, 100, f"a{i}.png") for i in range(3)]
    sent = await wait(alice.send_file("the_forum", files, caption=["one", "two", "three"]))
    assert len(sent) == 3 and len({m.grouped_id for m in sent}) == 1
    stored = sb.messages("forum")[-3:]
    assert [m["text"] for m in stored] == ["one", "two", "three"]
    assert {m["grouped_id"] for m in stored} == {sent[0].grouped_id}


async def test_forward_with_drop_author_into_a_topic(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    topic = await sb.create_topic("target", "Copies")
    chan = [m for m in sb.messages("chan") if not m["service"]]
    source = await alice.get_input_entity("the_chan")
    target = await alice.get_input_entity(sb.chat("target").id)
    await wait(
        alice(
            functions.messages.ForwardMessagesRequest(
                source,
                [m["id"] for m in chan],
                target,
                drop_author=True,
                top_msg_id=topic,
                random_id=[101, 102, 103, 104],
            )
        )
    )
    copies = [m for m in sb.messages("target") if m["topic"] == topic and not m["service"]]
    assert [m["text"] for m in copies] == [m["text"] for m in chan]
    assert [m["fwd"] for m in copies] == [None] * 4
    assert [m["media"]["sha256"] if m["media"] else None for m in copies] == [
        m["media"]["sha256"] if m["media"] else None for m in chan
    ]
    assert copies[1]["grouped_id"] == copies[2]["grouped_id"] is not None


# ---- live updates ------------------------------------------------------------------------------


async def test_live_new_edit_delete_from_the_sandbox(sb: Sandbox) -> None:
    bob = await wait(sb.client("bob"))
    new: asyncio.Queue[Any] = asyncio.Queue()
    edited: asyncio.Queue[Any] = asyncio.Queue()
    deleted: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler(new.put, events.NewMessage())
    bob.add_event_handler(edited.put, events.MessageEdited())
    bob.add_event_handler(deleted.put, events.MessageDeleted())
    news = next(t["id"] for t in sb.topics("forum") if t["title"] == "News")
    msg_id = await sb.post("forum", "fresh news", topic=news, as_account="carol")
    event = (await collect(new, 1))[0]
    assert (event.message.id, event.message.text, event.message.reply_to.reply_to_msg_id) == (
        msg_id,
        "fresh news",
        news,
    )
    await sb.edit("forum", msg_id, "fresher news")
    assert (await collect(edited, 1))[0].message.text == "fresher news"
    await sb.delete("forum", msg_id)
    assert (await collect(deleted, 1))[0].deleted_ids == [msg_id]


async def test_missed_updates_are_fetched_after_a_gap(sb: Sandbox) -> None:
    bob = await wait(sb.client("bob"))
    new: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler(new.put, events.NewMessage(chats=[sb.chat("forum").id]))
    await sb.post("forum", "seen live")
    assert (await collect(new, 1))[0].message.text == "seen live"
    # Messages posted while bob's connection is down never reach him as pushes...
    bob_id = sb.account("bob").id
    sb.server.drop_connections(bob_id)
    for i in range(3):
        sb.world.post(sb.chat("forum").creator_id, sb.chat("forum").id, _text(f"missed {i}"))
    await wait(bob.get_me())  # Telethon has reconnected (and asked for updates again)
    # ...until the next push shows a pts gap and Telethon fetches the channel difference.
    await sb.post("forum", "after the gap")
    texts = {e.message.text for e in await collect(new, 4)}
    assert texts == {"missed 0", "missed 1", "missed 2", "after the gap"}


async def test_catch_up_fetches_what_happened_while_away(sb: Sandbox) -> None:
    bob = await wait(sb.client("bob"))
    new: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler(new.put, events.NewMessage(chats=[sb.chat("forum").id]))
    await sb.post("forum", "before")
    assert (await collect(new, 1))[0].message.text == "before"
    forum = sb.chat("forum")
    for i in range(2):  # stored, never pushed
        sb.world.post(forum.creator_id, forum.id, _text(f"while away {i}"))
    await wait(bob.catch_up())  # getDifference names the channel (updateChannelTooLong), then its difference
    assert {e.message.text for e in await collect(new, 2)} == {"while away 0", "while away 1"}


def _text(text: str) -> Any:
    from telepi.sandbox.world.records import NewMessage

    return NewMessage(text=text)


# ---- Telegram's refusals, as the client sees them ---------------------------------------------------


async def test_semantic_errors_reach_the_client_as_telethon_errors(sb: Sandbox) -> None:
    bob = await wait(sb.client("bob"))
    with pytest.raises(errors.ChatWriteForbiddenError):
        await wait(bob.send_message("the_chan", "no rights"))
    with pytest.raises(errors.MessageTooLongError):
        await wait(bob.send_message("the_forum", "x" * 4097))
    with pytest.raises(errors.MediaCaptionTooLongError):
        await wait(bob.send_file("the_forum", png(10, 10, "c.png"), caption="x" * 1025))
    with pytest.raises(errors.ChatAdminRequiredError):
        await wait(bob(functions.messages.CreateForumTopicRequest(await bob.get_input_entity("the_forum"), "Mine")))
    await bob.get_dialogs()  # the protected chat has no username: learn its access hash
    secret = [m async for m in bob.iter_messages(sb.chat("vault").id, wait_time=0) if m.media]
    with pytest.raises(errors.ChatForwardsRestrictedError):
        await wait(bob.forward_messages("the_forum", secret[0]))
    with pytest.raises(errors.ChatForwardsRestrictedError):
        await wait(bob.send_file("the_forum", secret[0].media))
    items = [
        types.InputSingleMedia(types.InputMediaDice("🎲"), "", random_id=i + 1)  # content is not checked first
        for i in range(11)
    ]
    with pytest.raises(errors.MultiMediaTooLongError):
        await wait(bob(functions.messages.SendMultiMediaRequest(await bob.get_input_entity("the_forum"), items)))


async def test_expired_file_references_are_refused_and_telethon_refetches(sb: Sandbox) -> None:
    bob = await wait(sb.client("bob"))
    sb.file_reference_max_age = 60
    [doc_msg] = [m async for m in bob.iter_messages("the_forum", wait_time=0, search="a video")]
    photos = [m async for m in bob.iter_messages("the_forum", wait_time=0) if m.photo]
    photo_msg = photos[0]
    sb.world.clock_offset += 120
    with pytest.raises(errors.FileReferenceExpiredError):
        await wait(bob.send_file("the_forum", doc_msg.media))
    with pytest.raises(errors.FileReferenceExpiredError):
        await wait(bob.download_media(photo_msg, file=bytes))
    # For documents, Telethon re-fetches the message on FILE_REFERENCE_EXPIRED and carries on.
    data = await wait(bob.download_media(doc_msg, file=bytes))
    assert len(data) == 9000


# ---- session directories -------------------------------------------------------------------------


async def test_session_dir_is_a_ready_to_use_telethon_session(sb: Sandbox, tmp_path: Path) -> None:
    path = await wait(sb.session_dir(tmp_path / "session1", "bob", SOURCE_CHAT="the_chan", TARGET_CHAT=-1))
    env = dotenv_values(path / ".env")
    assert env["TG_DC"] == f"127.0.0.1:{sb.port}" and env["SOURCE_CHAT"] == "the_chan"
    assert Path(env["TG_SERVER_KEY"] or "").read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert (path / "session1.session").is_file()
    # What a telepi process does with it: register the key, point the session at TG_DC, connect.
    rsa.add_key(Path(env["TG_SERVER_KEY"] or "").read_text(), old=False)
    host, port = (env["TG_DC"] or "").split(":")
    session = SQLiteSession(str(path / "session1"))
    session.set_dc(2, host, int(port))
    client = TelegramClient(session, int(env["TG_API_ID"] or 0), env["TG_API_HASH"] or "")
    await wait(client.connect())
    try:
        assert await client.is_user_authorized()
        assert (await client.get_me()).id == sb.account("bob").id
        forum = await client.get_entity(sb.chat("forum").id)  # known from the cached dialogs
        assert forum.title == "Forum"
    finally:
        await client.disconnect()


async def test_login_helper_refuses_plain_users(sb: Sandbox) -> None:
    client = TelegramClient(MemorySession(), 1, "x")
    with pytest.raises(ValueError, match="not an account"):
        await login(client, sb.account("eve"))


async def test_basic_group_and_private_messages_arrive_in_each_account_box(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    bob = await wait(sb.client("bob"))
    got: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler(got.put, events.NewMessage(incoming=True))
    group = sb.chat("group")
    await alice.get_dialogs()
    in_group = await wait(alice.send_message(group.id, "hi group"))
    await wait(alice.send_message(sb.account("bob").id, "hi bob"))
    first, second = await collect(got, 2)
    assert (first.message.text, first.chat_id) == ("hi group", group.id)
    assert (second.message.text, second.chat_id) == ("hi bob", sb.account("alice").id)
    bob_box = [m["id"] for m in sb.messages("group", as_account="bob")]
    alice_box = [m["id"] for m in sb.messages("group", as_account="alice")]
    assert first.message.id == bob_box[-1] and in_group.id == alice_box[-1]
    reply = await wait(bob.send_message(group.id, "re", reply_to=first.message.id))
    assert sb.messages("group", as_account="alice")[-1]["reply_to"] == in_group.id
    assert reply.reply_to.reply_to_msg_id == first.message.id


async def test_a_downloaded_photo_uploaded_again_keeps_its_sizes_not_its_bytes(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    original = [
        m async for m in alice.iter_messages("the_forum", wait_time=0) if m.photo and m.photo.sizes[-1].w == 640
    ]
    data = await wait(alice.download_media(original[-1], file=bytes))
    stream = io.BytesIO(data)
    stream.name = "again.jpg"
    again = await wait(alice.send_file("the_forum", stream))
    shapes = [(s.type, getattr(s, "w", None), getattr(s, "h", None)) for s in again.photo.sizes]
    assert shapes == [(s.type, getattr(s, "w", None), getattr(s, "h", None)) for s in original[-1].photo.sizes]
    assert shapes[1:] == [("s", 100, 75), ("m", 320, 240), ("x", 640, 480)]
    largest = again.photo.sizes[-1]
    assert isinstance(largest, types.PhotoSizeProgressive) and max(largest.sizes) < len(data)  # re-encoded smaller
    copied = await wait(alice.download_media(again, file=bytes))
    assert copied != data and image_size(copied) == image_size(data) == (640, 480)


async def test_after_call_runs_once_the_send_executed_and_before_call_can_refuse_it(sb: Sandbox) -> None:
    alice = await wait(sb.client("alice"))
    seen: list[list[str]] = []
    sb.faults.after_call(
        "SendMessageRequest", lambda _request: seen.append([m["text"] for m in sb.messages("forum")[-1:]])
    )
    await wait(alice.send_message("the_forum", "executed first"))
    assert seen == [["executed first"]]  # the hook saw the message already there, before the client got the answer
    sb.faults.before_call("SendMessageRequest", lambda _request: RpcError(400, "MESSAGE_EMPTY"))
    with pytest.raises(errors.BadRequestError):
        await wait(alice.send_message("the_forum", "never executed"))
    assert "never executed" not in [m["text"] for m in sb.messages("forum")]
