"""Pacing that finds the sustainable rate: per account and method group, sends spread under the quota seen.

Telegram's limits for user accounts behave like quotas (notes/telegram.md, "Rate limits for user accounts"):
``N`` calls go through, the next is refused with ``FLOOD_WAIT_X`` where ``X`` is unrelated to how fast they
came — 30 s after a burst, ~50 minutes after 2,000 sends in a row. A refusal is the only measurement, so:

- the calls that went through since the group's last refusal (its *run-up*, ``N`` calls over ``S`` seconds)
  and the wait ``X`` become the group's lesson: from then on at most ``N - 1`` calls per ``S + X`` seconds,
  spread evenly (one every ``(S + X) / (N - 1)`` s; the call fewer is slack for clock jitter). ``S + X``
  is the quota's period where the quota is a sliding window (the wait lasts until the oldest call leaves
  it) and no shorter than it where the quota restarts after its penalty, as ``telepi/sandbox/limits/flood.py``
  models it; even spacing never bursts into a quota the account has already met;
- a lesson is kept however long the wait was and never forgotten (a quota is still there tomorrow); a
  refusal while keeping to it makes it stricter; it lives in the checkpoint per account, so a restart and
  the account's sessions on other hosts start informed;
- Telegram answers per method *group*: a wait met on ``SendMessage`` holds ``SendMedia`` and
  ``SendMultiMedia`` too (``sandbox/limits/flood.py``'s sends group, from the field reports of a wait on one send
  method refusing the others), so the budget, the wait and the lesson are the group's;
- the send groups count messages, not calls: the long-run quota is reported in messages sent or forwarded
  (tginfo/Telegram-Limits#289), so a forward of 100 or an album of 10 takes that many places in the run-up,
  and the spread between two calls is the interval per message times the earlier call's messages;
- with nothing learned, sends and forwards keep ``SEND_INTERVAL`` per message (1.9 s by default: 1,895
  messages an hour, 5% under the 2,000 a run of sends or forwards reported before a long wait; README "Rate
  limits"); history reads keep
  ``READ_INTERVAL`` (about 3,000 messages per 30 s, i.e. 30 reads of 100, before FLOOD_WAIT: Telethon#565).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from telepi.checkpoint.model import Pace

# Methods that share one quota and one wait, named after the group; any other method is its own group. Reads
# are grouped as the sandbox's model guesses (nothing published): a wait held too widely costs a little time,
# while a read refused during a penalty would lengthen it.
GROUPS = {
    "SendMessage": "send",
    "SendMedia": "send",
    "SendMultiMedia": "send",
    "GetHistory": "history",
    "GetMessages": "history",
    "GetReplies": "history",
}
# The groups that publish into the target: SEND_INTERVAL spaces them even before anything is learned.
SEND_GROUPS = frozenset({"send", "ForwardMessages"})
# With nothing learned, one history read per this many seconds (READ_INTERVAL): under the ~30 reads of 100 per
# 30 s reported before FLOOD_WAIT (Telethon#565, notes/telegram.md), 30 reads taking 31.5 s: slack for jitter.
READ_INTERVAL = 1.05
RUN_UP_CALLS = 100_000  # an hour's quota is a few thousand calls: the run-up kept is far longer


def group_of(method: str) -> str:
    return GROUPS.get(method, method)


@dataclass
class _Group:
    # (start, messages) of each call since the group's last wait
    run_up: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RUN_UP_CALLS))
    next_at: float = 0.0  # monotonic: the earliest start of the group's next call
    lesson: Pace | None = None


class Budget:
    """The account's budgets per method group, on a monotonic clock (lessons carry wall-clock times)."""

    def __init__(
        self,
        send_interval: float = 0.0,
        read_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.send_interval = send_interval
        self.read_interval = read_interval
        self._clock = clock
        self._wall = wall
        self._groups: dict[str, _Group] = {}

    def _group(self, method: str) -> _Group:
        return self._groups.setdefault(group_of(method), _Group())

    def adopt(self, pace: Pace) -> None:
        """A lesson learned before (by this account, in any session): kept from now on, and the rest of its
        wait sat out first (a call during a penalty only lengthens it)."""
        state = self._groups.setdefault(pace.group, _Group())
        state.lesson = pace
        if pace.wait_until is not None:
            state.next_at = max(state.next_at, self._clock() + pace.wait_until - self._wall())

    def lesson(self, method: str) -> Pace | None:
        return self._group(method).lesson

    def lessons(self) -> list[Pace]:
        return [g.lesson for g in self._groups.values() if g.lesson is not None]

    def interval(self, method: str) -> float:
        """Seconds per call (per message, for the send groups) of ``method``'s group: the learned spread, at
        least ``SEND_INTERVAL`` for sends; with nothing learned, the group's default."""
        group = group_of(method)
        lesson = self._group(method).lesson
        if lesson is not None:
            floor = self.send_interval if group in SEND_GROUPS else 0.0
            return max(floor, lesson.interval)
        if group in SEND_GROUPS:
            return self.send_interval
        return self.read_interval if group == "history" else 0.0

    def ready_in(self, method: str) -> float:
        """Seconds until the group's budget lets the next call of ``method`` start (0: now)."""
        return max(0.0, self._group(method).next_at - self._clock())

    def book(self, method: str, messages: int = 1) -> float:
        """Seconds to wait before the next call of ``method`` (publishing ``messages``); counted from then on."""
        state = self._group(method)
        weight = messages if group_of(method) in SEND_GROUPS else 1
        now = self._clock()
        start = max(now, state.next_at)
        state.run_up.append((start, weight))
        state.next_at = start + self.interval(method) * weight
        return start - now

    def refused(self, method: str, seconds: float, error: str, session: str) -> Pace | None:
        """The latest booked call of ``method`` was refused with a wait of ``seconds``: it did not count, and
        the run-up and the wait become the group's lesson (None: no call went through to learn from)."""
        state = self._group(method)
        if state.run_up:
            state.run_up.pop()  # a refused call does not take a place in Telegram's count either
        now = self._clock()
        state.next_at = max(state.next_at, now + seconds)  # the group's next call comes after the wait
        run_up, state.run_up = state.run_up, deque(maxlen=RUN_UP_CALLS)
        if not run_up:
            return None
        # One call (message) fewer than went through: a whole interval of slack for the jitter between this
        # clock and Telegram's (calls spread exactly N per period meet a sliding window at its edge).
        calls, period = max(1, sum(w for _, w in run_up) - 1), (now - run_up[0][0]) + seconds
        old = state.lesson
        if old is not None and period / calls <= old.interval:
            # Refused while keeping to the lesson: it was too generous; one call fewer per its period at least.
            calls, period = max(1, min(calls, old.calls - 1)), max(period, old.period)
        state.lesson = Pace(
            group=group_of(method),
            calls=calls,
            period=period,
            learned_at=self._wall(),
            reason=f"{error} {seconds:g} s",
            session=session,
            wait_until=self._wall() + seconds,
        )
        return state.lesson
