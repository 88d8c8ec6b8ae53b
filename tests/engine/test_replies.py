"""Replies kept in every mode: a forum whose messages answer each other (30%, across topics too) is
cloned forwarding and copying, and every reply in the target points at the copy of the replied message."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions, run_all

REPLY_SHARE = 0.3


def replying_forum(count: int, *, seed: int = 7) -> dict[str, Any]:
    """``forum_world`` with about 30% of the content messages (albums whole) replying to an earlier one: in the
    same topic, in another topic, to an album member, to a pin (a service message, never copied)."""
    world = forum_world(count, seed=seed)
    source = world["chats"][0]
    rng = random.Random(seed)
    earlier: list[dict[str, Any]] = []
    albums: dict[str, dict[str, Any] | None] = {}  # album -> the message its members reply to
    for message in source["messages"]:
        album = message.get("album")
        if album is not None and album in albums:
            replied = albums[album]  # every member of an album sent as a reply carries it
        else:
            replied = (
                rng.choice(earlier) if "service" not in message and earlier and rng.random() < REPLY_SHARE else None
            )
            if album is not None:
                albums[album] = replied
        if replied is not None:
            message["reply_to"] = replied["ref"]
            # A reply from General would move into the replied message's topic: keep it in a topic.
            message.setdefault("topic", replied.get("topic") or "news")
        earlier.append(message)
    return world


def replies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["reply_to"] not in (None, m["topic"])]


@pytest.mark.parametrize(
    ("mode", "ordered", "accounts"),
    [("auto", "true", 1), ("copy", "true", 1), ("auto", "false", 1), ("auto", "true", 2)],
)
async def test_every_reply_points_at_the_copy_of_the_replied_message(
    tmp_path: Path, mode: str, ordered: str, accounts: int
) -> None:
    async with Sandbox(world=replying_forum(200), state_dir=tmp_path / "state") as sb:
        source = content(sb.messages("source"))
        topics = {m["id"]: m["topic"] for m in sb.messages("source")}
        answered = replies(source)
        assert len(answered) >= 0.25 * len(source)  # the world is what the test claims
        assert any(topics.get(m["reply_to"]) != m["topic"] for m in answered)  # across topics too
        directories = await make_sessions(
            sb, tmp_path / "sessions", ["bob", "carol"][:accounts], LIVE="false", MODE=mode, ORDERED=ordered
        )
        sb.faults.calls.clear()
        await run_all(directories)
        # From the target chat itself: every copy replies to the copy of what its original replied to
        # (assert_clone_equal compares each reply by position; a reply to a pin has none in the target).
        assert_clone_equal(sb, "source", "target")
        target = content(sb.messages("target"))
        kept = replies(target)
        lost = sum(1 for m in answered if m["reply_to"] in {s["id"] for s in source}) - len(kept)
        assert lost == 0
        forwards = sb.faults.calls["ForwardMessagesRequest"]
        if mode == "auto":  # unprotected: forwarded, a call per reply (or run of replies to one message)
            assert all(m["fwd"] is None for m in target)
            print(f"\n{mode}: {len(source)} messages, {len(answered)} replies, {forwards} forwardMessages calls")
        else:
            assert forwards == 0


@pytest.mark.parametrize("mode", ["forward", "copy"])
async def test_a_reply_whose_copy_was_deleted_in_the_target_goes_without_the_reply(tmp_path: Path, mode: str) -> None:
    async with Sandbox(world=replying_forum(20), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE=mode)
        await run_all(directories)
        first = content(sb.messages("source"))[0]
        copy = content(sb.messages("target"))[0]
        await sb.delete("target", copy["id"])  # someone deletes a copy in the target
        topic = first["topic"] if first["topic"] not in (None, 1) else None
        await sb.post(
            "source", "an answer to a copy that is gone", as_account="alice", topic=topic, reply_to=first["id"]
        )
        sb.faults.calls.clear()
        await run_all(directories)  # Telegram refuses the reply (REPLY_MESSAGE_ID_INVALID): send it plain
        [answer] = [m for m in sb.messages("target") if m["text"] == "an answer to a copy that is gone"]
        assert answer["reply_to"] in (None, answer["topic"])
        if mode == "forward":  # (the sandbox's sendMessage still drops a missing reply silently)
            assert sb.faults.calls["ForwardMessagesRequest"] == 2  # refused once, then sent without the reply
