"""Sessions as real OS processes, SIGKILLed at random moments and restarted, with flood waits, RPC
errors and dropped connections injected: the clone is still exactly once and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

import pytest

from telepi.sandbox.limits.faults import RateRule
from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO
from tests.engine.clonecheck import assert_clone_equal
from tests.engine.test_clone import forum_world, make_sessions


async def start(directory: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telepi",
        "run",
        str(directory),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.parametrize("protected", [False, True], ids=["copy", "protected-reupload"])
async def test_killed_and_restarted_sessions_with_faults_copy_exactly_once(tmp_path: Path, protected: bool) -> None:
    seed = int(os.environ.get("TELEPI_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    world = forum_world(200, noforwards=protected, seed=seed % 7 + 1)
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(
            sb,
            tmp_path / "sessions",
            ["bob", "carol"],
            LIVE="false",
            MODE="auto" if protected else "copy",
            LEASE_SECONDS="10",
        )
        faults = sb.faults
        faults.add_rate_rule(RateRule(method="SendMessageRequest", limit=40, window=2.0))
        faults.inject_error("SendMediaRequest", "INTERNAL", 500, rate=0.05, times=6)
        faults.inject_error("GetMessagesRequest", "FLOOD_WAIT_1", 420, nth=5)
        faults.drop_on("SendMessageRequest", when="after", nth=15)
        faults.drop_on("SendMultiMediaRequest", when="after", nth=2)

        processes = {d: await start(d) for d in directories}
        kills = 0
        try:
            for _ in range(6):
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                running = [d for d, p in processes.items() if p.returncode is None]
                if not running:
                    break
                victim = rng.choice(running)
                processes[victim].send_signal(signal.SIGKILL)
                await processes[victim].wait()
                kills += 1
                processes[victim] = await start(victim)
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes.values())), 240)
        finally:
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
        assert codes == [0, 0], f"seed {seed}"
        print(f"engine crash test: seed {seed}, {kills} kills")
        assert_clone_equal(sb, "source", "target")
