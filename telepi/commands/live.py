"""One snapshot of the clone's progress, built once from the checkpoint's report and shown three ways:
``telepi status`` (tables), ``--json`` (its ``routes[]`` and ``sessions[]`` fields) and ``--watch``.

Rates: a watcher keeps its own samples of each route's finished count (:class:`RateWindow`) and measures
the rate over the last minutes it saw; a single snapshot uses the checkpoint's done counts of the last
5 minutes. ETA is remaining / rate, unknown (``None``, shown as "—") while the rate is 0 or unmeasured,
and starts after the flood wait every account sits out, if all do.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from telepi.checkpoint.model import Pace, RouteReport, SessionInfo, StatusReport
from telepi.commands.sessionhealth import judge
from telepi.engine.limits.budget import SEND_GROUPS, group_of
from telepi.errors import EX_CONFIG

RATE_WINDOW_SECONDS = 300.0  # as the checkpoint's own rate (done_last_5min) and the Prometheus metrics
MIN_SPAN_SECONDS = 10.0  # a watcher's samples measure a rate once they span this long

# What the engine writes while it waits (engine/limits/account.py): "600s on SendMessage (FLOOD_WAIT)";
# rows from before it named the error carry no "(…)".
_WAIT_DETAIL = re.compile(r"on (?P<method>\S+)(?: \((?P<error>[A-Z_]+)\))?")


@dataclass(frozen=True)
class RouteLine:
    id: int
    label: str
    done: int  # copied or skipped for good (filtered included)
    total: int  # planned so far
    failed: int
    filtered: int
    per_minute: float | None  # None: not measured yet
    eta_seconds: float | None  # None: unknown ("—"); 0 when nothing is left


@dataclass(frozen=True)
class AccountLine:
    session: str
    state: str  # Session health's state (sessionhealth.STATES)
    text: str  # what the state column says
    leases: int  # messages it holds leased right now
    wait_error: str | None = None  # "FLOOD_WAIT", "SLOWMODE_WAIT", "FLOOD_PREMIUM_WAIT"
    wait_method: str | None = None  # "SendMessage"
    wait_until: float | None = None  # wall clock
    wait_left: float | None = None  # seconds
    stop_reason: str | None = None  # why it stopped, as it recorded it
    exit_code: int | None = None  # the exit code of that stop, when the state says it
    paces: list[str] = field(default_factory=list)  # what its account learned (pace_line)

    def line(self) -> str:
        """``waiting on FLOOD_WAIT for SendMessage until 14:32 (12m 04s left)``, ``sending``, ``stopped (exit 0)``."""
        if self.state == "flood-wait" and self.wait_until is not None and self.wait_left is not None:
            until = time.strftime("%H:%M", time.localtime(self.wait_until))
            what = f"on {self.wait_error or 'FLOOD_WAIT'} for {self.wait_method}" if self.wait_method else ""
            return f"waiting {what} until {until} ({clock(self.wait_left)} left)".replace("  ", " ")
        if self.state == "running":
            return "sending"
        if self.stop_reason is not None or self.exit_code is not None:
            code = "" if self.exit_code is None else f"exit {self.exit_code}"
            why = ": ".join(filter(None, [code, self.stop_reason]))
            return f"{self.state} ({why})"
        return self.text


@dataclass(frozen=True)
class Snapshot:
    at: float  # wall clock of the report
    routes: list[RouteLine]
    accounts: list[AccountLine]


class RateWindow:
    """Each route's finished count as a watcher saw it, kept for ``span`` seconds: its rate per minute over
    what it saw, once the samples span ``MIN_SPAN_SECONDS``. The clock is injectable for its tests."""

    def __init__(self, span: float = RATE_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.span, self.clock = span, clock
        self._samples: dict[int, deque[tuple[float, int]]] = {}

    def add(self, route_id: int, finished: int) -> None:
        now = self.clock()
        samples = self._samples.setdefault(route_id, deque())
        samples.append((now, finished))
        while len(samples) > 2 and now - samples[1][0] >= self.span:
            samples.popleft()  # keep one sample at least ``span`` old: the window stays full

    def per_minute(self, route_id: int) -> float | None:
        samples = self._samples.get(route_id)
        if not samples or samples[-1][0] - samples[0][0] < MIN_SPAN_SECONDS:
            return None
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        return max(0, last - first) * 60.0 / (last_at - first_at)


def eta_seconds(remaining: int, per_minute: float | None) -> float | None:
    if remaining <= 0:
        return 0.0
    if not per_minute:
        return None
    return remaining * 60.0 / per_minute


def clock(seconds: float) -> str:
    """``12m 04s``, ``2h 05m``, ``45s``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def eta_text(seconds: float | None) -> str:
    """An ETA as every output shows it: ``—`` while unknown."""
    return "—" if seconds is None else clock(seconds)


