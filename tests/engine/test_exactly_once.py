"""Exactly once where it is hardest: a message deleted just before the forward that carries it, and a
session stopped (SIGSTOP) longer than its lease while it was about to send."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.engine.worker import TAKEOVER_READ
from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO, telepi_async
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions, run_all, wait_for
from tests.engine.test_ordered_sharing import channel_world


async def test_a_message_deleted_just_before_its_forward_is_settled_and_the_route_goes_on(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(150), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="forward")
        doomed: list[int] = []

        def delete_one_it_carries(request: Any) -> None:
            if not doomed and len(request.id) > 2:  # the first batch of several messages
                doomed.append(request.id[1])
                sb.delete_now("source", doomed[0])

        for nth in range(1, 40):
            sb.faults.before_call("ForwardMessagesRequest", delete_one_it_carries, nth=nth)
        await run_all([directory], timeout=60)  # before: the row stayed *sending* and the ordered route waited
        assert doomed, "no forward carried several messages"
        assert_clone_equal(sb, "source", "target")
        store = SqliteStore(load_settings(directory, {}).shared_db_path, create=False)
        counts = store.report().routes[0].counts
        store.close()
        assert counts.get("processing", 0) == 0 and counts.get("failed", 0) == 0, counts


async def test_a_session_stopped_longer_than_its_lease_sends_nothing_twice(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(160), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(
            sb,
            tmp_path / "sessions",
            ["bob", "carol"],
            LIVE="false",
            MODE="copy",
            SEND_INTERVAL="0.05",
            LEASE_SECONDS="10",
        )
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "telepi", "run", str(d), cwd=REPO, stderr=asyncio.subprocess.DEVNULL
            )
            for d in directories
        ]
        frozen = processes[0]
        try:
            while len(content(sb.messages("target"))) < 20:
                await asyncio.sleep(0.02)
            frozen.send_signal(signal.SIGSTOP)  # a frozen VM, a long GC: heartbeats stop, leases run out
            await asyncio.sleep(14)
            frozen.send_signal(signal.SIGCONT)
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 180)
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGCONT)
                    process.kill()
        assert codes == [0, 0]
        assert_clone_equal(sb, "source", "target")  # every message once, in order: no duplicate after resuming


def as_if_died_after_sending(directory: Path, ids: list[int], first_attempt_ago: float = 5) -> None:
    """Put rows back as a session that died right after its send ran leaves them: leased by it (the lease
    run out), marked sending (its latest attempt 5 s ago, its first ``first_attempt_ago``), no copy recorded."""
    db = sqlite3.connect(load_settings(directory, {}).shared_db_path)
    with db:
        db.execute(
            f"UPDATE messages SET status = 'processing', session = 'session1', lease_expires = 0, "
            f"send_session = 'session1', send_started_at = ?, send_first_at = ?, target_msg_id = NULL "
            f"WHERE source_msg_id IN ({','.join('?' * len(ids))})",
            (time.time() - 5, time.time() - first_attempt_ago, *ids),
        )
    db.close()


def skipped_by_reason(directory: Path) -> dict[str, int]:
    """The route's skipped messages counted by reason, as ``telepi status`` shows them."""
    store = SqliteStore(load_settings(directory, {}).shared_db_path, create=False)
    report = store.report()
    store.close()
    return {entry.reason: entry.count for entry in report.routes[0].skipped}


async def test_a_takeover_finds_a_copy_made_long_before_the_last_retry(tmp_path: Path) -> None:
    """The first attempt's answer was lost, a flood wait held the retry two minutes, the retry (deduplicated
    by Telegram by its random_id) was marked and its session died: the copy is the first attempt's."""
    world = forum_world(0)
    world["chats"][0]["messages"] = [{"text": "hello"}, {"text": "world"}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        sb.world.clock_offset -= 120  # bob's copies are dated two minutes before its retry below
        first, second = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], LIVE="false", MODE="copy")
        await run_all([first])
        sb.world.clock_offset += 120
        as_if_died_after_sending(first, [m["id"] for m in content(sb.messages("source"))], first_attempt_ago=125)
        await run_all([second])  # carol takes over: before, it looked from the retry on and sent both again
        assert_clone_equal(sb, "source", "target")


