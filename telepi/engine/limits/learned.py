"""Learned pacing: after a flood wait, never call a method faster than Telegram just allowed.

Telegram publishes no limits for user accounts; a FLOOD_WAIT_X is the only measurement. Its limits
behave like counters over a time window per method: when ``n`` calls went through in the ``X`` seconds
before the refusal, at most ``n`` calls per ``X`` seconds (and a margin) will go through from then on.
So the account keeps a window of its own for that method: bursts are still allowed, but the call that
would overrun the window waits for it instead of being refused (a refused call is still a request, and
an account that keeps running into its limits risks longer waits). A refusal despite the window makes it
stricter; a method without a flood wait for ten minutes (or two windows) is sent freely again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

LEARN_UP_TO_SECONDS = 300  # a longer wait is a quota for the hours to come: waited out, not learned from
WINDOW_MARGIN = 1.1  # the learned window is this much longer than the wait it was learned from
FORGET_AFTER_SECONDS = 600.0  # at least this long without a flood wait, and the method is sent freely
HISTORY_CALLS = 1024


@dataclass
class _Method:
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_CALLS))
    limit: int = 0  # calls per window; 0 while nothing is learned
    window: float = 0.0
    learned_at: float = 0.0


@dataclass(frozen=True)
class Lesson:
    limit: int
    window: float


class LearnedPace:
    """Per-method call windows learned from flood waits, on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._methods: dict[str, _Method] = {}

    def lesson(self, method: str) -> Lesson | None:
        """The window ``method`` is kept to, if one was learned and not forgotten."""
        state = self._methods.get(method)
        if state is None or not state.limit:
            return None
        if self._clock() - state.learned_at > max(FORGET_AFTER_SECONDS, 2 * state.window):
            state.limit, state.window = 0, 0.0
            return None
        return Lesson(state.limit, state.window)

    def ready_in(self, method: str) -> float:
        """Seconds until the window lets the next call of ``method`` start (0: now)."""
        state = self._methods.get(method)
        lesson = self.lesson(method)
        if state is None or lesson is None or len(state.starts) < lesson.limit:
            return 0.0
        # The call may start once the limit-th latest call has left the window.
        return max(0.0, state.starts[-lesson.limit] + lesson.window - self._clock())

    def ready_in_any(self) -> float:
        """Seconds until every method's window lets a call start (the account is fully ready)."""
        return max((self.ready_in(method) for method in self._methods), default=0.0)

    def book(self, method: str) -> float:
        """Seconds to wait before the next call of ``method``; the call is counted from then on."""
        delay = self.ready_in(method)
        self._methods.setdefault(method, _Method()).starts.append(self._clock() + delay)
        return delay

    def flood_wait(self, method: str, seconds: float) -> Lesson | None:
        """The latest booked call of ``method`` was refused with a wait of ``seconds``: it does not count,
        and the calls that went through in the ``seconds`` before become the window (None: nothing
        learned, the wait being too long or no call having gone through)."""
        state = self._methods.setdefault(method, _Method())
        if state.starts:
            state.starts.pop()  # a refused call does not take a place in Telegram's count either
        if seconds > LEARN_UP_TO_SECONDS:
            return None
        now = self._clock()
        through = sum(1 for start in state.starts if start > now - seconds)
        if not through:
            return None
        old = self.lesson(method)
        limit, window = through, seconds * WINDOW_MARGIN
        if old is not None:  # refused inside the learned window: it was too generous
            limit, window = max(1, min(limit, old.limit - 1)), max(window, old.window)
        state.limit, state.window, state.learned_at = limit, window, now
        return Lesson(limit, window)
