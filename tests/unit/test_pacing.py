"""Learned pacing (``telepi.engine.limits.learned``) on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from telepi.engine.limits.learned import FORGET_AFTER_SECONDS, LEARN_UP_TO_SECONDS, LearnedPace, Lesson


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def calls(pace: LearnedPace, clock: Clock, method: str, count: int, spacing: float) -> list[float]:
    """Book ``count`` calls ``spacing`` apart, each started when the pace allows; their start times."""
    starts = []
    for _ in range(count):
        clock.now += pace.book(method)
        starts.append(clock.now)
        clock.now += spacing
    return starts


def test_nothing_is_paced_before_a_flood_wait() -> None:
    clock = Clock()
    pace = LearnedPace(clock)
    assert calls(pace, clock, "SendMessage", 50, 0.0) == [1000.0] * 50
    assert pace.lesson("SendMessage") is None


def test_a_flood_wait_teaches_the_calls_that_went_through_per_window() -> None:
    clock = Clock()
    pace = LearnedPace(clock)
    calls(pace, clock, "SendMessage", 16, 0.03)  # the 16th is refused
    assert pace.flood_wait("SendMessage", 1) == Lesson(limit=15, window=pytest.approx(1.1))
    clock.now += 2  # the earlier calls have left the window
    starts = calls(pace, clock, "SendMessage", 45, 0.0)
    # Bursts of 15 are still allowed; the 16th call waits until the first has left the window.
    for i in range(15, 45):
        assert starts[i] - starts[i - 15] >= 1.1 - 1e-9
    assert starts[14] == starts[0]
    assert pace.lesson("ForwardMessages") is None  # per method
    assert pace.ready_in("SendMessage") == pytest.approx(starts[30] + 1.1 - clock.now)  # the window is full
    assert pace.ready_in("ForwardMessages") == 0.0
    assert pace.ready_in_any() == pace.ready_in("SendMessage")


def test_the_refused_call_takes_no_place_in_the_window() -> None:
    clock = Clock()
    pace = LearnedPace(clock)
    calls(pace, clock, "SendMessage", 5, 0.1)
    assert pace.flood_wait("SendMessage", 2) == Lesson(limit=4, window=pytest.approx(2.2))


def test_a_refusal_inside_the_learned_window_makes_it_stricter() -> None:
    clock = Clock()
    pace = LearnedPace(clock)
    calls(pace, clock, "SendMessage", 11, 0.01)
    assert pace.flood_wait("SendMessage", 1) == Lesson(limit=10, window=pytest.approx(1.1))
    clock.now += 1
    calls(pace, clock, "SendMessage", 10, 0.01)
    assert pace.flood_wait("SendMessage", 3) == Lesson(limit=9, window=pytest.approx(3.3))


def test_long_waits_and_waits_with_nothing_through_teach_nothing() -> None:
    clock = Clock()
    pace = LearnedPace(clock)
    calls(pace, clock, "SendMessage", 20, 0.01)
    assert pace.flood_wait("SendMessage", LEARN_UP_TO_SECONDS + 1) is None
    clock.now += 10
    calls(pace, clock, "SendMedia", 1, 0.0)
    assert pace.flood_wait("SendMedia", 5) is None  # the only call was the refused one
    assert pace.lesson("SendMessage") is None and pace.lesson("SendMedia") is None


def test_a_quiet_method_is_sent_freely_again() -> None:
    clock = Clock()
    pace = LearnedPace(clock)
    calls(pace, clock, "SendMessage", 4, 0.01)
    assert pace.flood_wait("SendMessage", 1) is not None
    clock.now += FORGET_AFTER_SECONDS + 1
    assert pace.lesson("SendMessage") is None
    assert calls(pace, clock, "SendMessage", 10, 0.0) == [clock.now] * 10
