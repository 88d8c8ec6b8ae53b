"""Pacing learned from quotas (``telepi.engine.limits.budget``) on clocks the test moves by hand, and against
the sandbox's quota model itself (``telepi.sandbox.limits.flood``) on the same clock: refused once, then never."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from telethon import errors

from telepi.checkpoint import SqliteStore
from telepi.checkpoint.model import Pace
from telepi.engine.limits.account import AccountLimiter
from telepi.engine.limits.budget import READ_INTERVAL, Budget, group_of
from telepi.engine.progress import Progress
from telepi.sandbox.limits.flood import FloodModel, preset


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def book(budget: Budget, clock: Clock, method: str, count: int) -> list[float]:
    """Book ``count`` calls, each started as soon as the budget allows; their start times."""
    starts = []
    for _ in range(count):
        clock.now += budget.book(method)
        starts.append(clock.now)
    return starts


def test_sends_keep_send_interval_until_something_is_learned_and_reads_their_default() -> None:
    clock = Clock()
    budget = Budget(2.0, READ_INTERVAL, clock=clock, wall=clock)
    starts = book(budget, clock, "SendMessage", 5)
    assert [b - a for a, b in itertools.pairwise(starts)] == [2.0] * 4
    assert book(budget, clock, "SendMedia", 1) == [starts[-1] + 2.0]  # one group: media waits for the text
    reads = book(budget, clock, "GetHistory", 3)  # not held by the sends; ~30 per 30 s (Telethon#565)
    assert reads == pytest.approx([1010.0, 1010.0 + READ_INTERVAL, 1010.0 + 2 * READ_INTERVAL])
    assert book(budget, clock, "GetFile", 3) == [clock.now] * 3  # a group with no default is free


def test_a_forward_or_an_album_takes_a_place_per_message() -> None:
    # The long-run quota counts messages sent or forwarded (tginfo/Telegram-Limits#289), not requests.
    clock = Clock()
    budget = Budget(2.0, clock=clock, wall=clock)
    clock.now += budget.book("ForwardMessages", 100)
    assert budget.ready_in("ForwardMessages") == pytest.approx(200.0)  # SEND_INTERVAL per message
    clock.now += budget.book("SendMultiMedia", 10)
    assert budget.ready_in("SendMessage") == pytest.approx(20.0)
    clock.now += budget.book("ForwardMessages", 100)
    pace = budget.refused("ForwardMessages", 30, "FLOOD_WAIT", "s1")  # the second forward was refused
    assert pace is not None and (pace.calls, pace.period) == (99, pytest.approx(200.0 + 30))


def test_a_refusal_becomes_the_groups_spread_over_run_up_plus_wait() -> None:
    clock = Clock()
    budget = Budget(0.0, clock=clock, wall=clock)
    book(budget, clock, "SendMessage", 20)  # 20 calls at once, the 21st refused with a 30 s wait
    clock.now += 0.5
    book(budget, clock, "SendMedia", 1)
    pace = budget.refused("SendMedia", 30, "FLOOD_WAIT", "s1")
    assert pace is not None and group_of("SendMedia") == pace.group == "send"
    assert (pace.calls, pace.period) == (19, pytest.approx(30.5))  # one call fewer than went through: slack
    assert pace.reason == "FLOOD_WAIT 30 s" and pace.wait_until == pytest.approx(clock.now + 30)
    # The group's next call waits out the wait, then calls are spread 30.5/19 s apart; SendMessage too.
    starts = book(budget, clock, "SendMessage", 3)
    assert starts[0] == pytest.approx(1000.5 + 30)
    assert starts[2] - starts[1] == pytest.approx(30.5 / 19)
    assert budget.ready_in("ForwardMessages") == 0  # another group entirely


def test_a_refusal_while_keeping_to_the_lesson_makes_it_stricter() -> None:
    clock = Clock()
    budget = Budget(0.0, clock=clock, wall=clock)
    book(budget, clock, "SendMessage", 10)
    first = budget.refused("SendMessage", 10, "FLOOD_WAIT", "s1")
    assert first is not None and first.interval == pytest.approx(10 / 8)  # 9 through, less one
    book(budget, clock, "SendMessage", 10)
    second = budget.refused("SendMessage", 5, "FLOOD_WAIT", "s1")
    assert second is not None and second.interval > first.interval


def test_a_lesson_from_the_checkpoint_holds_and_its_wait_is_sat_out() -> None:
    clock = Clock()
    budget = Budget(0.5, clock=clock, wall=clock)
    budget.adopt(Pace("send", 60, 120.0, learned_at=900.0, reason="FLOOD_WAIT 60 s", session="s1", wait_until=1050.0))
    starts = book(budget, clock, "SendMultiMedia", 3)
    assert starts == [1050.0, 1052.0, 1054.0]  # the rest of the wait, then one every 2 s (not SEND_INTERVAL)


@pytest.mark.parametrize(("scale", "sends"), [(1.0, 5000), (60.0, 5000), (600.0, 2500)])
def test_against_the_realistic_quota_model_one_refusal_then_none(scale: float, sends: int) -> None:
    """An engine starting fast (SEND_INTERVAL=0) against the sends quota (20 per 10 s, 2,000 per hour): it
    is refused, learns, and is never refused again; the model's refusal counter is the judge."""
    clock = Clock(0.0)
    model = FloodModel(preset("realistic"), scale=scale, clock=clock)
    budget = Budget(0.0, clock=clock, wall=clock)
    refusals = 0
    sent = 0
    while sent < sends:
        clock.now += budget.book("SendMessage") + 0.01  # the call itself takes 10 ms
        error = model.check("SendMessageRequest", "bob", premium=lambda: False)
        if error is None:
            sent += 1
            continue
        refusals += 1
        seconds = int(error.message.rsplit("_", 1)[1])
        assert budget.refused("SendMessage", seconds, "FLOOD_WAIT", "s1") is not None
    assert "sends PEER_FLOOD" not in model.refusals
    # At most one refusal per quota the group has (a burst and an hour): each teaches once.
    assert refusals <= 2, model.refusals
    assert len(model.penalties) == refusals  # every refusal started a penalty: none lengthened one


