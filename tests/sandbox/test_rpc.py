"""The sandbox's Telegram RPCs, called directly with real Telethon request objects (no network).

Each Telegram semantic the sandbox models has a test here; the same flows run end to end through
the real client in ``test_sandbox_client.py``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telethon import password as telethon_password
from telethon.tl import functions, types

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.rpc.topics import DEFAULT_TOPIC_ICONS
from telepi.sandbox.world.files import generated_bytes
from tests.sandbox.worldkit import Harness, base_world


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, base_world())
    yield harness
    harness.close()


def png(w: int, h: int) -> bytes:
    """A tiny valid PNG header + IHDR of the given size (the sandbox reads only the size)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\0" * 64
    )


async def history(h: Harness, who: str, chat: str, **kw: Any) -> Any:
    args = {"offset_id": 0, "offset_date": None, "add_offset": 0, "limit": 100, "max_id": 0, "min_id": 0, "hash": 0}
    args.update(kw)
    return await h.call(who, functions.messages.GetHistoryRequest(h.input_peer(chat), **args))


async def rpc_error(coro: Any) -> RpcError:
    with pytest.raises(RpcError) as info:
        await coro
    return info.value


def send(h: Harness, chat: str, text: str, **kw: Any) -> Any:
    return functions.messages.SendMessageRequest(h.input_peer(chat), text, **kw)


# ---- login -------------------------------------------------------------------------------------


async def test_login_with_code(h: Harness) -> None:
    sent = await h.call(None, functions.auth.SendCodeRequest("+1 555 000 0001", 1, "hash", types.CodeSettings()))
    assert isinstance(sent.type, types.auth.SentCodeTypeApp) and sent.type.length == 5
    bad = functions.auth.SignInRequest("15550000001", sent.phone_code_hash, "00000")
    assert (await rpc_error(h.call(None, bad, key=9))).message == "PHONE_CODE_INVALID"
    auth = await h.call(None, functions.auth.SignInRequest("15550000001", sent.phone_code_hash, "11111"), key=9)
    assert auth.user.id == h.uid("alice") and auth.user.is_self and h.bound[9] == h.uid("alice")
    assert (await rpc_error(h.call(None, functions.updates.GetStateRequest()))).message == "AUTH_KEY_UNREGISTERED"


async def test_login_with_2fa_checks_the_srp_proof(h: Harness) -> None:
    sent = await h.call(None, functions.auth.SendCodeRequest("15550000002", 1, "hash", types.CodeSettings()), key=5)
    err = await rpc_error(
        h.call(None, functions.auth.SignInRequest("15550000002", sent.phone_code_hash, "22222"), key=5)
    )
    assert (err.code, err.message) == (401, "SESSION_PASSWORD_NEEDED") and 5 not in h.bound
    pwd = await h.call(None, functions.account.GetPasswordRequest(), key=5)
    assert pwd.has_password
    assert isinstance(pwd.current_algo, types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow)
    wrong = telethon_password.compute_check(pwd, "wrong horse")
    err = await rpc_error(h.call(None, functions.auth.CheckPasswordRequest(wrong), key=5))
    assert err.message == "PASSWORD_HASH_INVALID" and 5 not in h.bound
    pwd = await h.call(None, functions.account.GetPasswordRequest(), key=5)  # a fresh srp_id
    auth = await h.call(
        None, functions.auth.CheckPasswordRequest(telethon_password.compute_check(pwd, "correct horse")), key=5
    )
    assert auth.user.id == h.uid("bob") and h.bound[5] == h.uid("bob")


async def test_log_out_unbinds(h: Harness) -> None:
    assert isinstance(await h.call("alice", functions.auth.LogOutRequest(), key=3), types.auth.LoggedOut)
    assert h.bound[3] is None


# ---- sending -----------------------------------------------------------------------------------


