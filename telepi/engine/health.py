"""How the engine reports its own health; the service layer (``telepi.service.watchdog``) judges it.

The engine only stamps progress and names what must stay alive: a :class:`Beacon` per long-running
task (touched on progress, or inside a declared wait), the tasks that must not die, and how to tell
whether Telegram is connected. Whoever implements :class:`HealthReport` decides what is healthy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Beacon:
    """Progress stamp of one engine task: touched on progress, or inside a declared wait."""

    def __init__(self, name: str, stall_after: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.stall_after = stall_after
        self._clock = clock
        self.last_progress = clock()
        self.closed = False
        self._wait: tuple[str, float | None] | None = None  # (reason, deadline or None for open-ended)

    def touch(self) -> None:
        self.last_progress = self._clock()

    @contextmanager
    def waiting(self, seconds: float | None, reason: str) -> Iterator[None]:
        """A deliberate wait: healthy for ``seconds`` (+ ``stall_after`` of slack), or indefinitely when None."""
        deadline = None if seconds is None else self._clock() + seconds
        self._wait = (reason, deadline)
        try:
            yield
        finally:
            self._wait = None
            self.touch()

    def close(self) -> None:
        """The task finished its work on purpose (e.g. the history is copied); stop checking it."""
        self.closed = True

    def problem(self, now: float) -> str | None:
        if self.closed:
            return None
        if self._wait is not None:
            reason, deadline = self._wait
            if deadline is None or now <= deadline + self.stall_after:
                return None
            return f"{self.name}: {reason} overran its end by {now - deadline:.0f} s"
        idle = now - self.last_progress
        if idle > self.stall_after:
            return f"{self.name}: no progress for {idle:.0f} s (limit {self.stall_after:g} s)"
        return None


class Link:
    """Whether Telegram is reachable, and since when it is not (wall clock, for the checkpoint): every call
    samples ``up`` and keeps the moment an outage began until the link is back."""

    def __init__(self, up: Callable[[], bool], clock: Callable[[], float] = time.time) -> None:
        self._up = up
        self._clock = clock
        self.down_since: float | None = None

    def __call__(self) -> bool:
        up = self._up()
        if up:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = self._clock()
        return up


class HealthReport(Protocol):
    """What a run tells whoever watches it (systemd's watchdog under ``telepi run``)."""

    def watch_connection(self, connected: Callable[[], bool]) -> None:
        """Judge the Telegram connection from now on (the client exists only after start-up)."""

    def beacon(self, name: str, stall_after: float) -> Beacon:
        """A progress stamp for one task, stalled after ``stall_after`` seconds without progress."""
        ...

    def watch(self, task: asyncio.Task[Any]) -> None:
        """A task that must not die: ending with an exception makes the process unhealthy for good."""
