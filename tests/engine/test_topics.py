"""Forum topics mirrored exactly: empty ones, same titles, closed and hidden states, icons, deleted topics."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from telethon.tl import functions

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.engine.progress import Progress
from telepi.engine.session import run_session
from telepi.errors import UserFixableError
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_equal, content

ACCOUNTS = ["alice", "bob", "carol", "dave"]
PREMIUM_ONLY_ICON = 6_000_000_000_000_000_001  # not one of the default topic icons


def topics_world(*, target_admins: dict[str, list[str]] | None = None) -> dict[str, Any]:
    source = {
        "name": "source",
        "kind": "supergroup",
        "forum": True,
        "title": "Source forum",
        "owner": "alice",
        "members": ACCOUNTS[1:],
        "topics": [
            {"title": "News", "ref": "news"},
            {"title": "Empty", "ref": "empty"},
            {"title": "Dup", "ref": "dup1", "icon_color": 0xFFD67E},
            {"title": "Dup", "ref": "dup2", "icon_color": 0xCB86DB},
            {"title": "Closed", "ref": "closed", "closed": True},
            {"title": "Fancy", "ref": "fancy", "icon_color": 0x8EEE98, "icon_emoji_id": PREMIUM_ONLY_ICON},
        ],
        "messages": [
            {"text": "in general"},
            {"topic": "news", "text": "news 1"},
            {"topic": "dup1", "text": "first dup 1"},
            {"topic": "dup2", "text": "second dup 1"},
            {"topic": "closed", "text": "closed 1"},
            {"topic": "dup1", "text": "first dup 2"},
            {"topic": "fancy", "text": "fancy 1"},
            {"topic": "dup2", "text": "second dup 2"},
            {"topic": "news", "text": "news 2"},
        ],
    }
    target = {
        "name": "target",
        "kind": "supergroup",
        "forum": True,
        "title": "Target forum",
        "owner": "alice",
        "members": ["dave"],
        "admins": target_admins or {name: ["post_messages", "manage_topics"] for name in ("bob", "carol")},
    }
    return {
        "accounts": [
            {"name": name, "phone": f"+1555000000{i}", "code": "12345"} for i, name in enumerate(ACCOUNTS, start=1)
        ],
        "chats": [source, target],
    }


async def make_session(sb: Sandbox, root: Path, account: str, **env: Any) -> Path:
    return await sb.session_dir(
        root / account,
        account,
        SOURCE_CHAT=str(sb.chat("source").id),
        TARGET_CHAT=str(sb.chat("target").id),
        **{"SEND_INTERVAL": "0", "READ_INTERVAL": "0", "LIVE": "false", "MODE": "copy", **env},
    )


async def run(directory: Path, timeout: float = 90) -> Progress:
    settings = load_settings(directory, {})
    store = SqliteStore(settings.shared_db_path)
    try:
        return await asyncio.wait_for(run_session(settings, store, asyncio.Event()), timeout)
    finally:
        store.close()


def topic_of_text(sb: Sandbox, chat: str) -> dict[str, int]:
    return {m["text"]: m["topic"] for m in content(sb.messages(chat))}


def assert_topics_mirrored_one_to_one(sb: Sandbox) -> dict[int, int]:
    """Each source topic's messages sit together in one target topic of their own; returns that map."""
    source, target = topic_of_text(sb, "source"), topic_of_text(sb, "target")
    assert set(target) == set(source)
    mapping: dict[int, int] = {}
    for text, src_topic in source.items():
        assert mapping.setdefault(src_topic, target[text]) == target[text], f"{text!r} left its topic's mirror"
    assert len(set(mapping.values())) == len(mapping), f"two source topics merged: {mapping}"
    return mapping


def by_title(sb: Sandbox, chat: str, title: str) -> list[dict[str, Any]]:
    return [t for t in sb.topics(chat) if t["title"] == title]


async def test_every_topic_is_mirrored_exactly(tmp_path: Path) -> None:
    async with Sandbox(world=topics_world(), state_dir=tmp_path / "state") as sb:
        sb.world.set_topic_state(sb.chat("source").id, 1, closed=False, hidden=True)  # General hidden
        directories = [await make_session(sb, tmp_path / "sessions", name) for name in ("bob", "carol")]
        await asyncio.gather(*(run(d) for d in directories))
        assert_clone_equal(sb, "source", "target")
        assert sorted(t["title"] for t in sb.topics("target")) == sorted(t["title"] for t in sb.topics("source"))
        assert len(by_title(sb, "target", "Empty")) == 1  # a topic without messages is mirrored too
        mapping = assert_topics_mirrored_one_to_one(sb)  # the two "Dup" topics stay two
        source_topics = {t["id"]: t for t in sb.topics("source")}
        target_topics = {t["id"]: t for t in sb.topics("target")}
        for src, dst in mapping.items():
            if src != 1:
                assert target_topics[dst]["icon_color"] == source_topics[src]["icon_color"]
        [closed] = by_title(sb, "target", "Closed")
        assert closed["closed"]  # closed after creation; its history still arrived (manage-topics rights)
        assert not any(t["closed"] for t in sb.topics("target") if t["title"] != "Closed")
        assert target_topics[1]["hidden"]  # General's hidden state
        [fancy] = by_title(sb, "target", "Fancy")  # non-premium account: default icon, colour kept
        assert fancy["icon_emoji_id"] is None and fancy["icon_color"] == 0x8EEE98


