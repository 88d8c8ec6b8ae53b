"""ORDERED=topic: several accounts share an interleaved forum whose messages reply across topics; each
topic arrives in order and exactly once, replies point at the right copies, and forward batches fill up
with one topic's messages instead of being cut at every change of topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_per_topic, content
from tests.engine.test_clone import checkpoint, make_sessions, run_all
from tests.engine.test_replies import replies, replying_forum


@pytest.mark.parametrize(
    ("mode", "accounts", "backend"),
    [("auto", 3, "sqlite"), ("copy", 2, "sqlite"), ("auto", 2, "postgres")],
)
async def test_each_topic_is_in_order_exactly_once_with_its_replies(
    tmp_path: Path, mode: str, accounts: int, backend: str, shared_db_env: dict[str, str]
) -> None:
    async with Sandbox(world=replying_forum(300, seed=11), state_dir=tmp_path / "state") as sb:
        source = content(sb.messages("source"))
        topics = {m["id"]: m["topic"] for m in sb.messages("source")}
        answered = replies(source)
        assert any(topics.get(m["reply_to"]) != m["topic"] for m in answered)  # replies across topics
        assert len({m["topic"] for m in source[:12]}) >= 3  # the topics interleave
        directories = await make_sessions(
            sb,
            tmp_path / "sessions",
            ["bob", "carol", "dave"][:accounts],
            LIVE="false",
            MODE=mode,
            ORDERED="topic",
            **shared_db_env,
        )
        sb.faults.calls.clear()
        progress = await run_all(directories)
        assert_clone_per_topic(sb, "source", "target")  # judged from the target chat itself
        if mode == "copy":  # forwarding, one account's window (4 claims of 100) may hold the whole history
            assert all(p.done > 0 for p in progress), [p.done for p in progress]  # the accounts shared the work
        store = checkpoint(directories[0])
        counts = store.report().routes[0].counts
        assert counts["pending"] == counts["processing"] == counts["failed"] == 0
        forwards = sb.faults.calls["ForwardMessagesRequest"]
        print(f"\n{mode}, {accounts} accounts: {len(source)} messages, {forwards} forwardMessages calls")
