"""The world model and world files: ids per box, pts bookkeeping, idempotent sends, pagination, loading."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telepi.sandbox.world.files import FileStore, generated_sha256
from telepi.sandbox.world.peers import channel_peer
from telepi.sandbox.world.records import GENERAL_TOPIC, HistoryFilter, NewMessage, Page
from telepi.sandbox.world.world import World
from telepi.sandbox.world.worldfile import (
    DEFAULT_MIX,
    WorldFileError,
    build_media,
    generate_history,
    load_world,
    read_spec,
)
from tests.sandbox.worldkit import base_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "world.sqlite")
    yield w
    w.close()


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[World, FileStore]]:
    w = World(tmp_path / "world.sqlite")
    files = FileStore(tmp_path)
    load_world(base_world(), w, files)
    yield w, files
    files.close()
    w.close()


def _people(world: World) -> tuple[int, int, int]:
    a = world.create_user("a", phone="+1 555 000", code="1")
    b = world.create_user("b", phone="+1 555 001", code="2")
    c = world.create_user("c")
    return a.id, b.id, c.id


def test_channel_messages_share_one_id_sequence_and_pts(world: World) -> None:
    a, b, _ = _people(world)
    chat = world.create_chat("ch", "supergroup", title="Ch", creator_id=a)
    world.add_member(chat.id, b)
    assert chat.id == channel_peer(chat.raw_id) and chat.id < -(10**12)
    pts0 = world.pts(chat.id)
    first = world.post(a, chat.id, NewMessage(text="x")).in_box(chat.id)
    second = world.post(b, chat.id, NewMessage(text="y")).in_box(chat.id)
    assert (first.message.id, second.message.id) == (2, 3)  # id 1 is the "channel created" service message
    assert (first.pts, second.pts) == (pts0 + 1, pts0 + 2)
    assert world.pts(a) == 1  # account pts untouched by channel messages


def test_basic_group_gives_every_member_a_copy_with_its_own_ids(world: World) -> None:
    a, b, _ = _people(world)
    group = world.create_chat("g", "group", title="G", creator_id=a)
    world.add_member(group.id, b)
    world.post(a, b, NewMessage(text="private first"))  # one id in both boxes
    world.post(b, b, NewMessage(text="saved message"))  # Saved Messages: b's box only
    world.post(b, b, NewMessage(text="saved again"))
    original = world.post(a, group.id, NewMessage(text="hi"))
    reply = world.post(b, group.id, NewMessage(text="re", reply_to=original.in_box(b).message.id))
    ids = {c.box: c.message.id for c in original.copies}
    assert set(ids) == {a, b} and ids[a] != ids[b]
    # The reply points at each box's own copy of the original.
    assert reply.in_box(a).message.reply_to == ids[a]
    assert reply.in_box(b).message.reply_to == ids[b]
    assert reply.in_box(a).message.peer == group.id
    assert world.pts(a) == 1 + 4 and world.pts(b) == 1 + 5  # chat_create was before b joined


def test_private_chat_peers_are_each_other(world: World) -> None:
    a, b, _ = _people(world)
    posted = world.post(a, b, NewMessage(text="hey"))
    assert posted.in_box(a).message.peer == b
    assert posted.in_box(b).message.peer == a


def test_random_id_makes_posting_idempotent_per_sender_and_peer(world: World) -> None:
    a, b, _ = _people(world)
    chat = world.create_chat("ch", "supergroup", title="Ch", creator_id=a)
    world.add_member(chat.id, b)
    first = world.post(a, chat.id, NewMessage(text="once"), random_id=77)
    again = world.post(a, chat.id, NewMessage(text="twice?"), random_id=77)
    assert again.duplicate and again.in_box(chat.id).message.id == first.in_box(chat.id).message.id
    assert again.in_box(chat.id).message.text == "once"
    # Another sender with the same random_id is a different message.
    other = world.post(b, chat.id, NewMessage(text="b's"), random_id=77)
    assert not other.duplicate
    # Used ids never expire, even after the message is deleted.
    world.delete(chat.id, [first.in_box(chat.id).message.id])
    assert world.post(a, chat.id, NewMessage(text="third"), random_id=77).duplicate
    assert world.count(chat.id, HistoryFilter()) == 2  # creation + b's


def test_edit_and_delete_take_pts_and_are_logged(world: World) -> None:
    a, _, _ = _people(world)
    chat = world.create_chat("ch", "channel", title="Ch", creator_id=a)
    msg = world.post(a, chat.id, NewMessage(text="v1")).in_box(chat.id).message
    [edited] = world.edit(chat.id, msg.id, text="v2", entities=[{"type": "bold", "offset": 0, "length": 2}])
    assert edited.message.text == "v2" and edited.message.edit_date is not None
    [deleted] = world.delete(chat.id, [msg.id, 999])
    assert deleted.ids == [msg.id] and deleted.pts_count == 1
    events = world.events_after(chat.id, 1, 100)
    assert [(e.kind, e.ids) for e in events] == [
        ("new", [1]),
        ("new", [msg.id]),
        ("edit", [msg.id]),
        ("delete", [msg.id]),
    ]
    assert [e.pts for e in events] == [2, 3, 4, 5] and world.pts(chat.id) == 5


def test_delete_in_basic_group_revoke_reaches_every_copy(world: World) -> None:
    a, b, _ = _people(world)
    group = world.create_chat("g", "group", title="G", creator_id=a)
    world.add_member(group.id, b)
    posted = world.post(a, group.id, NewMessage(text="oops"))
    deletions = world.delete(a, [posted.in_box(a).message.id], revoke=True)
    assert {d.box for d in deletions} == {a, b}
    assert world.message(b, posted.in_box(b).message.id) is None


def test_forum_topics_and_their_top_messages(world: World) -> None:
    a, _, _ = _people(world)
    forum = world.create_chat("f", "supergroup", title="F", creator_id=a, forum=True)
    assert [t.id for t in world.topics(forum.id)] == [GENERAL_TOPIC]
    topic, posted = world.create_topic(forum.id, "News", creator_id=a)
    assert topic.id == posted.in_box(forum.id).message.id == 2
    assert posted.in_box(forum.id).message.topic == topic.id
    inside = world.post(a, forum.id, NewMessage(text="in", topic=topic.id)).in_box(forum.id).message
    general = world.post(a, forum.id, NewMessage(text="gen")).in_box(forum.id).message
    assert world.topic_top_ids(forum.id) == {GENERAL_TOPIC: general.id, topic.id: inside.id}
    _, in_topic = world.history(forum.id, HistoryFilter(topic=topic.id), Page())
    assert [m.id for m in in_topic] == [inside.id, topic.id]
    _, in_general = world.history(forum.id, HistoryFilter(topic=GENERAL_TOPIC), Page())
    assert [m.id for m in in_general] == [general.id, 1]


def test_forum_without_service_message_still_reserves_id_1(world: World) -> None:
    a, _, _ = _people(world)
    forum = world.create_chat("f", "supergroup", title="F", creator_id=a, forum=True, service=False)
    assert world.post(a, forum.id, NewMessage(text="x")).in_box(forum.id).message.id == 2


def _reference_page(ids_desc: list[int], page: Page) -> list[int]:
    """Telegram's rule, stated directly: L[p + add_offset : p + add_offset + limit], start clamped to 0."""
    limit = min(page.limit, 100) if page.limit > 0 else 20
    p = sum(1 for i in ids_desc if i >= page.offset_id) if page.offset_id else 0
    start = p + page.add_offset
    end = start + limit
    return ids_desc[max(start, 0) : max(end, 0)]


