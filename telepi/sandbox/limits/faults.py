"""Knobs that make the sandbox misbehave like the real Telegram: flood limits, errors, drops, slow links
(Telegram's error codes: https://core.telegram.org/api/errors).

Flood limits come two ways: :class:`RateRule` sliding windows (a test's precise knob) and the quota model of
``limits/flood.py`` (Telegram's shape; presets by name through :meth:`Faults.use_limits`).

A :class:`Faults` object is shared with the running server and may be changed at any time from a
test or benchmark; the server consults it on every request and every packet. Random choices use
``random.Random(seed)`` so runs are reproducible.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Literal

from telepi.sandbox.limits.flood import FloodModel, Limits, messages_in, preset
from telepi.sandbox.rpc.dispatch import RpcError

Per = Literal["account", "account+chat"]
RateError = Literal["FLOOD_WAIT", "SLOWMODE_WAIT", "PEER_FLOOD"]
When = Literal["before", "after"]
Direction = Literal["in", "out"]

ANY = "*"


def method_name(method: str | type) -> str:
    """``"SendMessageRequest"`` for the class or the name itself; ``"*"`` matches every request."""
    return method if isinstance(method, str) else method.__name__


def chat_key(request: object) -> tuple[str, int] | None:
    """The chat a request targets, from its ``peer`` or ``to_peer`` (InputPeerChannel/Chat/User)."""
    for attr in ("peer", "to_peer"):
        peer = getattr(request, attr, None)
        if peer is None:
            continue
        for kind in ("channel_id", "chat_id", "user_id"):
            value = getattr(peer, kind, None)
            if isinstance(value, int):
                return (kind, value)
        return ("self", 0)  # InputPeerSelf / InputPeerEmpty
    return None


@dataclass(frozen=True, kw_only=True, eq=False)  # identity: two equal rules count separately
class RateRule:
    """At most ``limit`` calls of ``method`` per ``window`` seconds, per account (and chat).

    A call over the limit is answered without being executed: ``FLOOD_WAIT_X`` or ``SLOWMODE_WAIT_X``
    (420, X = seconds until the oldest call leaves the window, rounded up, at least 1) or
    ``PEER_FLOOD`` (400). Rejected calls do not take a slot.
    """

    limit: int
    window: float
    method: str = ANY
    per: Per = "account"
    error: RateError = "FLOOD_WAIT"

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0:
            raise ValueError("a rate rule needs limit >= 1 and window > 0")


@dataclass(eq=False, kw_only=True)
class CallHook:
    """Test code run synchronously right before (or right after) the ``nth`` matching call executes, given
    the request (e.g. delete a message a forward is about to carry, or kill the client whose send just ran).
    See :meth:`Faults.before_call` and :meth:`Faults.after_call`."""

    method: str
    hook: Callable[[object], object]
    nth: int
    user_id: int | None
    when: When = "before"
    seen: int = 0


@dataclass(eq=False, kw_only=True)
class InjectedError:
    """An error answered instead of executing matching calls. See :meth:`Faults.inject_error`."""

    method: str
    message: str
    code: int
    nth: int | None
    rate: float | None
    times: int | None
    user_id: int | None
    seen: int = 0
    fired: int = 0


@dataclass(eq=False, kw_only=True)
class DropRule:
    """Close the connection around the ``nth`` matching call. See :meth:`Faults.drop_on`."""

    method: str
    when: When
    nth: int
    user_id: int | None
    seen: int = 0
    fired: bool = False


@dataclass(frozen=True, kw_only=True)
class Link:
    """A simulated network link.

    Bandwidths are bytes per second in each direction (full duplex), per TCP connection and per
    account (shared by all connections of the account). ``latency`` is the one-way delay added to
    every packet, so a request/response round trip gains ``2 * latency``.
    """

    bandwidth_per_connection: float | None = None
    bandwidth_per_account: float | None = None
    latency: float = 0.0


class TokenBucket:
    """Bytes per second with a small burst. Overdraft is allowed: the caller sleeps off its debt,
    so concurrent users of one bucket share its rate fairly and exactly, at O(1) per packet."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._burst = max(16 * 1024.0, rate / 50)
        self._tokens = self._burst
        self._stamp = now

    def reserve(self, size: int, now: float) -> float:
        """Take ``size`` bytes; return how many seconds to wait before sending them."""
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= size
        return -self._tokens / self._rate if self._tokens < 0 else 0.0


class Throttle:
    """One connection's view of the current :class:`Link` (rebuilt when the link changes)."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._link: Link | None = None
        self._buckets: dict[Direction, TokenBucket] = {}

    @property
    def latency(self) -> float:
        link = self._faults.link
        return link.latency if link is not None else 0.0

    def delay(self, size: int, direction: Direction, user_id: int | None) -> float:
        """Seconds to hold ``size`` bytes in ``direction`` so the link's bandwidths hold."""
        link = self._faults.link
        if link is None:
            return 0.0
        now = self._faults.clock()
        if link is not self._link:
            self._link = link
            self._buckets = {}
            if link.bandwidth_per_connection:
                self._buckets = {d: TokenBucket(link.bandwidth_per_connection, now) for d in ("in", "out")}
        wait = 0.0
        bucket = self._buckets.get(direction)
        if bucket is not None:
            wait = bucket.reserve(size, now)
        if user_id is not None and link.bandwidth_per_account:
            account = self._faults.account_bucket(user_id, direction, link.bandwidth_per_account, now)
            wait = max(wait, account.reserve(size, now))
        return wait


