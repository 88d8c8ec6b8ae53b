"""Learned pacing end to end: the real engine against the sandbox's ``realistic`` quota model (time-scaled).

Refused once, the account learns; what it learned is in the checkpoint, so the account's next session — a
restart, or its session on another host — starts informed and is never refused by the same quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_equal
from tests.engine.test_clone import forum_world, make_sessions, run_all
from tests.engine.test_content import world as content_world

MiB = 1024 * 1024

# 20 sends per 10 s of Telegram's time are 20 per 1 s here: a fast start (SEND_INTERVAL=0) meets the quota.
SCALE = 10


def sends_refused(sb: Sandbox) -> int:
    assert sb.faults.flood is not None
    return sum(n for kind, n in sb.faults.flood.refusals.items() if kind.startswith("sends "))


async def test_a_lesson_is_kept_for_the_account_and_its_next_session_is_never_refused(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(60), state_dir=tmp_path / "state") as sb:
        sb.faults.use_limits("realistic", scale=SCALE)
        first, second = await make_sessions(sb, tmp_path / "sessions", ["bob", "bob"], LIVE="false", MODE="copy")
        await run_all([first])
        assert sends_refused(sb) == 1, sb.faults.flood.refusals if sb.faults.flood else None  # the one it learns from
        assert sb.faults.flood is not None and len(sb.faults.flood.penalties) == 1  # no refusal lengthened it
        store = SqliteStore(load_settings(first, {}).shared_db_path)
        [pace] = store.paces(sb.account("bob").id)
        assert pace.group == "send" and pace.reason.startswith("FLOOD_WAIT ") and pace.session == "session1"
        assert pace.interval > 1 / 20  # slower than the burst quota's 20 per 1 s
        store.close()

        for i in range(80):  # more to copy, for the account's other session (another host, a restart)
            await sb.post("source", f"later {i}")
        await run_all([second])
        assert sends_refused(sb) == 1, sb.faults.flood.refusals  # none after the restart
        assert sb.faults.flood.refusals.get("sends PEER_FLOOD", 0) == 0
        assert_clone_equal(sb, "source", "target")


@pytest.mark.parametrize("premium", [False, True])
async def test_transfers_of_a_non_premium_account_wait_out_flood_premium_wait(tmp_path: Path, premium: bool) -> None:
    # Telegram slows the transfers of non-premium accounts with FLOOD_PREMIUM_WAIT_X (the bandwidth rule of
    # flood.py: 20 parts per 10 s of Telegram's time); a protected source makes every file travel both ways.
    messages = [{"text": "big", "media": {"kind": "document", "size": 24 * MiB, "seed": "big"}}]
    async with Sandbox(world=content_world(messages, noforwards=True, bob_premium=premium)) as sb:
        sb.faults.use_limits("realistic", scale=SCALE)
        await run_all(await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="auto"))
        assert_clone_equal(sb, "source", "target")  # the file byte-identical, nothing skipped
        assert sb.faults.flood is not None
        throttled = {k: n for k, n in sb.faults.flood.refusals.items() if k.endswith("FLOOD_PREMIUM_WAIT")}
        if premium:
            assert throttled == {}
        else:  # 48 upload parts of 512 KiB against 20 per period: slowed, and waited out (the downloads feeding
            # them, fewer and paced by the uploads, may or may not meet the rule)
            assert throttled.get("uploads FLOOD_PREMIUM_WAIT", 0) >= 1, sb.faults.flood.refusals