async def test_premium_account_keeps_the_custom_icon(tmp_path: Path) -> None:
    async with Sandbox(world=topics_world(), state_dir=tmp_path / "state") as sb:
        sb.world.set_premium(sb.account("bob").id, True)
        await run(await make_session(sb, tmp_path / "sessions", "bob"))
        [fancy] = by_title(sb, "target", "Fancy")
        assert fancy["icon_emoji_id"] == PREMIUM_ONLY_ICON


async def test_takeover_adopts_only_the_topic_the_dead_account_created(tmp_path: Path) -> None:
    async with Sandbox(world=topics_world(), state_dir=tmp_path / "state") as sb:
        directory = await make_session(sb, tmp_path / "sessions", "bob")
        dup1 = next(t["id"] for t in sb.topics("source") if t["title"] == "Dup")
        # Carol claimed "Dup" #1, created it in the target and died before recording it; the owner
        # made a "Dup" of her own by hand.
        store = SqliteStore(load_settings(directory, {}).shared_db_path)
        route = store.route(str(sb.chat("source").id), str(sb.chat("target").id))
        carol = sb.account("carol").id
        store.claim_topic(route.id, dup1, "carol", "Dup", 0.0, user_id=carol)
        store.close()
        by_hand = await sb.create_topic("target", "Dup", as_account="alice")
        carols = await sb.create_topic("target", "Dup", as_account="carol")
        await run(directory)
        mapping = assert_topics_mirrored_one_to_one(sb)
        assert mapping[dup1] == carols
        dups = by_title(sb, "target", "Dup")
        assert len(dups) == 3, dups  # the hand-made one, Carol's (adopted) and one new: none doubled
        assert by_hand not in mapping.values()


async def test_deleted_target_topic_is_created_again(tmp_path: Path) -> None:
    async with Sandbox(world=topics_world(), state_dir=tmp_path / "state") as sb:
        directory = await make_session(sb, tmp_path / "sessions", "bob")
        await run(directory)
        [news] = by_title(sb, "target", "News")
        owner = await sb.client("alice")
        await owner.get_dialogs()
        await owner(
            functions.messages.DeleteTopicHistoryRequest(
                peer=await owner.get_input_entity(sb.chat("target").id), top_msg_id=news["id"]
            )
        )
        assert not by_title(sb, "target", "News")
        source_news = next(t["id"] for t in sb.topics("source") if t["title"] == "News")
        await sb.post("source", "news after the deletion", as_account="alice", topic=source_news)
        progress = await run(directory)
        assert progress.skipped == 0
        [again] = by_title(sb, "target", "News")
        assert again["id"] != news["id"]
        assert topic_of_text(sb, "target")["news after the deletion"] == again["id"]


async def test_topic_deleted_twice_stops_the_session(tmp_path: Path) -> None:
    async with Sandbox(world=topics_world(), state_dir=tmp_path / "state") as sb:
        directory = await make_session(sb, tmp_path / "sessions", "bob")
        await run(directory)
        source_news = next(t["id"] for t in sb.topics("source") if t["title"] == "News")
        await sb.post("source", "news after the deletion", as_account="alice", topic=source_news)
        sb.faults.inject_error("SendMessageRequest", "TOPIC_DELETED", times=2)
        with pytest.raises(UserFixableError, match="TOPIC_DELETED again"):
            await run(directory)
        assert "news after the deletion" not in topic_of_text(sb, "target")


async def test_closed_target_topic_stops_an_account_without_manage_topics(tmp_path: Path) -> None:
    admins = {"bob": ["post_messages"]}  # may post, may not manage topics
    async with Sandbox(world=topics_world(target_admins=admins), state_dir=tmp_path / "state") as sb:
        closed = await sb.create_topic("target", "News")
        sb.world.set_topic_state(sb.chat("target").id, closed, closed=True, hidden=False)
        directory = await make_session(sb, tmp_path / "sessions", "bob", AUTO_CREATE_TOPICS="false")
        (directory / "topic_map.json").write_text(f'{{"News": {closed}}}')
        with pytest.raises(UserFixableError, match="TOPIC_CLOSED"):
            await run(directory)
        db = sqlite3.connect(load_settings(directory, {}).shared_db_path)
        skipped = db.execute("SELECT COUNT(*) FROM messages WHERE skip_reason = 'TOPIC_CLOSED'").fetchone()[0]
        db.close()
        assert skipped == 0  # a chat/rights problem, never a skip


async def test_closing_a_source_topic_live_closes_its_mirror(tmp_path: Path) -> None:
    async with Sandbox(world=topics_world(), state_dir=tmp_path / "state") as sb:
        directory = await make_session(sb, tmp_path / "sessions", "bob", LIVE="true")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        stop = asyncio.Event()
        running = asyncio.create_task(run_session(settings, store, stop))
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while len(content(sb.messages("target"))) < len(content(sb.messages("source"))):
                assert asyncio.get_running_loop().time() < deadline, "history not copied in time"
                await asyncio.sleep(0.1)
            news = next(t["id"] for t in sb.topics("source") if t["title"] == "News")
            owner = await sb.client("alice")
            await owner.get_dialogs()
            peer = await owner.get_input_entity(sb.chat("source").id)
            await owner(functions.messages.EditForumTopicRequest(peer=peer, topic_id=news, closed=True))
            while not by_title(sb, "target", "News")[0]["closed"]:
                assert asyncio.get_running_loop().time() < deadline + 30, "close not mirrored in time"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            store.close()