@functools.cache
def _paging_world() -> World:
    """60 messages with gaps (deleted ids), built once for all examples."""
    path = Path(tempfile.mkdtemp(prefix="paging-")) / "world.sqlite"
    world = World(path)
    a = world.create_user("a")
    chat = world.create_chat("ch", "supergroup", title="Ch", creator_id=a.id)
    for i in range(59):
        world.post(a.id, chat.id, NewMessage(text=str(i)))
    world.delete(chat.id, [5, 6, 7, 20, 33, 34, 50, 58])
    return world


@settings(max_examples=300, deadline=None)
@given(
    offset_id=st.integers(0, 70),
    add_offset=st.integers(-120, 30),
    limit=st.integers(0, 120),
    min_id=st.integers(0, 65),
    max_id=st.integers(0, 65),
)
def test_history_pagination_matches_telegrams_rule(
    offset_id: int, add_offset: int, limit: int, min_id: int, max_id: int
) -> None:
    world = _paging_world()
    chat = world.find_chat_ref("ch")
    ids_desc = sorted(
        (m.id for m in world.all_messages(chat.id) if (not min_id or m.id > min_id) and (not max_id or m.id < max_id)),
        reverse=True,
    )
    page = Page(offset_id=offset_id, add_offset=add_offset, limit=limit)
    total, msgs = world.history(chat.id, HistoryFilter(min_id=min_id, max_id=max_id), page)
    assert total == len(ids_desc)
    assert [m.id for m in msgs] == _reference_page(ids_desc, page)


def test_offset_date_pages_like_offset_id(world: World) -> None:
    a, _, _ = _people(world)
    chat = world.create_chat("ch", "supergroup", title="Ch", creator_id=a, date=1000)
    for i in range(10):
        world.post(a, chat.id, NewMessage(text=str(i), date=2000 + i * 10))
    _, msgs = world.history(chat.id, HistoryFilter(), Page(offset_date=2050, limit=3))
    assert [m.date for m in msgs] == [2040, 2030, 2020]


# ---- world files -------------------------------------------------------------------------------