async def test_send_returns_message_id_then_new_message_and_pushes_to_other_members(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    before = h.world.pts(forum.id)
    entities = [types.MessageEntityItalic(0, 2), types.MessageEntityTextUrl(3, 4, "https://t.me")]
    result = await h.call("alice", send(h, "forum", "hi link", entities=entities, random_id=1))
    msg_id_update, new = result.updates
    assert isinstance(msg_id_update, types.UpdateMessageID) and msg_id_update.random_id == 1
    assert isinstance(new, types.UpdateNewChannelMessage) and (new.pts, new.pts_count) == (before + 1, 1)
    assert new.message.id == msg_id_update.id and new.message.out and new.message.entities == entities
    pushed = {uid: (batch, except_session) for uid, batch, except_session in h.sink.pushed}
    # Every member account gets it; eve (no account) has no sessions; alice's other sessions too.
    assert set(pushed) == {h.uid(n) for n in ("alice", "bob", "carol", "dave")}
    assert pushed[h.uid("alice")][1] == (1, 1) and pushed[h.uid("bob")][1] is None
    bob_copy = pushed[h.uid("bob")][0].updates[0]
    assert bob_copy.pts == before + 1 and not bob_copy.message.out
    assert {u.id for u in pushed[h.uid("bob")][0].users} >= {h.uid("alice"), h.uid("bob")}


async def test_random_id_dedup_per_sender_and_peer(h: Harness) -> None:
    first = await h.call("alice", send(h, "forum", "once", random_id=42))
    h.sink.clear()
    again = await h.call("alice", send(h, "forum", "once more", random_id=42))
    assert again.updates[0].id == first.updates[0].id and again.updates[1].message.message == "once"
    assert h.sink.pushed == []  # nothing new happened
    other_chat = await h.call("alice", send(h, "target", "same id elsewhere", random_id=42))
    other_sender = await h.call("bob", send(h, "forum", "bob's", random_id=42))
    assert other_chat.updates[1].message.message == "same id elsewhere"
    assert other_sender.updates[0].id != first.updates[0].id


@pytest.mark.parametrize(("who", "length", "error"), [("alice", 4096, None), ("alice", 4097, "MESSAGE_TOO_LONG")])
async def test_message_length_limit(h: Harness, who: str, length: int, error: str | None) -> None:
    call = h.call(who, send(h, "forum", "x" * length, random_id=7))
    if error is None:
        await call
    else:
        assert (await rpc_error(call)).message == error
    assert (await rpc_error(h.call(who, send(h, "forum", "  ", random_id=8)))).message == "MESSAGE_EMPTY"


@pytest.mark.parametrize(
    ("who", "length", "ok"),
    [("alice", 1024, True), ("alice", 1025, False), ("carol", 4096, True), ("carol", 4097, False)],
)
async def test_caption_limit_depends_on_premium(h: Harness, who: str, length: int, ok: bool) -> None:
    request = functions.messages.SendMediaRequest(
        h.input_peer("forum"), types.InputMediaDice("🎲"), "é" * length, random_id=3
    )
    if ok:
        await h.call(who, request)
    else:
        assert (await rpc_error(h.call(who, request))).message == "MEDIA_CAPTION_TOO_LONG"


async def test_posting_in_a_channel_needs_post_rights(h: Harness) -> None:
    err = await rpc_error(h.call("bob", send(h, "chan", "let me in", random_id=1)))
    assert (err.code, err.message) == (403, "CHAT_WRITE_FORBIDDEN")
    result = await h.call("carol", send(h, "chan", "admin post", random_id=2))
    post = result.updates[1].message
    assert post.post and post.from_id is None  # a broadcast post is the channel's
    assert (await rpc_error(h.call("dave", send(h, "vault", "not a member", random_id=3)))).message == "CHANNEL_PRIVATE"


async def test_creating_a_topic_needs_manage_topics(h: Harness) -> None:
    request = functions.messages.CreateForumTopicRequest(h.input_peer("forum"), "New", random_id=5)
    err = await rpc_error(h.call("bob", request))
    assert (err.code, err.message) == (403, "CHAT_ADMIN_REQUIRED")
    result = await h.call("carol", request)
    created = result.updates[1].message
    assert isinstance(created.action, types.MessageActionTopicCreate) and created.action.title == "New"
    assert h.world.topic(h.world.find_chat_ref("forum").id, created.id) is not None
    again = await h.call("carol", request)  # random_id makes it idempotent too
    assert again.updates[1].message.id == created.id
    plain = functions.messages.CreateForumTopicRequest(h.input_peer("chan"), "x", random_id=6)
    assert (await rpc_error(h.call("alice", plain))).message == "CHANNEL_FORUM_MISSING"


async def test_album_of_more_than_ten_is_refused(h: Harness) -> None:
    items = [types.InputSingleMedia(types.InputMediaDice("🎲"), "", random_id=i + 1) for i in range(11)]
    request = functions.messages.SendMultiMediaRequest(h.input_peer("forum"), items)
    assert (await rpc_error(h.call("alice", request))).message == "MULTI_MEDIA_TOO_LONG"


async def test_album_shares_one_grouped_id_and_maps_every_random_id(h: Harness) -> None:
    photos = [m for m in (await history(h, "alice", "chan")).messages if getattr(m, "grouped_id", None)]
    items = [
        types.InputSingleMedia(
            types.InputMediaPhoto(
                types.InputPhoto(p.media.photo.id, p.media.photo.access_hash, p.media.photo.file_reference)
            ),
            f"caption {i}",
            random_id=100 + i,
        )
        for i, p in enumerate(photos)
    ]
    top = h.world.topics(h.world.find_chat_ref("forum").id)[1].id
    request = functions.messages.SendMultiMediaRequest(
        h.input_peer("forum"), items, reply_to=types.InputReplyToMessage(top, top_msg_id=top)
    )
    result = await h.call("alice", request)
    ids = {u.random_id: u.id for u in result.updates if isinstance(u, types.UpdateMessageID)}
    new = [u.message for u in result.updates if isinstance(u, types.UpdateNewChannelMessage)]
    assert set(ids) == {100, 101} and [m.id for m in new] == sorted(ids.values())
    assert len({m.grouped_id for m in new}) == 1 and new[0].grouped_id
    assert all(m.reply_to.forum_topic and m.reply_to.reply_to_msg_id == top for m in new)


# ---- media -------------------------------------------------------------------------------------


async def test_uploaded_document_round_trips_with_attributes_and_a_downloadable_thumb(h: Harness) -> None:
    data = bytes(range(256)) * 300
    thumb = png(320, 180)
    attributes = [
        types.DocumentAttributeVideo(duration=12.5, w=1280, h=720, supports_streaming=True),
        types.DocumentAttributeFilename("clip.mp4"),
    ]
    media = types.InputMediaUploadedDocument(
        h.upload("alice", data), "video/mp4", attributes, thumb=h.upload("alice", thumb, name="t.png")
    )
    result = await h.call(
        "alice", functions.messages.SendMediaRequest(h.input_peer("forum"), media, "cap", random_id=9)
    )
    sent_id = result.updates[0].id
    [msg] = [m for m in (await history(h, "bob", "forum")).messages if m.id == sent_id]
    doc = msg.media.document
    assert msg.media.video and doc.mime_type == "video/mp4" and doc.size == len(data)
    assert doc.attributes == attributes and msg.message == "cap"
    [size] = doc.thumbs
    assert (size.type, size.w, size.h, size.size) == ("m", 320, 180, len(thumb))
    for thumb_size, expected in (("", data), ("m", thumb)):
        location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, thumb_size)
        got = await h.call("bob", functions.upload.GetFileRequest(location, 0, 1024 * 1024))
        assert got.bytes == expected