def test_the_default_interval_is_never_refused_by_the_realistic_model() -> None:
    clock = Clock(0.0)
    model = FloodModel(preset("realistic"), scale=1.0, clock=clock)
    budget = Budget(2.0, clock=clock, wall=clock)
    for _ in range(5000):
        clock.now += budget.book("SendMessage")
        assert model.check("SendMessageRequest", "bob", premium=lambda: False) is None


def test_forwards_of_100_against_the_realistic_model_are_refused_at_most_once_per_quota() -> None:
    """A fast start (SEND_INTERVAL=0) forwarding 100 at a time: the burst quota counts requests, the long run
    messages; each teaches once and the account goes on unrefused."""
    clock = Clock(0.0)
    model = FloodModel(preset("realistic"), scale=1.0, clock=clock)
    budget = Budget(0.0, clock=clock, wall=clock)
    refusals = forwarded = 0
    while forwarded < 10_000:
        clock.now += budget.book("ForwardMessages", 100) + 0.05
        error = model.check("ForwardMessagesRequest", "bob", premium=lambda: False, messages=100)
        if error is None:
            forwarded += 100
            continue
        refusals += 1
        assert budget.refused("ForwardMessages", int(error.message.rsplit("_", 1)[1]), "FLOOD_WAIT", "s1")
    assert refusals <= 2 and len(model.penalties) == refusals, model.refusals


async def test_one_call_in_flight_per_group_so_none_is_refused_into_a_penalty(tmp_path: Path) -> None:
    """Four tasks sending at once through one account's limiter, against the real quota model (sends 20 per
    10 s, 60 times faster): the first refusal teaches, and no call is in flight to be refused during its
    penalty (one would lengthen it). Reads, with nothing learned, keep their default and are never refused."""
    store = SqliteStore(tmp_path / "checkpoint.db")
    limiter = AccountLimiter(store, "s1", Progress(), read_interval=READ_INTERVAL / 60)  # as played 60x faster
    model = FloodModel(preset("realistic"), scale=60, clock=time.monotonic)
    in_flight: dict[str, int] = {"SendMessageRequest": 0, "GetHistoryRequest": 0}
    most = dict(in_flight)

    def request(method: str) -> Callable[[], Awaitable[None]]:
        async def make() -> None:
            in_flight[method] += 1
            most[method] = max(most[method], in_flight[method])
            try:
                await asyncio.sleep(0.003)  # the round trip: calls of several tasks overlap without the rule
                error = model.check(method, "bob", premium=lambda: False)
                if error is not None:
                    raise errors.FloodWaitError(None, capture=int(error.message.rsplit("_", 1)[1]))
            finally:
                in_flight[method] -= 1

        return make

    async def task(method: str, calls: int) -> None:
        for _ in range(calls):
            await limiter.call(method.removesuffix("Request"), request(method))

    try:
        await asyncio.gather(*(task("SendMessageRequest", 15) for _ in range(4)), task("GetHistoryRequest", 35))
    finally:
        store.close()
    assert model.refusals == {"sends FLOOD_WAIT": 1}  # reads: 35 in their default spread, none refused
    assert len(model.penalties) == 1  # none lengthened
    assert most == {"SendMessageRequest": 1, "GetHistoryRequest": 1}