def test_world_file_loads_chats_topics_albums_and_media(loaded: tuple[World, FileStore]) -> None:
    world, files = loaded
    forum = world.find_chat_ref("forum")
    assert forum.forum and forum.username == "the_forum"
    assert [t.title for t in world.topics(forum.id)] == ["General", "News", "Talk"]
    msgs = world.all_messages(forum.id)
    news = world.topics(forum.id)[1].id
    by_text = {m.text: m for m in msgs}
    assert by_text["news one"].topic == news
    assert by_text["reply in news"].reply_to == by_text["news one"].id
    assert by_text["hello"].entities == [{"type": "bold", "offset": 0, "length": 5}]
    video = world.document(by_text["a video"].media["document_id"])  # type: ignore[index]
    assert video.mime == "video/mp4" and video.thumbs and video.attributes[0]["duration"] == 3.5
    assert files.sha256(video.file_id) == generated_sha256("v1", 9000)
    chan = world.find_chat_ref("chan")
    album = [m for m in world.all_messages(chan.id) if m.grouped_id]
    assert len(album) == 2 and len({m.grouped_id for m in album}) == 1
    dates = [m.date for m in world.all_messages(chan.id)]
    assert dates == sorted(dates)
    assert world.member(chan.id, world.account("carol").id).rights == frozenset({"post_messages"})  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda w: w["chats"][0].update(owner="nobody"), "unknown account or user 'nobody'"),
        (lambda w: w["chats"][0]["messages"].append({"reply_to": "nope"}), "unknown ref 'nope'"),
        (lambda w: w["chats"][0]["messages"].append({"topic": "missing"}), "unknown topic 'missing'"),
        (lambda w: w["chats"][1].update(topics=[{"title": "x"}]), "topics need 'forum': true"),
        (lambda w: w["chats"][0]["admins"].update(bob=["fly"]), "unknown admin rights"),
        (lambda w: w["chats"][0]["messages"].append({"media": {"kind": "hologram"}}), "unknown media kind"),
        (lambda w: w.update(extra=1), "unknown top-level key 'extra'"),
    ],
)
def test_world_file_errors_name_the_problem(tmp_path: Path, change: object, error: str) -> None:
    spec = base_world()
    change(spec)  # type: ignore[operator]
    world = World(tmp_path / "world.sqlite")
    files = FileStore(tmp_path)
    try:
        with pytest.raises(WorldFileError, match=error):
            load_world(spec, world, files)
        assert world.is_empty()  # one transaction: nothing half-loaded
    finally:
        files.close()
        world.close()


def test_read_spec_accepts_dicts_paths_and_json(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(base_world()))
    assert read_spec(path) == read_spec(str(path)) == read_spec(json.dumps(base_world())) == base_world()


def test_generate_history_is_deterministic_and_mixes_every_kind() -> None:
    chat = {
        "name": "big",
        "kind": "supergroup",
        "forum": True,
        "members": ["bob"],
        "topics": [{"title": "T", "ref": "t"}],
    }
    first = generate_history(chat, 600, seed=5)
    assert first == generate_history(chat, 600, seed=5)
    assert first != generate_history(chat, 600, seed=6)
    assert len(first) == 600
    kinds = {m["media"]["kind"] for m in first if "media" in m}
    assert kinds >= {k for k in DEFAULT_MIX if k not in ("text", "reply", "album", "service")}
    assert any("album" in m for m in first) and any("reply_to" in m for m in first)
    assert any(m.get("service") for m in first) and any(m.get("topic") == "t" for m in first)
    refs = {m["ref"]: m for m in first}
    for m in first:  # replies stay in their topic
        if "reply_to" in m:
            assert refs[m["reply_to"]].get("topic") == m.get("topic")


def test_generated_history_loads_fast_and_in_order(tmp_path: Path) -> None:
    spec = base_world()
    spec["chats"][0]["generate"] = {"count": 3000, "seed": 1, "max_size": 4096}
    world = World(tmp_path / "world.sqlite")
    files = FileStore(tmp_path)
    try:
        load_world(spec, world, files)
        forum = world.find_chat_ref("forum")
        ids = [m.id for m in world.all_messages(forum.id)]
        assert len(ids) == 1 + 2 + 5 + 3000 and ids == sorted(ids)
        total, page = world.history(forum.id, HistoryFilter(), Page(limit=100))
        assert total == len(ids) and [m.id for m in page] == ids[::-1][:100]
    finally:
        files.close()
        world.close()


def test_build_media_kinds(tmp_path: Path) -> None:
    world = World(tmp_path / "world.sqlite")
    files = FileStore(tmp_path)
    try:
        round_video = build_media(world, files, {"kind": "round", "size": 100})
        doc = world.document(round_video["document_id"])
        assert doc.attributes[0]["round_message"] is True
        voice = world.document(build_media(world, files, {"kind": "voice", "size": 10, "duration": 3})["document_id"])
        assert voice.attributes == [{"type": "audio", "duration": 3, "voice": True}]
        gif = world.document(build_media(world, files, {"kind": "gif", "size": 10})["document_id"])
        assert {"type": "animated"} in gif.attributes
        poll = build_media(world, files, {"kind": "poll", "question": "q?", "answers": ["a", "b"]})
        assert poll["answers"] == ["a", "b"]
    finally:
        files.close()
        world.close()