async def test_a_takeover_finds_a_copy_below_what_other_sessions_sent_since(tmp_path: Path) -> None:
    """Unordered, the other sessions go on copying while a unit waits for its takeover: 150 messages came
    into the target after the dead session's copy, below the newest 100."""
    world = forum_world(0)
    world["chats"][0]["messages"] = [{"text": "hello"}, {"text": "world"}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        first, second = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], LIVE="false", MODE="copy")
        await run_all([first])
        for n in range(150):
            await sb.post("target", f"other {n}", as_account="alice")
        as_if_died_after_sending(first, [m["id"] for m in content(sb.messages("source"))])
        await run_all([second])  # before, carol read the newest 100, found no copy and sent both again
        texts = [m["text"] for m in content(sb.messages("target"))]
        assert (texts.count("hello"), texts.count("world"), len(texts)) == (1, 1, 152)


async def test_a_takeover_holds_for_review_what_it_cannot_read_back_to(tmp_path: Path) -> None:
    """More messages came into the target after the first attempt than a takeover reads (TAKEOVER_READ):
    the copy may be there, so the unit is neither sent again nor guessed, but held for review."""
    world = forum_world(0)
    world["chats"][0]["messages"] = [{"text": "hello"}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        first, second = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], LIVE="false", MODE="copy")
        await run_all([first])
        for n in range(TAKEOVER_READ + 10):
            await sb.post("target", f"other {n}", as_account="alice")
        as_if_died_after_sending(first, [m["id"] for m in content(sb.messages("source"))])
        await run_all([second])
        assert [m["text"] for m in content(sb.messages("target"))].count("hello") == 1
        skipped = skipped_by_reason(second)
        assert skipped.get("needs_review") == 1, skipped


async def test_a_takeover_adopts_only_a_certain_copy(tmp_path: Path) -> None:
    world = forum_world(0)
    long_caption = "caption " * 200  # over 1024: the copy's caption moves to a follow-up message
    world["chats"][0]["messages"] = [
        {"text": "same"},
        {"text": "same"},
        {"text": long_caption, "media": {"kind": "photo", "size": 4000}},
        {"text": "after"},
    ]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        first, second = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], LIVE="false", MODE="copy")
        await run_all([first])
        source = {m["text"]: m["id"] for m in content(sb.messages("source"))}
        look_alikes = [m["id"] for m in content(sb.messages("source")) if m["text"] == "same"]
        as_if_died_after_sending(first, [*look_alikes, source[long_caption]])
        await run_all([second])  # carol takes over bob's units marked sending
        target = content(sb.messages("target"))
        assert [m["text"] for m in target].count("same") == 2  # neither sent again
        assert len([m for m in target if m["media"]]) == 1  # the photo whose caption moved: adopted, not resent
        skipped = skipped_by_reason(second)
        assert skipped.get("needs_review") == 2, skipped  # two look-alikes: no guess, left for review


async def test_a_caption_follow_up_lost_with_its_sender_is_sent_by_that_account(tmp_path: Path) -> None:
    world = forum_world(0)
    long_caption = "caption " * 200  # over 1024: the copy's caption follows it as a reply
    world["chats"][0]["messages"] = [{"text": long_caption, "media": {"kind": "photo", "size": 4000}}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        first, second = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], LIVE="false", MODE="copy")
        await run_all([first])
        [photo, follow_up] = content(sb.messages("target"))
        sb.delete_now("target", follow_up["id"])  # as if bob died between the media and its follow-up
        as_if_died_after_sending(first, [content(sb.messages("source"))[0]["id"]])
        await run_all([second])  # carol adopts bob's photo; only bob may add its caption
        assert [m["id"] for m in content(sb.messages("target"))] == [photo["id"]]
        settings = load_settings(first, {"LIVE": "true"})
        store = SqliteStore(settings.shared_db_path)
        stop = asyncio.Event()
        running = asyncio.create_task(run_session(settings, store, stop))  # bob back, live
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) == 2)
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            store.close()
        [_, caption] = content(sb.messages("target"))
        assert caption["text"] == content(sb.messages("source"))[0]["text"]
        assert caption["sender"] == "bob" and caption["reply_to"] == photo["id"]