async def test_media_by_reference_keeps_the_document(h: Harness) -> None:
    source = next(m for m in (await history(h, "alice", "forum")).messages if m.message == "a video")
    doc = source.media.document
    ref = types.InputMediaDocument(types.InputDocument(doc.id, doc.access_hash, doc.file_reference))
    result = await h.call(
        "alice", functions.messages.SendMediaRequest(h.input_peer("target"), ref, "again", random_id=1)
    )
    again = result.updates[1].message.media.document
    assert (again.id, again.size, again.attributes, again.mime_type) == (
        doc.id,
        doc.size,
        doc.attributes,
        doc.mime_type,
    )


async def test_protected_chat_refuses_forwards_and_media_by_reference(h: Harness) -> None:
    msgs = (await history(h, "alice", "vault")).messages
    secret_doc = next(m for m in msgs if getattr(m, "media", None)).media.document
    forward = functions.messages.ForwardMessagesRequest(
        h.input_peer("vault"), [m.id for m in msgs], h.input_peer("target"), random_id=[1, 2, 3]
    )
    assert (await rpc_error(h.call("alice", forward))).message == "CHAT_FORWARDS_RESTRICTED"
    ref = types.InputMediaDocument(
        types.InputDocument(secret_doc.id, secret_doc.access_hash, secret_doc.file_reference)
    )
    by_ref = functions.messages.SendMediaRequest(h.input_peer("target"), ref, "", random_id=4)
    assert (await rpc_error(h.call("alice", by_ref))).message == "CHAT_FORWARDS_RESTRICTED"
    # Downloading is allowed: the content can only be downloaded and uploaded again.
    location = types.InputDocumentFileLocation(secret_doc.id, secret_doc.access_hash, secret_doc.file_reference, "")
    got = await h.call("alice", functions.upload.GetFileRequest(location, 0, 4096), dc=secret_doc.dc_id)
    assert got.bytes == generated_bytes("s1", 4000, 0, 4000)