def route_line(route: RouteReport, window: RateWindow | None = None, blocked_for: float = 0.0) -> RouteLine:
    """``blocked_for``: seconds before any account can send again (all of them sit out a flood wait), which
    the ETA starts after: the rate measured before the wait says nothing of the wait itself."""
    rate = window.per_minute(route.route.id) if window is not None else None
    if rate is None and route.done_last_5min:
        rate = route.done_last_5min / 5.0  # the checkpoint's own clock: done per minute over 5 minutes
    remaining = route.known - route.finished - route.counts.get("failed", 0)
    return RouteLine(
        id=route.route.id,
        label=route.route.label,
        done=route.finished,
        total=route.known,
        failed=route.counts.get("failed", 0),
        filtered=route.filtered,
        per_minute=rate,
        eta_seconds=_plus(eta_seconds(remaining, rate), blocked_for if remaining > 0 else 0.0),
    )


def _holds_sends(method: str | None) -> bool:
    """A wait on a read (GetHistory) holds no send back; one not naming its method may. The send groups are
    the limiter's own (engine/limits/budget.py), not guessed from the method's name."""
    return method is None or group_of(method) in SEND_GROUPS


def _plus(eta: float | None, blocked_for: float) -> float | None:
    return None if eta is None else eta + blocked_for


def blocked_for(accounts: list[AccountLine]) -> float:
    """Seconds until the first of the working accounts may send again, when every one of them sits out a
    flood wait (a stopped account sends nothing either way); 0 when one of them can send now."""
    working = [a for a in accounts if a.state in ("running", "flood-wait")]
    if not working or any(a.wait_left is None or not _holds_sends(a.wait_method) for a in working):
        return 0.0
    return min(a.wait_left or 0.0 for a in working)


# Methods that share one quota and one wait (engine/limits/budget.py).
GROUP_LABELS = {"send": "SendMessage/SendMedia/SendMultiMedia", "history": "GetHistory/GetMessages/GetReplies"}


def pace_line(pace: Pace) -> str:
    """``paced to 38/min on SendMessage, learned from FLOOD_WAIT 2983 s at 14:02`` (local time)."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(pace.learned_at))
    label = GROUP_LABELS.get(pace.group, pace.group)
    return f"paced to {pace.per_minute:.3g}/min on {label}, learned from {pace.reason} at {when}"


def account_line(session: SessionInfo, report: StatusReport) -> AccountLine:
    now = report.generated_at
    verdict = judge(session, now)
    leases = sum(1 for route in report.routes for lease in route.leases if lease.session == session.name)
    wait: dict[str, str | float | None] = {}
    if verdict.state == "flood-wait" and session.wait_until is not None:
        found = _WAIT_DETAIL.search(session.detail)
        wait = {
            "wait_method": found["method"] if found else None,
            "wait_error": (found["error"] if found else None) or "FLOOD_WAIT",
            "wait_until": session.wait_until,
            "wait_left": max(0.0, session.wait_until - now),
        }
    stop_reason, exit_code = None, None
    if session.needs_action:
        stop_reason, exit_code = session.detail or None, EX_CONFIG
    elif verdict.state == "stopped":
        stop_reason, exit_code = _stop(session.detail)
    return AccountLine(
        session=session.name,
        state=verdict.state,
        text=verdict.text,
        leases=leases,
        stop_reason=stop_reason,
        exit_code=exit_code,
        paces=[pace_line(pace) for pace in session.paces],
        **wait,  # type: ignore[arg-type]
    )


def _stop(detail: str) -> tuple[str | None, int | None]:
    """A clean stop's detail as the engine writes it: ``exit 75: Telegram unreachable …``; empty before."""
    found = re.match(r"exit (\d+)(?:: )?(.*)", detail or "")
    if found is None:
        return (detail or None), None
    return (found[2] or None), int(found[1])


def snapshot(report: StatusReport, window: RateWindow | None = None) -> Snapshot:
    """The one view of a report every output shows; ``window``: a watcher's own samples for the rates."""
    if window is not None:
        for route in report.routes:
            window.add(route.route.id, route.finished)
    accounts = [account_line(session, report) for session in report.sessions]
    waiting = blocked_for(accounts)
    routes = [route_line(route, window, waiting) for route in report.routes]
    return Snapshot(at=report.generated_at, routes=routes, accounts=accounts)
