"""Nothing missed while down: every `telepi run` of a route SIGKILLed, the source posted to, edited and
deleted from meanwhile, the sessions started again; the target is checked against the source — from
Telegram's difference (updates.getChannelDifference from the route's pts), and from the history read
again when Telegram answers that the difference is too long."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions


async def start(directory: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telepi", "run", str(directory), cwd=REPO, stderr=asyncio.subprocess.DEVNULL
    )


async def until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def route_pts(directory: Path) -> int | None:
    store = SqliteStore(load_settings(directory, {}).shared_db_path, create=False)
    try:
        return store.source_pts(store.routes()[0].id)
    finally:
        store.close()


def texts(sb: Sandbox, chat: str) -> list[str]:
    return [m["text"] for m in content(sb.messages(chat))]


@pytest.mark.parametrize("too_long", [False, True], ids=["difference", "difference-too-long"])
async def test_what_happened_while_every_session_was_killed_reaches_the_target(tmp_path: Path, too_long: bool) -> None:
    async with Sandbox(world=forum_world(40), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(
            sb, tmp_path / "sessions", ["bob", "carol"], MODE="copy", SYNC_DELETES="true", LEASE_SECONDS="10"
        )
        source = sb.chat("source")
        processes = [await start(d) for d in directories]
        try:
            await until(lambda: len(content(sb.messages("target"))) == len(content(sb.messages("source"))), "clone")
            copied = [m for m in content(sb.messages("source")) if m["text"]]
            # One live edit first: the route's pts moves with live updates, saved right after recording.
            await sb.edit("source", copied[0]["id"], "edited live", as_account="alice")
            await until(lambda: "edited live" in texts(sb, "target"), "the live edit")
            await until(lambda: route_pts(directories[0]) == sb.world.pts(source.id), "the live pts saved")

            for process in processes:  # every session dies at once, nothing said to Telegram or the checkpoint
                process.send_signal(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in processes))
            pts_before = sb.world.pts(source.id)
            topics = [t["id"] for t in sb.topics("source")]
            posted = [
                await sb.post("source", f"posted while down {i}", topic=topics[i % len(topics)]) for i in range(6)
            ]
            edited = [m["id"] for m in copied[1:4]]
            for msg_id in edited:
                await sb.edit("source", msg_id, f"edited while down {msg_id}", as_account="alice")
            await sb.edit("source", posted[1], "posted, then edited while down", as_account="alice")
            deleted = [copied[5]["id"], copied[-1]["id"]]
            await sb.delete("source", deleted, as_account="alice")
            await sb.delete("source", posted[2], as_account="alice")
            assert sb.world.pts(source.id) - pts_before == 6 + 4 + 2 + 1  # Telegram's record of it all
            if too_long:
                sb.world.channel_difference_max = 5  # the box no longer holds the updates since our pts
            edits_before = sb.faults.calls["EditMessageRequest"]
            deletes_before = sb.faults.calls["DeleteMessagesRequest"]

            restarted = time.monotonic()
            processes = [await start(d) for d in directories]
            want = texts(sb, "source")

            def caught_up() -> bool:
                return texts(sb, "target") == want

            await until(caught_up, "the target to show every post, edit and delete")
            way = "re-read, the difference too long" if too_long else "from the difference"
            print(f"caught up {time.monotonic() - restarted:.1f} s after the restart ({way})")
            await until(lambda: route_pts(directories[0]) == sb.world.pts(source.id), "the route's pts to move on")
            await asyncio.sleep(2)  # anything applied twice would show now
            for process in processes:
                process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 60) == [0, 0]
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        assert_clone_equal(sb, "source", "target")  # every post once, in order, edits and deletes applied
        target = texts(sb, "target")
        assert all(f"edited while down {i}" in target for i in edited)
        assert "posted, then edited while down" in target and "posted while down 2" not in target
        # Each edit and delete of a copy made once (the message edited before its copy is copied as it is).
        assert sb.faults.calls["EditMessageRequest"] - edits_before == len(edited), sb.faults.calls
        assert sb.faults.calls["DeleteMessagesRequest"] - deletes_before == len(deleted), sb.faults.calls
        logs = "\n".join((d / "clone.log").read_text() for d in directories)
        if too_long:
            assert "is too long for Telegram to give: reading the copied range of its history again" in logs
        else:
            assert "too long" not in logs
            assert f"difference to pts {sb.world.pts(source.id)}: 4 edits and 3 deleted messages recorded" in logs
