"""Several accounts on one route: forwarding in batches, an ordered route that keeps moving while one
account sits out a flood wait, and one that goes on when a session dies for good."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from telepi.checkpoint import NewItem, SqliteStore
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.sandbox.limits.faults import RateRule
from telepi.sandbox.sandbox import Sandbox
from telepi.sandbox.world.worldfile import generate_history
from tests.conftest import BACKENDS
from tests.engine.clonecheck import assert_clone_equal, assert_clone_per_topic, content
from tests.engine.test_clone import checkpoint, forum_world, make_sessions, run_all, wait_for
from tests.engine.test_crash import start


def channel_world(count: int, mix: dict[str, int]) -> dict[str, Any]:
    world = forum_world(0)
    source = {"name": "source", "kind": "channel", "title": "Source", "owner": "alice", "members": ["bob", "carol"]}
    source["messages"] = generate_history(source, count, seed=5, mix=mix, max_size=4096)
    target = {"name": "target", "kind": "channel", "title": "Target", "owner": "alice"}
    target["admins"] = {name: ["post_messages"] for name in ("bob", "carol")}
    world["chats"] = [source, target]
    return world


@pytest.mark.parametrize("mode", ["forward", "auto"])  # auto forwards an unprotected source
async def test_forwarding_sends_one_request_per_hundred_messages(tmp_path: Path, mode: str) -> None:
    # 300 messages after the channel's creation: the planner's pages of 200 ids hold 199 and 101 of them,
    # and a forward batch must not be cut at a page's end (100 + 99 + 100 + 1).
    async with Sandbox(world=channel_world(300, {"text": 80, "photo": 20}), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE=mode)
        sb.faults.calls.clear()
        await run_all(directories)
        assert_clone_equal(sb, "source", "target")
        assert sb.faults.calls["ForwardMessagesRequest"] == 3  # 100 + 100 + 100
        assert sb.faults.calls["GetMessagesRequest"] <= 3  # each claim's messages read in one call


@pytest.mark.parametrize("backend", BACKENDS)
async def test_ordered_route_keeps_moving_while_one_account_sits_out_a_flood_wait(
    tmp_path: Path, shared_db_env: dict[str, str]
) -> None:
    async with Sandbox(world=channel_world(80, {"text": 100}), state_dir=tmp_path / "state") as sb:
        bob, carol = await make_sessions(
            sb, tmp_path / "sessions", ["bob", "carol"], MODE="copy", LIVE="false", **shared_db_env
        )
        # bob's third text is answered with a two-minute flood wait: the route must not wait for it
        sb.faults.inject_error("SendMessageRequest", "FLOOD_WAIT_120", 420, nth=3, user_id=sb.account("bob").id)
        stores = {d: checkpoint(d) for d in (bob, carol)}
        runs = {d: asyncio.create_task(run_session(load_settings(d, {}), stores[d], asyncio.Event())) for d in stores}
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) == 80, timeout=60)
            await asyncio.wait_for(runs[carol], 30)
            states = {s.name: s.state for s in stores[carol].report().sessions}
            assert states["session1"] == "flood_wait"  # bob is still waiting: carol published the rest
            assert_clone_equal(sb, "source", "target")
        finally:
            for task in runs.values():
                task.cancel()
            await asyncio.gather(*runs.values(), return_exceptions=True)
            for store in stores.values():
                store.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_ordered_route_goes_on_when_a_session_dies_for_good(
    tmp_path: Path, shared_db_env: dict[str, str]
) -> None:
    async with Sandbox(world=forum_world(150, seed=4), state_dir=tmp_path / "state") as sb:
        sb.faults.add_rate_rule(RateRule(method="SendMessageRequest", limit=10, window=1.0))
        bob, carol = await make_sessions(
            sb, tmp_path / "sessions", ["bob", "carol"], MODE="copy", LIVE="false", LEASE_SECONDS="10", **shared_db_env
        )
        processes = {d: await start(d) for d in (bob, carol)}
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) >= 30, timeout=60)
            processes[bob].send_signal(signal.SIGKILL)  # never restarted: carol must take over its leases
            assert await processes[bob].wait() == -signal.SIGKILL
            assert await asyncio.wait_for(processes[carol].wait(), 120) == 0
        finally:
            for process in processes.values():
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        assert_clone_equal(sb, "source", "target")


async def test_stop_during_a_long_flood_wait_ends_at_once_and_loses_nothing(tmp_path: Path) -> None:
    async with Sandbox(world=channel_world(20, {"text": 100}), state_dir=tmp_path / "state") as sb:
        [bob] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy", LIVE="false")
        sb.faults.inject_error("SendMessageRequest", "FLOOD_WAIT_600", 420, nth=5)
        process = await start(bob)
        store = SqliteStore(tmp_path / "sessions" / "shared" / "checkpoint.db")
        try:
            await wait_for(lambda: any(s.state == "flood_wait" for s in store.report().sessions), timeout=60)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0  # not after the ten-minute wait
            route = store.report().routes[0]
            assert route.counts["done"] == 4 and route.counts["processing"] == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        # The refused message was never sent: whoever comes next sends it without a look-up.
        [item] = store.claim(route.route.id, "next", 1, 30)
        assert item.source_msg_id == min(m["id"] for m in content(sb.messages("source"))[4:5]) and not item.takeover
        store.close()


async def test_a_forward_batch_refused_as_protected_is_copied_message_by_message(tmp_path: Path) -> None:
    world = channel_world(150, {"text": 60, "photo": 20, "album": 20})
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        [bob] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="auto")
        # The chat turned protected after the start: the first forward batch is refused, as Telegram does.
        sb.faults.inject_error("ForwardMessagesRequest", "CHAT_FORWARDS_RESTRICTED", 400, nth=1, times=100)
        await run_all([bob])
        assert_clone_equal(sb, "source", "target")  # albums whole, in order, nothing twice
        assert sb.faults.calls["ForwardMessagesRequest"] == 1  # after the refusal, no more forwarding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sent", [False, True], ids=["died-before-sending", "died-after-sending"])
async def test_a_takeover_adopts_only_the_dead_sessions_own_copy(
    tmp_path: Path, sent: bool, shared_db_env: dict[str, str]
) -> None:
    world = channel_world(0, {"text": 100})
    world["chats"][0]["messages"] = [{"text": "same words"}, {"text": "same words"}, {"text": "last"}]
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        _bob, carol = await make_sessions(
            sb, tmp_path / "sessions", ["bob", "carol"], MODE="copy", LIVE="false", **shared_db_env
        )
        first, second, _last = (m["id"] for m in content(sb.messages("source")))
        # bob copied the first message, then marked the second as sending and died before sending it.
        client = await sb.client("bob")
        await client.get_dialogs()
        target = await client.get_input_entity(sb.chat("target").id)
        copy = await client.send_message(target, "same words")
        store = checkpoint(carol)
        route = store.route(str(sb.chat("source").id), str(sb.chat("target").id))
        store.enqueue(route.id, [NewItem(first), NewItem(second)])
        store.register_session("session1", "host", 1, user_id=sb.account("bob").id)
        store.claim(route.id, "session1", 2, 10)
        store.complete(route.id, {first: copy.id}, "session1")
        assert store.mark_sending(route.id, [second], "session1")
        if sent:
            await client.send_message(target, "same words")  # the copy of the second, never recorded
        store.close()
        # carol comes later: bob's lease has run out. A channel post names no sender: the copies look alike, but
        # the first's is recorded as the first's. Unsent, the second is sent now; sent, it is adopted, not resent.
        later = checkpoint(carol, clock=lambda: time.time() + 60)
        try:
            await run_session(load_settings(carol, {}), later, asyncio.Event())
        finally:
            later.close()
        assert_clone_equal(sb, "source", "target")


@pytest.mark.parametrize("ordered", ["true", "topic"])
async def test_paced_accounts_on_an_ordered_route_take_turns_without_a_read_per_message(
    tmp_path: Path, ordered: str
) -> None:
    # Three accounts paced to one send per 0.3 s (over the 0.25 s hand-over threshold) share one ordered route:
    # the next message goes to whichever account can send it, one at a time, from messages read ahead — not
    # one GetMessages per message (a claim each) and not every account's claims handed back after each send.
    async with Sandbox(world=forum_world(60, seed=3), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(
            sb,
            tmp_path / "sessions",
            ["bob", "carol", "dave"],
            MODE="copy",
            LIVE="false",
            ORDERED=ordered,
            SEND_INTERVAL="0.3",
        )
        sb.faults.calls.clear()
        await run_all(directories)
        if ordered == "true":
            assert_clone_equal(sb, "source", "target")
        else:
            assert_clone_per_topic(sb, "source", "target")
        copies = content(sb.messages("target"))
        shares = {name: sum(1 for m in copies if m["sender"] == name) for name in ("bob", "carol", "dave")}
        assert min(shares.values()) >= len(copies) // 6, shares  # every account sent its part
        reads = sb.faults.calls["GetMessagesRequest"]
        assert reads <= 3 * 3, f"{reads} GetMessages for {len(copies)} messages"