@dataclass
class _Window:
    calls: deque[float] = field(default_factory=deque)


class Faults:
    """Every fault knob of one sandbox. Safe to change while the server runs (same event loop)."""

    def __init__(self, seed: int = 0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seed = seed
        self._rng = random.Random(seed)
        self._rate_rules: list[RateRule] = []
        self._windows: dict[Hashable, _Window] = {}
        self._errors: list[InjectedError] = []
        self._hooks: list[CallHook] = []
        self._drops: list[DropRule] = []
        self._link: Link | None = None
        self._account_buckets: dict[tuple[int, Direction], TokenBucket] = {}
        # Requests seen per method name (executed or answered with an error), and those of them a rate
        # rule refused; tests and benchmarks read and clear them.
        self.calls: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        # The quota model (see flood.py) and whether an account is premium (the sandbox answers from its world).
        self.flood: FloodModel | None = None
        self.premium: Callable[[int], bool] = lambda _user_id: False
        self._limit_rules: list[RateRule] = []
        # Server DH exponents the next auth-key exchanges use, one each, then random ones again
        # (handshake.leading_zero_exponent: the exchange whose g_a, g_b or key starts with a zero byte).
        self.dh_exponents: list[int] = []

    # --- configuration (tests and benchmarks) ---

    def next_dh_exponent(self) -> int | None:
        return self.dh_exponents.pop(0) if self.dh_exponents else None

    def add_rate_rule(self, rule: RateRule) -> RateRule:
        self._rate_rules.append(rule)
        return rule

    def use_limits(self, limits: Limits | str, *, scale: float = 1.0) -> FloodModel | None:
        """Replace the flood limits with a preset (``"realistic"``, ``"sliding"``, ``"off"``; see flood.py) whose
        clock runs ``scale`` times faster; fresh quotas for every account. The quota model, if the preset has one."""
        limits = preset(limits) if isinstance(limits, str) else limits
        if scale <= 0:
            raise ValueError("the time scale must be > 0")
        for rule in self._limit_rules:
            self.remove_rate_rule(rule)
        self._limit_rules = [
            self.add_rate_rule(RateRule(method=method, limit=limit, window=window / scale))
            for method, limit, window in limits.sliding
        ]
        self.flood = FloodModel(limits, scale=scale, clock=self.clock) if limits.groups else None
        return self.flood

    def remove_rate_rule(self, rule: RateRule) -> None:
        self._rate_rules = [r for r in self._rate_rules if r is not rule]
        self._windows = {k: v for k, v in self._windows.items() if not (isinstance(k, tuple) and k[0] is rule)}

    def inject_error(
        self,
        method: str | type,
        error_message: str,
        code: int = 400,
        *,
        nth: int | None = None,
        rate: float | None = None,
        times: int | None = None,
        user_id: int | None = None,
    ) -> InjectedError:
        """Answer matching calls with ``code error_message`` instead of executing them.

        ``nth=N`` alone fails only the N-th matching call (counted from now); with ``times=K`` the
        N-th to the (N+K-1)-th. ``rate=p`` fails each matching call (from the ``nth`` on, if given)
        with probability p, at most ``times`` times. Neither: every call, at most ``times`` times.
        ``user_id`` restricts the rule to one account.
        """
        if nth is not None and nth < 1:
            raise ValueError("nth counts from 1")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate is a probability")
        if times is None and nth is not None and rate is None:
            times = 1
        rule = InjectedError(
            method=method_name(method),
            message=error_message,
            code=code,
            nth=nth,
            rate=rate,
            times=times,
            user_id=user_id,
        )
        self._errors.append(rule)
        return rule

    def before_call(
        self, method: str | type, hook: Callable[[object], object], *, nth: int = 1, user_id: int | None = None
    ) -> CallHook:
        """Run ``hook(request)`` right before the ``nth`` matching call executes (once): a test's way to change the
        world at the worst moment for the client. A hook that returns an :class:`RpcError` has it answered
        instead of executing the call: the request never took effect (a client killed before its request
        left it, say)."""
        if nth < 1:
            raise ValueError("nth counts from 1")
        rule = CallHook(method=method_name(method), hook=hook, nth=nth, user_id=user_id)
        self._hooks.append(rule)
        return rule

    def after_call(
        self, method: str | type, hook: Callable[[object], object], *, nth: int = 1, user_id: int | None = None
    ) -> CallHook:
        """Run ``hook(request)`` right after the ``nth`` matching call executed and before its answer is sent
        (once). Telegram executes a request and answers with a separate ``rpc_result`` message
        (https://core.telegram.org/mtproto/service_messages); a client that dies in between never learns
        that its message was sent, though it is there for everyone, which is why sends carry a random_id
        "to prevent message resending" (https://core.telegram.org/method/messages.sendMessage). A crash
        test kills the client here, the worst moment for exactly-once."""
        if nth < 1:
            raise ValueError("nth counts from 1")
        rule = CallHook(method=method_name(method), hook=hook, nth=nth, user_id=user_id, when="after")
        self._hooks.append(rule)
        return rule

    def drop_on(
        self, method: str | type, *, when: When = "before", nth: int = 1, user_id: int | None = None
    ) -> DropRule:
        """Abruptly close the TCP connection on the ``nth`` matching call: ``before`` executing it, or
        ``after`` executing it but before the reply is sent (a client resend then executes it twice)."""
        if nth < 1:
            raise ValueError("nth counts from 1")
        rule = DropRule(method=method_name(method), when=when, nth=nth, user_id=user_id)
        self._drops.append(rule)
        return rule

    @property
    def link(self) -> Link | None:
        return self._link

    @link.setter
    def link(self, link: Link | None) -> None:
        self._link = link
        self._account_buckets = {}

    def clear(self) -> None:
        """Remove every rule and the link; reseed the random generator."""
        self._rate_rules = []
        self._windows = {}
        self._limit_rules = []
        self.flood = None
        self._errors = []
        self._hooks = []
        self._drops = []
        self.link = None
        self._rng = random.Random(self._seed)

    # --- consulted by the server ---

    def should_drop(self, method: str, user_id: int | None, when: When) -> bool:
        for rule in self._drops:
            if rule.fired or rule.when != when or not _matches(rule.method, rule.user_id, method, user_id):
                continue
            rule.seen += 1
            if rule.seen == rule.nth:
                rule.fired = True
                return True
        return False

    def check(self, method: str, request: object, *, user_id: int | None, auth_key_id: int) -> RpcError | None:
        """The error to answer instead of executing ``request``, or ``None`` to execute it."""
        self.calls[method] += 1
        answer = self._run_hooks("before", method, request, user_id)
        if isinstance(answer, RpcError):
            return answer
        error = self._injected(method, user_id)
        if error is not None:
            return error
        account: Hashable = user_id if user_id is not None else ("key", auth_key_id)
        error = self._rate_limited(method, request, account)
        if error is None and self.flood is not None:
            error = self.flood.check(
                method,
                account,
                premium=lambda: user_id is not None and self.premium(user_id),
                messages=messages_in(request),
            )
            if error is not None:
                self.refused[method] += 1
        return error

    def executed(self, method: str, request: object, *, user_id: int | None) -> None:
        """Told by the server after ``request`` executed, before its answer goes out (see :meth:`after_call`)."""
        self._run_hooks("after", method, request, user_id)

    def _run_hooks(self, when: When, method: str, request: object, user_id: int | None) -> object:
        answer: object = None
        for rule in self._hooks:
            if rule.when == when and _matches(rule.method, rule.user_id, method, user_id):
                rule.seen += 1
                if rule.seen == rule.nth:
                    result = rule.hook(request)
                    answer = result if answer is None else answer
        return answer

    def account_bucket(self, user_id: int, direction: Direction, rate: float, now: float) -> TokenBucket:
        bucket = self._account_buckets.get((user_id, direction))
        if bucket is None:
            bucket = self._account_buckets[(user_id, direction)] = TokenBucket(rate, now)
        return bucket

    def _injected(self, method: str, user_id: int | None) -> RpcError | None:
        for rule in self._errors:
            if not _matches(rule.method, rule.user_id, method, user_id):
                continue
            rule.seen += 1
            if rule.times is not None and rule.fired >= rule.times:
                continue
            if rule.nth is not None and rule.seen < rule.nth:
                continue
            if rule.rate is not None and self._rng.random() >= rule.rate:
                continue
            rule.fired += 1
            return RpcError(rule.code, rule.message)
        return None

    def _rate_limited(self, method: str, request: object, account: Hashable) -> RpcError | None:
        now = self.clock()
        windows: list[tuple[RateRule, _Window]] = []
        worst: tuple[float, RateRule] | None = None
        for rule in self._rate_rules:
            if rule.method not in (ANY, method):
                continue
            key: Hashable = (rule, account, chat_key(request) if rule.per == "account+chat" else None)
            window = self._windows.setdefault(key, _Window())
            calls = window.calls
            while calls and calls[0] <= now - rule.window:
                calls.popleft()
            if len(calls) >= rule.limit:
                wait = calls[len(calls) - rule.limit] + rule.window - now
                if worst is None or wait > worst[0]:
                    worst = (wait, rule)
            windows.append((rule, window))
        if worst is not None:
            wait, rule = worst
            self.refused[method] += 1
            if rule.error == "PEER_FLOOD":
                return RpcError(400, "PEER_FLOOD")
            return RpcError(420, f"{rule.error}_{max(1, math.ceil(wait))}")
        for _rule, window in windows:
            window.calls.append(now)
        return None


def _matches(rule_method: str, rule_user: int | None, method: str, user_id: int | None) -> bool:
    return rule_method in (ANY, method) and (rule_user is None or rule_user == user_id)
