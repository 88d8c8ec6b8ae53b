"""The clone engine end to end: real Telethon clients against the sandbox, real SQLite checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from telethon.tl import functions

from telepi.checkpoint import Checkpoint, SqliteStore, open_checkpoint, open_store
from telepi.config import load_settings
from telepi.engine.progress import Progress
from telepi.engine.session import run_session
from telepi.sandbox.sandbox import Sandbox
from telepi.sandbox.world.worldfile import generate_history
from tests.engine.clonecheck import (
    assert_clone_equal,
    assert_one_export_per_foreign_dc,
    content,
    media_dcs,
    topic_titles,
)

ACCOUNTS = ["alice", "bob", "carol", "dave"]


def forum_world(count: int, *, noforwards: bool = False, seed: int = 1) -> dict[str, Any]:
    source: dict[str, Any] = {
        "name": "source",
        "kind": "supergroup",
        "forum": True,
        "title": "Source forum",
        "owner": "alice",
        "noforwards": noforwards,
        "members": ACCOUNTS[1:],
        "topics": [
            {"title": "News", "ref": "news"},
            {"title": "Chat", "ref": "chat"},
            {"title": "Files", "ref": "files"},
        ],
    }
    source["messages"] = generate_history(source, count, seed=seed, max_size=48 * 1024)
    target = {
        "name": "target",
        "kind": "supergroup",
        "forum": True,
        "title": "Target forum",
        "owner": "alice",
        "admins": {name: ["post_messages", "manage_topics"] for name in ACCOUNTS[1:]},
    }
    return {
        "accounts": [
            {"name": name, "phone": f"+1555000000{i}", "code": "12345"} for i, name in enumerate(ACCOUNTS, start=1)
        ],
        "chats": [source, target],
    }


async def make_sessions(sb: Sandbox, root: Path, accounts: list[str], **env: Any) -> list[Path]:
    source, target = sb.chat("source"), sb.chat("target")
    return [
        await sb.session_dir(
            root / f"session{i}",
            account,
            SOURCE_CHAT=str(source.id),
            TARGET_CHAT=str(target.id),
            **{"SEND_INTERVAL": "0", "READ_INTERVAL": "0", **env},
        )
        for i, account in enumerate(accounts, start=1)
    ]


async def run_all(directories: list[Path], timeout: float = 120) -> list[Progress]:
    async def one(directory: Path) -> Progress:
        settings = load_settings(directory, {})
        store = open_store(settings)  # SHARED_DB_URL when the test set one, else the SQLite file
        try:
            return await run_session(settings, store, asyncio.Event())
        finally:
            store.close()

    return list(await asyncio.wait_for(asyncio.gather(*(one(d) for d in directories)), timeout))


def checkpoint(directory: Path, **options: Any) -> Checkpoint:
    """The checkpoint a session directory's .env names (SHARED_DB_URL, else SHARED_DB_PATH)."""
    settings = load_settings(directory, {})
    return open_checkpoint(settings.shared_db_url or settings.shared_db_path, **options)


# Several sessions run on both checkpoint backends; one session on SQLite only (nothing is shared).
SHARED = [(1, "sqlite"), (3, "sqlite"), (3, "postgres")]


