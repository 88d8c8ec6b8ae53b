"""ORDERED=topic with two accounts that hand their work to each other: an account paced slower than the
hand-over threshold gives its unsent leases away after every send, so the claims queued in its topic
lanes are soon no longer its own. Such a unit must be dropped, not sent into the lease guard, whose
refusal handed over the account's other leases as well: the two accounts kept taking each other's work
away and the route stood still (found by ``python -m bench.topics``, 2 accounts per topic)."""

from __future__ import annotations

import time
from pathlib import Path

from telepi.checkpoint.model import Pace
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_per_topic, content
from tests.engine.test_clone import checkpoint, forum_world, make_sessions, run_all


async def test_two_accounts_handing_over_per_topic_finish(tmp_path: Path, shared_db_env: dict[str, str]) -> None:
    async with Sandbox(world=forum_world(80, seed=7), state_dir=tmp_path / "state") as sb:
        source = content(sb.messages("source"))
        assert len({m["topic"] for m in source[:20]}) >= 3  # the topics interleave
        directories = await make_sessions(
            sb,
            tmp_path / "sessions",
            ["bob", "carol"],
            LIVE="false",
            MODE="copy",
            ORDERED="topic",
            **shared_db_env,
        )
        # What the bench's accounts had learned from the realistic flood model (5x) when they stalled,
        # kept in the checkpoint as a session keeps it: sends 0.32 s apart (over the 0.25 s hand-over
        # threshold, so each account hands its work over after every send), reads 0.45 s apart.
        store = checkpoint(directories[0])
        try:
            for account in ("bob", "carol"):
                for group, calls, period in (("send", 19, 6.1), ("history", 37, 16.8)):
                    pace = Pace(group, calls, period, time.time(), "FLOOD_WAIT 6 s", "earlier")
                    store.save_pace(sb.account(account).id, pace)
        finally:
            store.close()
        # 80 messages took 27 s here (both backends); stalled, nothing moves again and the deadline fails it.
        progress = await run_all(directories, timeout=75)
        assert_clone_per_topic(sb, "source", "target")  # judged from the target chat itself
        assert sum(p.done for p in progress) == len(content(sb.messages("target")))
        store = checkpoint(directories[0])
        try:
            counts = store.report().routes[0].counts
        finally:
            store.close()
        assert counts["pending"] == counts["processing"] == counts["failed"] == 0
