"""Exactly once where it is hardest: a message deleted just before the forward that carries it, and a
session stopped (SIGSTOP) longer than its lease while it was about to send."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions, run_all

REPO = Path(__file__).resolve().parents[2]


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
