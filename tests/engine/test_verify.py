"""A lost or replaced checkpoint is caught, and ``telepi verify`` compares, requeues and adopts: real
Telethon clients against the sandbox, the clone checked from the target chat itself."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
from pathlib import Path

import pytest

from telepi.checkpoint import SqliteStore
from telepi.cli import main
from telepi.commands.verify import Options, verify
from telepi.config import load_settings
from telepi.engine.provenance import UnrecordedCopies
from telepi.engine.session import run_session
from telepi.errors import EX_CONFIG, SessionStopped
from telepi.sandbox.sandbox import Sandbox
from telepi.sandbox.world.photos import media_key
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions, run_all, wait_for
from tests.engine.test_content import FANCY
from tests.engine.test_content import world as content_world


def checkpoint_of(directory: Path) -> Path:
    return load_settings(directory, {}).shared_db_path


def remove_checkpoint(directory: Path) -> None:
    db = checkpoint_of(directory)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db}{suffix}").unlink()


def no_doubles(sb: Sandbox) -> None:
    """No content shows up in the target more often than in the source."""
    key = lambda m: (m["text"], media_key(m["media"]))  # noqa: E731
    source = collections.Counter(map(key, content(sb.messages("source"))))
    target = collections.Counter(map(key, content(sb.messages("target"))))
    assert not target - source, target - source


async def test_clean_clone_verifies_with_nothing_to_fix(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(40), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await run_all([directory])
        outcome = await verify(load_settings(directory, {}), Options())
        assert outcome.result.findings == []
        assert outcome.exit_code == 0
        assert outcome.source_count == outcome.target_count == len(content(sb.messages("source")))


async def test_duplicate_and_missing_message_are_both_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with Sandbox(world=forum_world(40), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await run_all([directory])
        source, target = content(sb.messages("source")), content(sb.messages("target"))
        texts = collections.Counter(m["text"] for m in source)
        doubled = next(
            i for i, m in enumerate(source) if m["media"] is None and not m["entities"] and texts[m["text"]] == 1
        )
        lost = next(i for i, m in enumerate(source) if i != doubled and m["grouped_id"] is None)
        await sb.post("target", source[doubled]["text"], as_account="alice", topic=target[doubled]["topic"])
        await sb.delete("target", target[lost]["id"], as_account="alice")

        code = await asyncio.to_thread(main, ["verify", str(directory)])
        out = capsys.readouterr().out
        assert code == 1, out
        assert f"duplicated      source {source[doubled]['id']}" in out, out
        assert f"missing         source {source[lost]['id']}" in out, out
        assert "wrongly mapped" not in out and "out of order" not in out, out

        code = await asyncio.to_thread(main, ["verify", str(directory), "--requeue"])
        assert "requeued 1 missing messages" in capsys.readouterr().out
        await run_all([directory])
        assert any(m["text"] == source[lost]["text"] for m in content(sb.messages("target")))


async def test_checkpoint_deleted_while_running_stops_78_then_adopt_continues(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(60), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(
            sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy", SEND_INTERVAL="0.1"
        )
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        running = asyncio.create_task(run_session(settings, store, asyncio.Event()))
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) >= 8, timeout=60)
            remove_checkpoint(directory)  # rm -rf sessions/shared while the session runs
            with pytest.raises(SessionStopped) as stopped:
                await asyncio.wait_for(running, 30)
        finally:
            store.close()
        assert stopped.value.exit_code == EX_CONFIG
        assert f"the checkpoint {settings.shared_db_path} was deleted or replaced" in str(stopped.value)
        assert "telepi verify" in str(stopped.value) and "--adopt" in str(stopped.value)
        copied = len(content(sb.messages("target")))
        assert copied < len(content(sb.messages("source")))
        no_doubles(sb)

        # The restart finds a new, empty checkpoint and a target with its copies: it refuses.
        with pytest.raises(UnrecordedCopies) as refused:
            await run_all([directory])
        assert f"telepi verify {directory} --adopt" in str(refused.value)
        assert len(content(sb.messages("target"))) == copied

        outcome = await verify(load_settings(directory, {}), Options(adopt=True))
        held = [f for f in outcome.result.findings if f.kind == "review"]  # repeated content: never guessed
        assert outcome.adopted + len(held) == copied, outcome.result.findings
        await run_all([directory])
        assert_clone_equal(sb, "source", "target")
        no_doubles(sb)
        after = await verify(load_settings(directory, {}), Options())
        assert after.result.problems() == [], after.result.problems()  # the rebuilt clone verifies clean


async def test_restored_checkpoint_refuses_until_adopted(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(40), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        db = checkpoint_of(directory)
        await run_all([directory])
        backup = SqliteStore(tmp_path / "backup.db")  # an older copy: the route known, nothing recorded yet
        backup.close()
        remove_checkpoint(directory)
        (tmp_path / "backup.db").rename(db)
        await sb.post("source", "written after the backup", as_account="alice")
        with pytest.raises(UnrecordedCopies, match=r"verify .* --adopt"):
            await run_all([directory])
        outcome = await verify(load_settings(directory, {}), Options(adopt=True))
        assert outcome.adopted == len(content(sb.messages("target")))
        await run_all([directory])
        assert_clone_equal(sb, "source", "target")
        no_doubles(sb)


async def test_target_with_foreign_messages_starts_after_adopting_nothing(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await sb.post("target", "our own welcome note, not a copy", as_account="bob")
        with pytest.raises(UnrecordedCopies):
            await run_all([directory])
        outcome = await verify(load_settings(directory, {}), Options(adopt=True))
        assert outcome.adopted == 0
        await run_all([directory])
        assert len(content(sb.messages("target"))) == len(content(sb.messages("source"))) + 1


async def test_a_caption_follow_up_whose_media_lies_beyond_the_look_back_is_no_unrecorded_copy(tmp_path: Path) -> None:
    world = forum_world(0)
    world["chats"][0]["messages"] = [
        {"text": "caption " * 200, "media": {"kind": "photo", "size": 4000}},  # over 1024: a follow-up reply
        *({"text": f"text {i}"} for i in range(49)),  # the follow-up is the 50th newest, its media the 51st
    ]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await run_all([directory])
        await run_all([directory])  # started again on the same checkpoint: nothing unrecorded (before: exit 78)
        assert len(content(sb.messages("target"))) == 51


def hold_for_review(directory: Path, ids: list[int]) -> None:
    """Leave rows as a takeover that found several candidate copies leaves them: skipped ``needs_review``."""
    db = sqlite3.connect(checkpoint_of(directory))
    with db:
        db.execute(
            f"UPDATE messages SET status = 'skipped', skip_reason = 'needs_review', session = 'session2' "
            f"WHERE source_msg_id IN ({','.join('?' * len(ids))})",
            ids,
        )
    db.close()


async def test_verify_resolves_messages_held_for_review(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = forum_world(0)
    world["chats"][0]["messages"] = [{"text": t} for t in ("same", "same", "alpha", "gamma", "beta")]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await run_all([directory])
        source = content(sb.messages("source"))
        copy_of = {s["id"]: t["id"] for s, t in zip(source, content(sb.messages("target")), strict=True)}
        same1, same2, alpha, _gamma, beta = (m["id"] for m in source)
        hold_for_review(directory, [same1, same2, alpha, beta])
        await sb.delete("target", copy_of[alpha], as_account="alice")  # alpha: no copy in the target
        extra = await sb.post("target", "beta", as_account="bob")  # beta: two copies, either could be it

        code = await asyncio.to_thread(main, ["verify", str(directory)])
        out = capsys.readouterr().out
        assert code == 1, out  # held for review is something to fix, not a clean clone
        for look_alike in (same1, same2):  # repeated content, placed by its neighbours' copies: one copy each
            assert f"review          source {look_alike} -> target {copy_of[look_alike]} (held for review" in out
        assert f"missing         source {alpha}" in out, out
        assert f"review          source {beta} -> target {copy_of[beta]}" in out, out  # both copies named
        assert f"duplicated      source {beta} -> target {extra}" in out, out
        assert "4 messages are held for review" in out, out

        code = await asyncio.to_thread(main, ["verify", str(directory), "--adopt", "--requeue"])
        out = capsys.readouterr().out
        assert "adopted 2 copies" in out and "requeued 1 missing" in out, out
        assert "1 messages are held for review" in out, out  # beta: a person deletes one copy first
        await run_all([directory])  # alpha sent again
        await sb.delete("target", extra, as_account="alice")
        code = await asyncio.to_thread(main, ["verify", str(directory), "--adopt"])
        assert "adopted 1 copies" in capsys.readouterr().out

        outcome = await verify(load_settings(directory, {}), Options())
        assert outcome.in_review == 0
        assert {f.kind for f in outcome.result.findings} <= {"out_of_order"}, outcome.result.findings  # alpha, late
        assert outcome.result.pairs == {**copy_of, alpha: outcome.result.pairs[alpha]}
        texts = [m["text"] for m in content(sb.messages("target"))]
        assert sorted(texts) == sorted(m["text"] for m in source)  # each once: nothing adopted twice or resent
        store = SqliteStore(checkpoint_of(directory), create=False)
        assert {entry.reason for entry in store.report().routes[0].skipped} == {"service_message"}  # topic creation
        store.close()


async def test_copies_that_lost_their_custom_emoji_verify_and_are_adopted(tmp_path: Path) -> None:
    # A non-premium account's copies lack the source's custom emoji (Telegram drops them): still its copies.
    async with Sandbox(world=content_world(FANCY, noforwards=True), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="auto")
        await run_all([directory])
        assert [m["entities"] for m in content(sb.messages("target"))][:2] == [[FANCY[0]["entities"][1]], []]
        outcome = await verify(load_settings(directory, {}), Options())
        assert outcome.result.findings == [] and outcome.exit_code == 0
        remove_checkpoint(directory)
        adopted = await verify(load_settings(directory, {}), Options(adopt=True))
        assert adopted.adopted == 3  # the text, the re-encoded photo and the file, each matched to its source
        assert (await verify(load_settings(directory, {}), Options())).exit_code == 0
