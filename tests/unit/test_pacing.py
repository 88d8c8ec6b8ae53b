"""Pacing learned from quotas (``telepi.engine.limits.budget``) on clocks the test moves by hand, and against
the sandbox's quota model itself (``telepi.sandbox.flood``) on the same clock: refused once, then never."""

from __future__ import annotations

import itertools

import pytest

from telepi.checkpoint.model import Pace
from telepi.engine.limits.budget import Budget, group_of
from telepi.sandbox.flood import FloodModel, preset


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


def test_sends_keep_send_interval_until_something_is_learned_and_other_methods_are_free() -> None:
    clock = Clock()
    budget = Budget(2.0, clock, clock)
    starts = book(budget, clock, "SendMessage", 5)
    assert [b - a for a, b in itertools.pairwise(starts)] == [2.0] * 4
    assert book(budget, clock, "SendMedia", 1) == [starts[-1] + 2.0]  # one group: media waits for the text
    assert book(budget, clock, "GetHistory", 3) == [clock.now] * 3


def test_a_refusal_becomes_the_groups_spread_over_run_up_plus_wait() -> None:
    clock = Clock()
    budget = Budget(0.0, clock, clock)
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
    budget = Budget(0.0, clock, clock)
    book(budget, clock, "SendMessage", 10)
    first = budget.refused("SendMessage", 10, "FLOOD_WAIT", "s1")
    assert first is not None and first.interval == pytest.approx(10 / 8)  # 9 through, less one
    book(budget, clock, "SendMessage", 10)
    second = budget.refused("SendMessage", 5, "FLOOD_WAIT", "s1")
    assert second is not None and second.interval > first.interval


def test_a_lesson_from_the_checkpoint_holds_and_its_wait_is_sat_out() -> None:
    clock = Clock()
    budget = Budget(0.5, clock, clock)
    budget.adopt(Pace("send", 60, 120.0, learned_at=900.0, reason="FLOOD_WAIT 60 s", session="s1", wait_until=1050.0))
    starts = book(budget, clock, "SendMultiMedia", 3)
    assert starts == [1050.0, 1052.0, 1054.0]  # the rest of the wait, then one every 2 s (not SEND_INTERVAL)


@pytest.mark.parametrize(("scale", "sends"), [(1.0, 5000), (60.0, 5000), (600.0, 2500)])
def test_against_the_realistic_quota_model_one_refusal_then_none(scale: float, sends: int) -> None:
    """An engine starting fast (SEND_INTERVAL=0) against the sends quota (20 per 10 s, 2,000 per hour): it
    is refused, learns, and is never refused again; the model's refusal counter is the judge."""
    clock = Clock(0.0)
    model = FloodModel(preset("realistic"), scale=scale, clock=clock)
    budget = Budget(0.0, clock, clock)
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
    budget = Budget(2.0, clock, clock)
    for _ in range(5000):
        clock.now += budget.book("SendMessage")
        assert model.check("SendMessageRequest", "bob", premium=lambda: False) is None