def in_flight(db: Path) -> list[tuple[int, str | None, int]]:
    """(source id, holder, marked sending) of the rows leased now, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT source_msg_id, session, send_started_at IS NOT NULL FROM messages WHERE status = 'processing'"
        ).fetchall()
    finally:
        conn.close()
    return [(int(i), s, int(m)) for i, s, m in rows]


async def test_a_send_refused_by_flood_wait_is_not_left_marked_sending(tmp_path: Path) -> None:
    """FLOOD_WAIT is Telegram's answer: the send was not executed. Its unit must not show as *sending* for
    the whole wait (before: marked for all 900 s, held, and telepi status said 'sending'); unmarked, the long
    wait hands it to another account like any unsent lease, which copies it without a takeover's look."""
    async with Sandbox(world=channel_world(12, {"text": 100}), state_dir=tmp_path / "state") as sb:
        bob, carol = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], MODE="copy", LIVE="false")
        sb.faults.inject_error("SendMessageRequest", "FLOOD_WAIT_900", 420, nth=4, user_id=sb.account("bob").id)
        db = load_settings(bob, {}).shared_db_path
        waiting = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "telepi", "run", str(bob), cwd=REPO, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await wait_for(lambda: flood_waited(db), 60)
            await asyncio.sleep(0.5)
            assert len(content(sb.messages("target"))) == 3  # the fourth send was refused
            assert [row for row in in_flight(db) if row[2]] == [], in_flight(db)  # nothing shown as sending
            status = await telepi_async("status", tmp_path / "sessions", "--json", timeout=60, cwd=None)
            report = json.loads(status.stdout)
            assert not [lease for lease in report["routes"][0]["leases"] if lease["sending"]], report["routes"]
            assert report["sessions"][0]["activity"].startswith("waiting on FLOOD_WAIT for SendMessage")

            other = await telepi_async("run", carol)
            assert other.returncode == 0, other.stderr[-3000:]
            assert "found the copy made by" not in (carol / "clone.log").read_text()  # no takeover needed
            waiting.send_signal(signal.SIGTERM)  # ends bob's wait: it sends nothing more
            assert await asyncio.wait_for(waiting.wait(), 30) == 0
        finally:
            if waiting.returncode is None:
                waiting.kill()
        assert_clone_equal(sb, "source", "target")  # every message once, in order


def flood_waited(db: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT COUNT(*) FROM flood_waits").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return False


async def test_a_caption_follow_up_refused_after_its_media_landed_keeps_the_unit_in_doubt(tmp_path: Path) -> None:
    """A photo whose caption is too long goes in two requests: the media, then the caption as a reply. A
    FLOOD_WAIT on the second proves only that the reply was not sent: the photo is in the target. The unit
    keeps its sending mark through the wait and the stop (before: the stop's hand-back cleared it), so the
    account that takes it over finds bob's photo instead of posting a second one."""
    world = forum_world(0)
    world["chats"][0]["messages"] = [{"text": "caption " * 200, "media": {"kind": "photo", "size": 4000}}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        bob, carol = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], MODE="copy", LIVE="false")
        sb.faults.inject_error("SendMessageRequest", "FLOOD_WAIT_900", 420, nth=1, user_id=sb.account("bob").id)
        db = load_settings(bob, {}).shared_db_path
        [source] = content(sb.messages("source"))
        waiting = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "telepi", "run", str(bob), cwd=REPO, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await wait_for(lambda: flood_waited(db), 60)
            await asyncio.sleep(0.5)
            [photo] = content(sb.messages("target"))  # the media landed, its caption's reply was refused
            assert in_flight(db) == [(source["id"], "session1", 1)]  # in doubt: still marked sending
            waiting.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(waiting.wait(), 30) == 0
        finally:
            if waiting.returncode is None:
                waiting.kill()
        other = await telepi_async("run", carol)
        assert other.returncode == 0, other.stderr[-3000:]
        assert "found the copy made by session1" in (carol / "clone.log").read_text()
        assert [m["id"] for m in content(sb.messages("target"))] == [photo["id"]]  # one photo, not two
