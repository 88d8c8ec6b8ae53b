"""Ping the systemd watchdog only while the process is genuinely healthy.

systemd (``WatchdogSec=``) kills and restarts a service that stops pinging. The pings come from a task on
the asyncio event loop, so a blocked loop simply fails to ping. Before each ping :meth:`HealthMonitor.check`
also asks:

- is Telegram connected, or has it been reconnecting for less than ``reconnect_grace`` seconds?
- has every open :class:`Beacon` (one per engine task) shown progress within its ``stall_after``?
  A declared wait (a FloodWait of N seconds, or idling for new messages) is progress, until it overruns.
- has no watched task died with an exception?

Engine side::

    monitor = HealthMonitor(notifier(), connected=client.is_connected)
    beacon = monitor.beacon("worker", stall_after=300)
    monitor.watch(asyncio.create_task(worker(beacon)))
    asyncio.create_task(monitor.run())
    ...
    beacon.touch()                                          # after each message
    with beacon.waiting(err.seconds, "flood_wait"):         # a long FloodWait is healthy
        await asyncio.sleep(err.seconds)
    with beacon.waiting(None, "idle"):                      # live mode: nothing to do is healthy
        await new_messages.wait()
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from telepi.engine.health import Beacon
from telepi.service.notify import Notifier

log = logging.getLogger(__name__)


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings: half of ``WATCHDOG_USEC`` (as sd_watchdog_enabled(3) advises), or None when
    the watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


@dataclass(frozen=True)
class Health:
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


class HealthMonitor:
    """Decides whether the process is healthy and pings the systemd watchdog only then; the engine reports
    to it through :class:`telepi.engine.health.HealthReport`."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        interval: float | None = None,
        connected: Callable[[], bool] | None = None,
        reconnect_grace: float = 300.0,
        lag_warning: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.interval = watchdog_interval() if interval is None else interval
        self.reconnect_grace = reconnect_grace
        self.lag_warning = lag_warning
        self.worst_lag = 0.0  # seconds the loop was late since the last ping; for status lines
        self._connected = connected
        self._down_since: float | None = None
        self._clock = clock
        self._beacons: list[Beacon] = []
        self._tasks: list[asyncio.Task[Any]] = []

    def watch_connection(self, connected: Callable[[], bool]) -> None:
        """Judge the Telegram connection from now on (the client exists only after start-up)."""
        self._connected = connected

    def beacon(self, name: str, stall_after: float) -> Beacon:
        beacon = Beacon(name, stall_after, self._clock)
        self._beacons.append(beacon)
        return beacon

    def watch(self, task: asyncio.Task[Any]) -> None:
        """A task that must not die: ending with an exception makes the process unhealthy for good."""
        self._tasks.append(task)

    def check(self) -> Health:
        now = self._clock()
        problems = [p for p in (self._connection_problem(now), *self._task_problems()) if p]
        problems += [p for beacon in self._beacons if (p := beacon.problem(now))]
        return Health(tuple(problems))

    def _connection_problem(self, now: float) -> str | None:
        if self._connected is None:
            return None
        try:
            up = self._connected()
        except Exception as exc:  # the engine's callable failing is itself a health problem
            return f"connection check failed: {type(exc).__name__}: {exc}"
        if up:
            self._down_since = None
            return None
        if self._down_since is None:
            self._down_since = now
        down = now - self._down_since
        if down > self.reconnect_grace:
            return f"Telegram disconnected for {down:.0f} s (limit {self.reconnect_grace:g} s)"
        return None

    def _task_problems(self) -> list[str]:
        problems = []
        for task in list(self._tasks):
            if not task.done():
                continue
            if task.cancelled() or task.exception() is None:
                self._tasks.remove(task)  # cancelled at shutdown or returned: nothing to watch
                continue
            exc = task.exception()
            problems.append(f"task {task.get_name()} died: {type(exc).__name__}: {exc}")
        return problems

    async def run(self) -> None:
        """Ping every ``interval`` seconds while healthy; returns at once when there is no watchdog."""
        if self.interval is None or not self.notifier.enabled:
            return
        loop = asyncio.get_running_loop()
        # Wake often enough to measure loop lag and to ping soon after recovering.
        probe = min(1.0, self.interval / 4)
        unhealthy = False
        next_ping = loop.time()
        while True:
            if loop.time() >= next_ping:
                health = self.check()
                if health.ok:
                    self.notifier.watchdog()
                    self.worst_lag = 0.0
                    next_ping = loop.time() + self.interval
                    if unhealthy:
                        log.info("healthy again; watchdog pings resumed", extra={"event": "healthy"})
                elif not unhealthy:  # once per episode: systemd acts within WatchdogSec anyway
                    log.warning(
                        "unhealthy, not pinging the watchdog: %s",
                        "; ".join(health.problems),
                        extra={"event": "unhealthy"},
                    )
                unhealthy = not health.ok
            before = loop.time()
            await asyncio.sleep(probe)
            lag = loop.time() - before - probe
            self.worst_lag = max(self.worst_lag, lag)
            if lag > self.lag_warning:
                log.warning("event loop was blocked for %.1f s", lag, extra={"event": "loop_lag"})