async def test_file_reference_expires(h: Harness) -> None:
    h.world.file_reference_max_age = 60
    msg = next(m for m in (await history(h, "alice", "forum")).messages if m.message == "a video")
    doc = msg.media.document
    h.world.clock_offset += 61
    ref = types.InputMediaDocument(types.InputDocument(doc.id, doc.access_hash, doc.file_reference))
    by_ref = functions.messages.SendMediaRequest(h.input_peer("target"), ref, "", random_id=5)
    assert (await rpc_error(h.call("alice", by_ref))).message == "FILE_REFERENCE_EXPIRED"
    location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, "")
    get_file = functions.upload.GetFileRequest(location, 0, 4096)
    assert (await rpc_error(h.call("alice", get_file, dc=doc.dc_id))).message == "FILE_REFERENCE_EXPIRED"
    # Re-fetching the message gives a fresh reference.
    fresh = next(m for m in (await history(h, "alice", "forum")).messages if m.id == msg.id).media.document
    location.file_reference = fresh.file_reference
    assert len((await h.call("alice", get_file, dc=doc.dc_id)).bytes) == 4096
    tampered = bytearray(fresh.file_reference)
    tampered[-1] ^= 1
    location.file_reference = bytes(tampered)
    assert (await rpc_error(h.call("alice", get_file, dc=doc.dc_id))).message == "FILE_REFERENCE_INVALID"


async def test_part_cap_is_4000_or_8000_for_premium(h: Harness) -> None:
    part = functions.upload.SaveFilePartRequest(file_id=1, file_part=4000, bytes=b"x" * 1024)
    assert (await rpc_error(h.call("alice", part))).message == "FILE_PART_INVALID"
    assert await h.call("carol", part) is True


# ---- forwarding, editing, deleting ----------------------------------------------------------------


async def test_forward_with_drop_author_into_a_topic(h: Harness) -> None:
    target = h.world.find_chat_ref("target")
    _, posted = h.world.create_topic(target.id, "Inbox", creator_id=h.uid("alice"))
    topic = posted.in_box(target.id).message.id
    chan = (await history(h, "alice", "chan")).messages
    ids = sorted(m.id for m in chan if not isinstance(m, types.MessageService))
    request = functions.messages.ForwardMessagesRequest(
        h.input_peer("chan"), ids, h.input_peer("target"), random_id=[10 + i for i in range(len(ids))], top_msg_id=topic
    )
    kept = [u.message for u in (await h.call("alice", request)).updates if isinstance(u, types.UpdateNewChannelMessage)]
    assert all(m.fwd_from is not None and m.fwd_from.channel_post for m in kept)
    assert all(m.reply_to.forum_topic and m.reply_to.reply_to_msg_id == topic for m in kept)
    request.random_id = [20 + i for i in range(len(ids))]
    request.drop_author = True
    request.drop_media_captions = True
    dropped = [
        u.message for u in (await h.call("alice", request)).updates if isinstance(u, types.UpdateNewChannelMessage)
    ]
    assert [m.fwd_from for m in dropped] == [None] * len(ids)
    album = [m for m in dropped if m.grouped_id]
    assert len(album) == 2 and album[0].grouped_id == album[1].grouped_id
    assert album[0].grouped_id not in {m.grouped_id for m in chan if getattr(m, "grouped_id", None)}
    assert [m.message for m in dropped] == ["post one", "", "", ""]


async def test_forward_as_a_reply_points_at_the_given_target_message(h: Harness) -> None:
    target = h.world.find_chat_ref("target")
    _, posted = h.world.create_topic(target.id, "Inbox", creator_id=h.uid("alice"))
    topic = posted.in_box(target.id).message.id
    chan = sorted(m.id for m in (await history(h, "alice", "chan")).messages if not isinstance(m, types.MessageService))

    def forward(ids: list[int], random_ids: list[int], reply_to: int | None) -> Any:
        return functions.messages.ForwardMessagesRequest(
            h.input_peer("chan"),
            ids,
            h.input_peer("target"),
            random_id=random_ids,
            drop_author=True,
            top_msg_id=topic,
            reply_to=None if reply_to is None else types.InputReplyToMessage(reply_to, top_msg_id=topic),
        )

    def new(result: Any) -> list[Any]:
        return [u.message for u in result.updates if isinstance(u, types.UpdateNewChannelMessage)]

    [first] = new(await h.call("alice", forward(chan[:1], [1], None)))
    [reply] = new(await h.call("alice", forward(chan[1:2], [2], first.id)))
    assert reply.reply_to.reply_to_msg_id == first.id  # a reply to the given message...
    assert reply.reply_to.forum_topic and reply.reply_to.reply_to_top_id == topic  # ...inside the topic
    into_topic = new(await h.call("alice", forward(chan[2:3], [3], topic)))  # the topic's id: no reply
    assert into_topic[0].reply_to.reply_to_msg_id == topic and not into_topic[0].reply_to.reply_to_top_id
    # A reply target that is not in the target chat (never there, or deleted) is refused; nothing is posted.
    count = len((await history(h, "alice", "target")).messages)
    missing = forward(chan[3:4], [4], first.id + 1000)
    assert (await rpc_error(h.call("alice", missing))).message == "REPLY_MESSAGE_ID_INVALID"
    assert len((await history(h, "alice", "target")).messages) == count