@pytest.mark.parametrize(("sessions", "backend"), SHARED)
async def test_history_is_cloned_once_in_order_with_topics(
    tmp_path: Path, sessions: int, backend: str, shared_db_env: dict[str, str]
) -> None:
    async with Sandbox(world=forum_world(150), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(
            sb, tmp_path / "sessions", ACCOUNTS[1 : 1 + sessions], LIVE="false", MODE="copy", **shared_db_env
        )
        progress = await run_all(directories)
        assert_clone_equal(sb, "source", "target")
        assert topic_titles(sb, "target") == topic_titles(sb, "source")
        if sessions > 1:
            assert all(p.done > 0 for p in progress), [p.done for p in progress]  # the work was shared
        store = checkpoint(directories[0])
        assert isinstance(store, SqliteStore) == (backend == "sqlite")  # the sessions really shared that backend
        counts = store.report().routes[0].counts
        assert counts["pending"] == counts["processing"] == counts["failed"] == 0
        assert counts["done"] == len(content(sb.messages("target")))


async def test_forward_mode_batches_and_keeps_content(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(120), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="forward")
        await run_all(directories)
        target = content(sb.messages("target"))
        source = content(sb.messages("source"))
        assert [m["text"] for m in target] == [m["text"] for m in source]
        assert all(m["fwd"] is None for m in target)  # drop_author: no "forwarded from" header


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_live_messages_edits_and_deletes_follow(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(30), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy", SYNC_DELETES="true")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        stop = asyncio.Event()
        running = asyncio.create_task(run_session(settings, store, stop))
        try:
            source_count = len(content(sb.messages("source")))
            await wait_for(lambda: len(content(sb.messages("target"))) == source_count)
            news = next(t["id"] for t in sb.topics("source") if t["title"] == "News")
            new_id = await sb.post("source", "breaking news", as_account="alice", topic=news)
            await wait_for(lambda: any(m["text"] == "breaking news" for m in sb.messages("target")))
            await sb.edit("source", new_id, "breaking news, corrected", as_account="alice")
            await wait_for(lambda: any(m["text"] == "breaking news, corrected" for m in sb.messages("target")))
            copy = next(m for m in sb.messages("target") if m["text"] == "breaking news, corrected")
            target_news = next(t["id"] for t in sb.topics("target") if t["title"] == "News")
            assert copy["topic"] == target_news
            await sb.delete("source", new_id, as_account="alice")
            await wait_for(lambda: all(m["id"] != copy["id"] for m in sb.messages("target")))
            owner = await sb.client("alice")
            await owner.get_dialogs()  # a fresh client knows no chat until it has seen its dialogs
            await owner(
                functions.messages.EditForumTopicRequest(
                    peer=await owner.get_input_entity(sb.chat("source").id), topic_id=news, title="Headlines"
                )
            )
            await wait_for(lambda: "Headlines" in topic_titles(sb, "target"), timeout=30)
            assert "News" not in topic_titles(sb, "target")
            assert_clone_equal(sb, "source", "target")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            store.close()


@pytest.mark.parametrize(("sessions", "backend"), SHARED)
async def test_protected_source_is_reuploaded_byte_identical(
    tmp_path: Path, sessions: int, shared_db_env: dict[str, str]
) -> None:
    world = forum_world(500, noforwards=True, seed=3)
    world["chats"][0]["messages"].append(
        {
            "text": "a bigger video",
            "topic": "files",
            "media": {
                "kind": "video",
                "size": 12 * 1024 * 1024 + 5,
                "duration": 30,
                "w": 1280,
                "h": 720,
                "supports_streaming": True,
                "filename": "clip.mp4",
                "thumb": {"size": 3000, "w": 320, "h": 180},
            },
        }
    )
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(
            sb, tmp_path / "sessions", ACCOUNTS[1 : 1 + sessions], LIVE="false", **shared_db_env
        )
        await run_all(directories, timeout=240)
        assert_clone_equal(sb, "source", "target")  # files by sha256 and attributes, photos by sizes
        assert topic_titles(sb, "target") == topic_titles(sb, "source")
        assert media_dcs(sb, "source") == {1, 2, 3, 4, 5}  # files spread over every DC, read from each
        assert_one_export_per_foreign_dc(sb, ACCOUNTS[1 : 1 + sessions])
        assert sum(len(sb.exports(account)) for account in ACCOUNTS[1 : 1 + sessions]) >= 4


async def test_flood_waits_are_waited_out_visibly_and_skip_nothing(tmp_path: Path) -> None:
    from telepi.sandbox.limits.faults import RateRule

    async with Sandbox(world=forum_world(40), state_dir=tmp_path / "state") as sb:
        sb.faults.add_rate_rule(RateRule(method="SendMessageRequest", limit=6, window=2.0))
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        seen_states: set[str] = set()
        running = asyncio.create_task(run_session(settings, store, asyncio.Event()))
        while not running.done():
            seen_states |= {f"{s.state} {s.detail}" for s in store.report().sessions}
            await asyncio.sleep(0.05)
        await running
        assert any(state.startswith("flood_wait") and "on SendMessage" in state for state in seen_states)
        # The first refusal teaches the account the window: it is never refused again (learned pacing).
        assert sb.faults.refused["SendMessageRequest"] == 1, sb.faults.refused
        assert_clone_equal(sb, "source", "target")
        assert store.report().routes[0].counts["skipped"] == len(
            [m for m in sb.messages("source") if m["service"]]
        )  # only service messages: no message was skipped for the waits
        store.close()


async def test_caption_over_the_limit_follows_as_a_reply(tmp_path: Path) -> None:
    long_text = "caption " * 200  # 1600 characters: over the 1024 a caption may have
    world = forum_world(0)
    world["chats"][0]["messages"] = [{"text": long_text, "media": {"kind": "photo", "size": 4000}}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await run_all(directories)
        photo, follow_up = content(sb.messages("target"))
        assert photo["media"]["kind"] == "photo" and photo["text"] == ""
        assert follow_up["text"] == long_text and follow_up["reply_to"] == photo["id"]


async def test_live_posts_and_albums_are_woken_not_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the periodic poll out of reach (an hour), every live post and album still arrives: the update
    wakes the planner, the plan wakes the worker, an album delivered in one update is read whole."""
    monkeypatch.setattr("telepi.engine.session.POLL_SECONDS", 3600.0)
    async with Sandbox(world=forum_world(5), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        stop = asyncio.Event()
        running = asyncio.create_task(run_session(settings, store, stop))
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) == len(content(sb.messages("source"))))
            for n in range(3):
                await sb.post("source", f"live {n}", as_account="alice")
                await sb.post_album("source", [{"kind": "photo", "size": 1500}] * 3, caption=f"album {n}")
            await wait_for(lambda: len(content(sb.messages("target"))) == len(content(sb.messages("source"))), 20)
            assert_clone_equal(sb, "source", "target")
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            store.close()
