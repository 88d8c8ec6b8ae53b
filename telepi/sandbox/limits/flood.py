"""Telegram's flood limits as quotas: per account and method group, N calls per period, then a penalty.

Real Telegram publishes no limits for user accounts; what clients meet (notes/telegram.md, "Rate limits for user
accounts behave like quotas") is not a sliding window: a burst or a long run of calls goes through, then one call
is refused with ``FLOOD_WAIT_X`` (420, https://core.telegram.org/api/errors#420-flood) where X has nothing to do
with how long ago the first call was — a thousand seconds after two thousand forwards at one a second
(telegraf#1563). The model here:

- a :class:`Group` of methods shares its quotas and its penalty (a wait on ``SendMessage`` also refuses
  ``SendMedia``); each account has its own;
- a :class:`Quota` lets ``calls`` calls through per ``period`` (a fixed window that opens with its first call);
  the next call starts a penalty of ``penalty`` seconds and the quota opens afresh when the penalty ends;
- a quota ``per_message`` counts the messages a call publishes (a forward's ids, an album's items), not the call:
  the long-run limits are reported in messages sent or forwarded (tginfo/Telegram-Limits#289: "send/forward 2k
  -> 2.3k messages in a row", then ~50 min), and nobody reports 2,000 forwards of 100 in a row; a call whose
  messages do not fit in what is left is refused whole;
- a call refused during a penalty (the client did not wait) lengthens it by ``escalation`` times the penalty;
- ``peer_flood``: that many such violations within ``memory`` seconds and the group answers ``PEER_FLOOD``
  (400, the account is spam-limited) for ``duration`` seconds (aahnik/tgcf#92: running into limits again and
  again ends in PEER_FLOOD);
- a quota with ``premium_wait`` applies to non-premium accounts only and answers ``FLOOD_PREMIUM_WAIT_X``
  (https://core.telegram.org/api/files: transfer speed is throttled for non-premium accounts).

Every number is in Telegram's seconds. ``scale`` runs the model's clock that many times faster than the real
one (scale 60 plays an hour in a minute): periods and penalties pass ``scale`` times sooner, and the X a client
is told is real seconds, ``ceil(model seconds / scale)``, so a client that waits X seconds meets a model that
agrees its wait is over. X is a whole number of seconds and at least 1, as Telegram's is: at a large scale a short
penalty (30 s at scale 60) costs a client that waits what it is told more than its scaled length (1 s, not 0.5 s).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from telepi.sandbox.rpc.dispatch import RpcError

_SLACK = 1e-6
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True, kw_only=True)
class Quota:
    calls: int
    period: float
    penalty: float
    premium_wait: bool = False  # non-premium accounts only, answered FLOOD_PREMIUM_WAIT_X
    per_message: bool = False  # counts a call's messages (messages_in), not the call

    def __post_init__(self) -> None:
        if self.calls < 1 or self.period <= 0 or self.penalty <= 0:
            raise ValueError("a quota needs calls >= 1, period > 0 and penalty > 0")


@dataclass(frozen=True, kw_only=True)
class PeerFlood:
    violations: int
    memory: float
    duration: float


@dataclass(frozen=True, kw_only=True)
class Group:
    name: str
    methods: frozenset[str]
    quotas: tuple[Quota, ...]
    escalation: float = 0.0
    peer_flood: PeerFlood | None = None


@dataclass(frozen=True, kw_only=True)
class Limits:
    """A named preset: quota groups, and/or sliding windows ``(method, limit, window)`` (see ``RateRule``)."""

    name: str
    groups: tuple[Group, ...] = ()
    sliding: tuple[tuple[str, int, float], ...] = ()


def _methods(*names: str) -> frozenset[str]:
    return frozenset(f"{name}Request" for name in names)


SENDS = _methods("SendMessage", "SendMedia", "SendMultiMedia")
# A penalty's callers who keep calling: guesses (nothing published), harsh on purpose. Each call during a
# penalty adds half of it; ten such calls within an hour limit the account for a day.
_ESCALATION = 0.5
_SPAM = PeerFlood(violations=10, memory=HOUR, duration=DAY)


def _realistic() -> Limits:
    # Numbers from field reports (notes/telegram.md, "Rate limits for user accounts"); "guess" where none exists,
    # then the harsher choice.
    # 2,000-3,300 messages in a row, then 30-50 min (tginfo/Telegram-Limits#289, counted in messages sent or
    # forwarded; telegraf#1563: one a second for 2-3k, then FLOOD_WAIT_1386; tdl#1364)
    long_run = Quota(calls=2000, period=HOUR, penalty=3000, per_message=True)
    # Bursts of 20-30 requests, then tens of seconds (guess: 20, 30 s); per request, for a forward of 100 in one
    # request goes through (the API's own limit per call, notes/telegram.md) where 100 sends in a row do not.
    burst = Quota(calls=20, period=10, penalty=30)
    return Limits(
        name="realistic",
        groups=(
            Group(name="sends", methods=SENDS, quotas=(burst, long_run), escalation=_ESCALATION, peer_flood=_SPAM),
            # >~200 forward requests a minute gets accounts limited (voidbar/forwardgram#31): the burst quota
            # refuses far sooner, and ignoring it ends in PEER_FLOOD.
            Group(
                name="forwards",
                methods=_methods("ForwardMessages"),
                quotas=(burst, long_run),
                escalation=_ESCALATION,
                peer_flood=_SPAM,
            ),
            # ~3000 messages per 30 s (community observation): 30 reads of 100; the 30 s penalty is a guess.
            Group(
                name="history",
                methods=_methods("GetHistory", "GetMessages", "GetReplies"),
                quotas=(Quota(calls=30, period=30, penalty=30),),
                escalation=_ESCALATION,
            ),
            # Limited, numbers unknown (Telethon#3107 lists it among flood-limited methods): guess.
            Group(
                name="topics",
                methods=_methods("CreateForumTopic"),
                quotas=(Quota(calls=10, period=600, penalty=600),),
                escalation=_ESCALATION,
            ),
            Group(
                name="upload_media",
                methods=_methods("UploadMedia"),
                quotas=(burst,),  # guess: like sends
                escalation=_ESCALATION,
            ),
            # Non-premium transfer throttling (https://core.telegram.org/api/files, upload.getFile's
            # FLOOD_PREMIUM_WAIT_X; the app config promises premium ~10x: upload_premium_speedup_*). Guess:
            # 20 parts (10-20 MiB) per 10 s, then 5 s. No escalation: parts in flight are refused together.
            Group(
                name="uploads",
                methods=_methods("SaveFilePart", "SaveBigFilePart"),
                quotas=(Quota(calls=20, period=10, penalty=5, premium_wait=True),),
            ),
            Group(
                name="downloads",
                methods=_methods("GetFile"),
                quotas=(Quota(calls=20, period=10, penalty=5, premium_wait=True),),
            ),
            # Waits of many hours reported (Telethon#3107); the quota is a guess.
            Group(
                name="resolve",
                methods=_methods("ResolveUsername"),
                quotas=(Quota(calls=100, period=DAY, penalty=8 * HOUR),),
                escalation=_ESCALATION,
            ),
            # 849 s reported when exporting often (Telethon#3107); how often is a guess.
            Group(
                name="export_auth",
                methods=_methods("ExportAuthorization"),
                quotas=(Quota(calls=5, period=HOUR, penalty=849),),
                escalation=_ESCALATION,
            ),
            # Hours (Telethon#65); the quota is a guess.
            Group(
                name="login_codes",
                methods=_methods("SendCode"),
                quotas=(Quota(calls=5, period=HOUR, penalty=3 * HOUR),),
            ),
        ),
    )


# The sandbox's first model: a sliding window per send method, Telegram's published bot limit of 20 messages a
# minute in a group (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
SLIDING = Limits(name="sliding", sliding=tuple((m, 20, 60.0) for m in sorted(SENDS | {"ForwardMessagesRequest"})))
PRESETS: dict[str, Limits] = {"off": Limits(name="off"), "realistic": _realistic(), "sliding": SLIDING}


def messages_in(request: object) -> int:
    """How many messages ``request`` publishes: a forward's ids, an album's items, else one."""
    for name in ("id", "multi_media"):
        items = getattr(request, name, None)
        if isinstance(items, list) and items:
            return len(items)
    return 1


def preset(name: str) -> Limits:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"no flood preset {name!r} (presets: {', '.join(PRESETS)})") from None


@dataclass
class _QuotaState:
    opened: float = -math.inf
    used: int = 0


@dataclass
class _GroupState:
    quotas: list[_QuotaState]
    penalty_until: float = -math.inf
    penalty: float = 0.0
    error: str = "FLOOD_WAIT"
    violations: deque[float] = field(default_factory=deque)
    peer_flood_until: float = -math.inf


class FloodModel:
    """The quota state of every account under one :class:`Limits`; :meth:`check` before each call."""

    def __init__(self, limits: Limits, *, scale: float = 1.0, clock: Callable[[], float]) -> None:
        if scale <= 0:
            raise ValueError("the time scale must be > 0")
        self.limits = limits
        self.scale = scale
        self._clock = clock
        self._origin = clock()  # model seconds count from here: small numbers keep the scaled clock exact
        self._by_method: dict[str, Group] = {m: g for g in limits.groups for m in g.methods}
        self._state: dict[tuple[str, Hashable], _GroupState] = {}
        # Refusals by group and kind ("sends FLOOD_WAIT"), and the penalties started; tests and the demo read them.
        self.refusals: dict[str, int] = {}
        self.penalties: list[tuple[str, float]] = []

    def check(
        self, method: str, account: Hashable, *, premium: Callable[[], bool], messages: int = 1
    ) -> RpcError | None:
        """The error to answer instead of executing ``method`` for ``account``, a call that publishes
        ``messages`` messages; ``premium()`` is asked only when a premium-only quota applies."""
        group = self._by_method.get(method)
        if group is None:
            return None
        # A client that waited exactly what it was told is on time despite float rounding in the scaled clock.
        now = (self._clock() - self._origin) * self.scale + _SLACK
        state = self._state.get((group.name, account))
        if state is None:
            state = self._state[(group.name, account)] = _GroupState([_QuotaState() for _ in group.quotas])
        if now < state.peer_flood_until:
            return self._peer_flood(group)
        if now < state.penalty_until:
            return self._violation(group, state, now)
        exempt = any(q.premium_wait for q in group.quotas) and premium()
        tripped: Quota | None = None
        for quota, qs in zip(group.quotas, state.quotas, strict=True):
            if quota.premium_wait and exempt:
                continue
            if now - qs.opened >= quota.period:
                qs.opened, qs.used = now, 0
            weight = messages if quota.per_message else 1
            if qs.used + weight > quota.calls and (tripped is None or quota.penalty > tripped.penalty):
                tripped = quota
        if tripped is not None:
            state.penalty, state.penalty_until = tripped.penalty, now + tripped.penalty
            state.error = "FLOOD_PREMIUM_WAIT" if tripped.premium_wait else "FLOOD_WAIT"
            for quota, qs in zip(group.quotas, state.quotas, strict=True):
                if quota is tripped:  # the quota opens afresh once the penalty is over
                    qs.opened, qs.used = -math.inf, 0
            self.penalties.append((group.name, tripped.penalty))
            return self._wait(group, state, now)
        for quota, qs in zip(group.quotas, state.quotas, strict=True):
            if not (quota.premium_wait and exempt):
                qs.used += messages if quota.per_message else 1
        return None

    def _violation(self, group: Group, state: _GroupState, now: float) -> RpcError:
        state.penalty_until += group.escalation * state.penalty
        if group.peer_flood is not None:
            spam = group.peer_flood
            state.violations.append(now)
            while state.violations[0] <= now - spam.memory:
                state.violations.popleft()
            if len(state.violations) >= spam.violations:
                state.peer_flood_until = now + spam.duration
                state.violations.clear()
                return self._peer_flood(group)
        return self._wait(group, state, now)

    def _wait(self, group: Group, state: _GroupState, now: float) -> RpcError:
        seconds = max(1, math.ceil((state.penalty_until - now) / self.scale))
        self._count(group, state.error)
        return RpcError(420, f"{state.error}_{seconds}")

    def _peer_flood(self, group: Group) -> RpcError:
        self._count(group, "PEER_FLOOD")
        return RpcError(400, "PEER_FLOOD")

    def _count(self, group: Group, kind: str) -> None:
        self.refusals[f"{group.name} {kind}"] = self.refusals.get(f"{group.name} {kind}", 0) + 1