async def test_edit_pushes_an_edit_update_and_checks_the_author(h: Harness) -> None:
    sent = (await h.call("bob", send(h, "forum", "v1", random_id=1))).updates[0].id
    h.sink.clear()
    result = await h.call("bob", functions.messages.EditMessageRequest(h.input_peer("forum"), sent, message="v2"))
    [update] = result.updates
    assert isinstance(update, types.UpdateEditChannelMessage) and update.message.message == "v2"
    assert update.message.edit_date
    alice_updates = h.sink.to(h.uid("alice"))
    assert [type(u).__name__ for u in alice_updates] == ["UpdateEditChannelMessage"]
    same = functions.messages.EditMessageRequest(h.input_peer("forum"), sent, message="v2")
    assert (await rpc_error(h.call("bob", same))).message == "MESSAGE_NOT_MODIFIED"
    other = functions.messages.EditMessageRequest(h.input_peer("forum"), sent, message="mine now")
    assert (await rpc_error(h.call("dave", other))).message == "MESSAGE_AUTHOR_REQUIRED"


async def test_channel_delete_returns_affected_pts_and_pushes(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    sent = (await h.call("bob", send(h, "forum", "bye", random_id=1))).updates[0].id
    err = await rpc_error(h.call("dave", functions.channels.DeleteMessagesRequest(h.input_channel("forum"), [sent])))
    assert err.message == "MESSAGE_DELETE_FORBIDDEN"
    h.sink.clear()
    affected = await h.call("bob", functions.channels.DeleteMessagesRequest(h.input_channel("forum"), [sent]))
    assert (affected.pts, affected.pts_count) == (h.world.pts(forum.id), 1)
    [update] = h.sink.to(h.uid("alice"))
    assert isinstance(update, types.UpdateDeleteChannelMessages) and update.messages == [sent]


async def test_basic_group_delete_reaches_every_members_box(h: Harness) -> None:
    msgs = (await history(h, "bob", "group")).messages
    own = next(m for m in msgs if m.message == "group reply")
    affected = await h.call("bob", functions.messages.DeleteMessagesRequest([own.id], revoke=True))
    assert affected.pts == h.world.pts(h.uid("bob"))
    alice_updates = h.sink.to(h.uid("alice"))
    assert isinstance(alice_updates[0], types.UpdateDeleteMessages)
    assert "group reply" not in [m.message for m in (await history(h, "alice", "group")).messages]


# ---- reading -----------------------------------------------------------------------------------


async def test_history_of_a_basic_group_is_the_viewers_own_box(h: Harness) -> None:
    bob = (await history(h, "bob", "group")).messages
    alice = (await history(h, "alice", "group")).messages
    assert [m.message for m in bob] == [m.message for m in alice][: len(bob)]
    reply = bob[0]
    assert reply.reply_to.reply_to_msg_id == bob[1].id  # pointing at bob's own copy
    got = await h.call(
        "bob", functions.messages.GetMessagesRequest([types.InputMessageID(reply.id), types.InputMessageID(999)])
    )
    assert got.messages[0].id == reply.id and isinstance(got.messages[1], types.MessageEmpty)


async def test_replies_of_a_topic_and_search(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    news = h.world.topics(forum.id)[1].id
    replies = await h.call(
        "alice", functions.messages.GetRepliesRequest(h.input_peer("forum"), news, 0, None, 0, 100, 0, 0, 0)
    )
    assert [m.message for m in replies.messages] == ["reply in news", "news one", None]  # + "topic created"
    assert replies.messages[0].reply_to.reply_to_top_id == news
    general = await h.call(
        "alice", functions.messages.GetRepliesRequest(h.input_peer("forum"), 1, 0, None, 0, 100, 0, 0, 0)
    )
    assert next(m.message for m in general.messages) == "hello"
    search = functions.messages.SearchRequest(
        h.input_peer("forum"), "NEWS", types.InputMessagesFilterEmpty(), None, None, 0, 0, 100, 0, 0, 0, top_msg_id=news
    )
    assert [m.message for m in (await h.call("alice", search)).messages] == ["reply in news", "news one"]
    search.q, search.top_msg_id, search.filter = "", None, types.InputMessagesFilterPhotos()
    assert [type(m.media).__name__ for m in (await h.call("alice", search)).messages] == ["MessageMediaPhoto"]


async def test_forum_topics_page_by_recent_activity(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    with h.world.batch():
        for i in range(130):
            h.world.create_topic(forum.id, f"T{i}", creator_id=h.uid("alice"))
    seen: list[int] = []
    offset = (None, 0, 0)
    while True:
        page = await h.call(
            "bob",
            functions.messages.GetForumTopicsRequest(h.input_peer("forum"), offset[0], offset[1], offset[2], 50),
        )
        if not page.topics:
            break
        assert page.count == 133 and len(page.messages) == len(page.topics)
        seen += [t.id for t in page.topics]
        last = page.topics[-1]
        last_msg = next(m for m in page.messages if m.id == last.top_message)
        offset = (last_msg.date, last.top_message, last.id)
    assert len(seen) == len(set(seen)) == 133
    tops = h.world.topic_top_ids(forum.id)
    assert [tops[t] for t in seen] == sorted((tops[t] for t in seen), reverse=True)
    by_id = await h.call("bob", functions.messages.GetForumTopicsByIDRequest(h.input_peer("forum"), [1, seen[0]]))
    assert [t.title for t in by_id.topics] == ["General", "T129"]


async def test_channel_difference_replays_exact_pts(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    start = h.world.pts(forum.id)
    sent = (await h.call("bob", send(h, "forum", "a", random_id=1))).updates[0].id
    await h.call("bob", send(h, "forum", "b", random_id=2))
    await h.call("bob", functions.messages.EditMessageRequest(h.input_peer("forum"), sent, message="a2"))
    await h.call("bob", functions.channels.DeleteMessagesRequest(h.input_channel("forum"), [sent]))
    request = functions.updates.GetChannelDifferenceRequest(
        h.input_channel("forum"), types.ChannelMessagesFilterEmpty(), start, 100
    )
    diff = await h.call("alice", request)
    assert diff.final and diff.pts == start + 4 == h.world.pts(forum.id)
    assert [m.message for m in diff.new_messages] == ["b"]  # "a" is gone; its edit and delete follow
    assert [(type(u).__name__, u.pts) for u in diff.other_updates] == [("UpdateDeleteChannelMessages", start + 4)]
    request.pts, request.limit = start, 2
    partial = await h.call("alice", request)
    assert not partial.final and partial.pts == start + 2
    request.pts = diff.pts
    assert isinstance(await h.call("alice", request), types.updates.ChannelDifferenceEmpty)
    h.world.channel_difference_max = 3
    request.pts = start
    too_long = await h.call("alice", request)
    assert isinstance(too_long, types.updates.ChannelDifferenceTooLong) and too_long.dialog.pts == start + 4
    # channelDifferenceTooLong: final always set, a timeout, the latest messages, not the ones since our pts.
    assert too_long.final and too_long.timeout and [m.message for m in too_long.messages][:1] == ["b"]


async def test_channel_difference_carries_edits_and_deletes_with_their_pts(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    kept = (await h.call("bob", send(h, "forum", "kept", random_id=1))).updates[0].id
    gone = (await h.call("bob", send(h, "forum", "gone", random_id=2))).updates[0].id
    start = h.world.pts(forum.id)
    await h.call("bob", functions.messages.EditMessageRequest(h.input_peer("forum"), kept, message="kept, edited"))
    await h.call("bob", functions.channels.DeleteMessagesRequest(h.input_channel("forum"), [gone]))
    request = functions.updates.GetChannelDifferenceRequest(
        h.input_channel("forum"), types.ChannelMessagesFilterEmpty(), start, 100
    )
    diff = await h.call("alice", request)
    assert diff.final and diff.pts == start + 2 and diff.new_messages == []
    edit, delete = diff.other_updates
    assert isinstance(edit, types.UpdateEditChannelMessage) and (edit.pts, edit.pts_count) == (start + 1, 1)
    assert edit.message.id == kept and edit.message.message == "kept, edited" and edit.message.edit_date
    assert isinstance(delete, types.UpdateDeleteChannelMessages) and delete.messages == [gone]
    assert (delete.channel_id, delete.pts, delete.pts_count) == (h.input_channel("forum").channel_id, start + 2, 1)
    request.pts = 0
    assert (await rpc_error(h.call("alice", request))).message == "PERSISTENT_TIMESTAMP_EMPTY"
    request.pts = start + 3
    assert (await rpc_error(h.call("alice", request))).message == "PERSISTENT_TIMESTAMP_INVALID"


async def test_account_difference_for_private_and_group_messages(h: Harness) -> None:
    state = await h.call("carol", functions.updates.GetStateRequest())
    await h.call("alice", send(h, "group", "to the group", random_id=1))
    await h.call("bob", functions.messages.SendMessageRequest(h.input_user("carol"), "hi carol", random_id=2))
    diff = await h.call("carol", functions.updates.GetDifferenceRequest(state.pts, None, 0))
    assert isinstance(diff, types.updates.Difference)
    assert [m.message for m in diff.new_messages] == ["to the group", "hi carol"]
    assert diff.state.pts == state.pts + 2
    assert isinstance(
        await h.call("carol", functions.updates.GetDifferenceRequest(diff.state.pts, None, 0)),
        types.updates.DifferenceEmpty,
    )


async def test_dialogs_resolve_and_private_channels(h: Harness) -> None:
    dialogs = await h.call("bob", functions.messages.GetDialogsRequest(None, 0, types.InputPeerEmpty(), 100, 0))
    titles = {c.title for c in dialogs.chats}
    assert {"Forum", "Channel", "Protected", "Basic", "Target"} <= titles
    forum = h.world.find_chat_ref("forum")
    [forum_dialog] = [d for d in dialogs.dialogs if getattr(d.peer, "channel_id", None) == forum.raw_id]
    assert forum_dialog.pts == h.world.pts(forum.id)
    resolved = await h.call("dave", functions.contacts.ResolveUsernameRequest("the_chan"))
    assert resolved.chats[0].broadcast and not resolved.chats[0].creator
    vault = h.world.find_chat_ref("vault")
    private = types.InputPeerChannel(vault.raw_id, vault.access_hash)
    err = await rpc_error(h.call("dave", functions.messages.GetHistoryRequest(private, 0, None, 0, 10, 0, 0, 0)))
    assert err.message == "CHANNEL_PRIVATE"
    wrong_hash = types.InputPeerChannel(vault.raw_id, vault.access_hash + 1)
    err = await rpc_error(h.call("alice", functions.messages.GetHistoryRequest(wrong_hash, 0, None, 0, 10, 0, 0, 0)))
    assert err.message == "CHANNEL_INVALID"


async def test_edit_forum_topic_closes_it_for_members(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    news = h.world.topics(forum.id)[1].id
    close = functions.messages.EditForumTopicRequest(h.input_peer("forum"), news, closed=True)
    assert (await rpc_error(h.call("bob", close))).message == "CHAT_ADMIN_REQUIRED"
    result = await h.call("carol", close)
    service = result.updates[0].message
    assert isinstance(service.action, types.MessageActionTopicEdit) and service.action.closed
    assert service.reply_to.reply_to_msg_id == news and h.world.topic(forum.id, news).closed  # type: ignore[union-attr]
    into_news = send(h, "forum", "closed?", reply_to=types.InputReplyToMessage(news, top_msg_id=news), random_id=1)
    assert (await rpc_error(h.call("bob", into_news))).message == "TOPIC_CLOSED"
    await h.call("carol", into_news)  # admins still post
    assert (await rpc_error(h.call("carol", close))).message == "TOPIC_NOT_MODIFIED"
    rename = functions.messages.EditForumTopicRequest(h.input_peer("forum"), news, title="Headlines")
    await h.call("alice", rename)
    assert h.world.topic(forum.id, news).title == "Headlines"  # type: ignore[union-attr]


async def test_pin_marks_the_message_and_posts_a_service_message(h: Harness) -> None:
    target = next(m for m in (await history(h, "alice", "forum")).messages if getattr(m, "message", "") == "hello")
    result = await h.call("alice", functions.messages.UpdatePinnedMessageRequest(h.input_peer("forum"), target.id))
    service = result.updates[0].message
    assert isinstance(service.action, types.MessageActionPinMessage) and service.reply_to.reply_to_msg_id == target.id
    assert h.world.message(h.world.find_chat_ref("forum").id, target.id).pinned  # type: ignore[union-attr]
    pinned = functions.messages.SearchRequest(
        h.input_peer("forum"), "", types.InputMessagesFilterPinned(), None, None, 0, 0, 100, 0, 0, 0
    )
    assert [m.id for m in (await h.call("bob", pinned)).messages] == [target.id]


async def test_full_channel_and_participants(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    full = await h.call("bob", functions.channels.GetFullChannelRequest(h.input_channel("forum")))
    assert full.full_chat.pts == h.world.pts(forum.id) and full.full_chat.participants_count == 5
    assert full.chats[0].forum and full.chats[0].megagroup and not full.chats[0].creator
    admins = await h.call(
        "bob",
        functions.channels.GetParticipantsRequest(
            h.input_channel("forum"), types.ChannelParticipantsAdmins(), 0, 100, 0
        ),
    )
    kinds = {type(p).__name__: p for p in admins.participants}
    assert set(kinds) == {"ChannelParticipantCreator", "ChannelParticipantAdmin"}
    assert kinds["ChannelParticipantAdmin"].admin_rights.manage_topics
    assert not kinds["ChannelParticipantAdmin"].admin_rights.ban_users
    err = await rpc_error(
        h.call(
            "bob",
            functions.channels.GetParticipantsRequest(
                h.input_channel("chan"), types.ChannelParticipantsRecent(), 0, 10, 0
            ),
        )
    )
    assert err.message == "CHAT_ADMIN_REQUIRED"  # broadcast member lists are for admins


async def test_toggle_noforwards_protects_existing_references(h: Harness) -> None:
    msg = next(m for m in (await history(h, "alice", "forum")).messages if getattr(m, "message", "") == "a video")
    doc = msg.media.document
    ref = types.InputMediaDocument(types.InputDocument(doc.id, doc.access_hash, doc.file_reference))
    toggle = functions.messages.ToggleNoForwardsRequest(h.input_peer("forum"), True)
    assert (await rpc_error(h.call("carol", toggle))).message == "CHAT_ADMIN_REQUIRED"
    await h.call("alice", toggle)
    by_ref = functions.messages.SendMediaRequest(h.input_peer("target"), ref, "", random_id=1)
    assert (await rpc_error(h.call("alice", by_ref))).message == "CHAT_FORWARDS_RESTRICTED"
    assert (await rpc_error(h.call("alice", toggle))).message == "CHAT_NOT_MODIFIED"


async def test_create_topic_random_id_dedups_per_account_only(h: Harness) -> None:
    request = functions.messages.CreateForumTopicRequest(h.input_peer("forum"), "Same", random_id=77)
    first = (await h.call("carol", request)).updates[1].message.id
    assert (await h.call("carol", request)).updates[1].message.id == first
    other = (await h.call("alice", request)).updates[1].message.id  # another sender: a new topic
    assert other != first


async def test_custom_topic_icons_need_premium(h: Harness) -> None:
    custom = 6_000_000_000_000_000_001
    fancy = functions.messages.CreateForumTopicRequest(
        h.input_peer("forum"), "Fancy", icon_emoji_id=custom, random_id=8
    )
    err = await rpc_error(h.call("alice", fancy))
    assert (err.code, err.message) == (403, "PREMIUM_ACCOUNT_REQUIRED")
    default = min(DEFAULT_TOPIC_ICONS)
    plain = functions.messages.CreateForumTopicRequest(
        h.input_peer("forum"), "Plain", icon_emoji_id=default, random_id=9
    )
    await h.call("alice", plain)
    created = (await h.call("carol", fancy)).updates[1].message  # carol is premium
    assert created.action.icon_emoji_id == custom


async def test_deleted_topic_answers_topic_deleted(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    news = h.world.topics(forum.id)[1].id
    delete = functions.messages.DeleteTopicHistoryRequest(h.input_peer("forum"), top_msg_id=news)
    assert (await rpc_error(h.call("bob", delete))).message == "CHAT_ADMIN_REQUIRED"
    await h.call("alice", delete)
    assert h.world.topic(forum.id, news) is None
    assert not [m for m in h.world.all_messages(forum.id, forum.id) if m.topic == news]
    into_news = send(h, "forum", "gone?", reply_to=types.InputReplyToMessage(news, top_msg_id=news), random_id=2)
    assert (await rpc_error(h.call("alice", into_news))).message == "TOPIC_DELETED"
    never = send(h, "forum", "never?", reply_to=types.InputReplyToMessage(9999, top_msg_id=9999), random_id=3)
    assert (await rpc_error(h.call("alice", never))).message == "TOPIC_ID_INVALID"


async def test_closed_topic_needs_manage_topics_not_just_admin(h: Harness) -> None:
    forum = h.world.find_chat_ref("forum")
    news = h.world.topics(forum.id)[1].id
    h.world.set_topic_state(forum.id, news, closed=True, hidden=False)
    h.world.add_member(forum.id, h.uid("dave"), role="admin", rights=["post_messages"])
    into_news = send(h, "forum", "closed?", reply_to=types.InputReplyToMessage(news, top_msg_id=news), random_id=4)
    assert (await rpc_error(h.call("dave", into_news))).message == "TOPIC_CLOSED"
