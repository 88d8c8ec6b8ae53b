"""Progress of one item's transfer: bytes done, total, rate and ETA, for the progress line and STATUS=."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

RATE_WINDOW = 5.0  # seconds of history behind the reported rate


@dataclass(frozen=True)
class TransferProgress:
    name: str
    done: int  # bytes uploaded and acknowledged by Telegram
    total: int
    downloaded: int  # bytes received from the source (ahead of ``done`` by at most the window)
    rate: float  # bytes per second over the last few seconds
    eta: float | None  # seconds left at that rate; None while unknown
    waiting: float  # seconds left of a flood pause, 0 when none

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[TransferProgress], None]


@dataclass
class ByteTotals:
    """Bytes one account's transfers moved since the process started (its metrics count them)."""

    down: int = 0  # received from the source
    up: int = 0  # sent to Telegram for the target


class ProgressMeter:
    """Counts bytes and calls ``callback`` at most every ``interval`` seconds, and once at the end."""

    def __init__(
        self,
        name: str,
        total: int,
        callback: ProgressCallback | None,
        *,
        interval: float,
        waiting: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
        totals: ByteTotals | None = None,
    ) -> None:
        self.name = name
        self.totals = totals
        self.total = total
        self.done = 0
        self.downloaded = 0
        self._callback = callback
        self._interval = interval
        self._waiting = waiting
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._last_report = float("-inf")

    def received(self, count: int) -> None:
        self.downloaded += count
        if self.totals is not None:
            self.totals.down += count

    def sent(self, count: int) -> None:
        self.done += count
        if self.totals is not None:
            self.totals.up += count
        now = self._clock()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and self._samples[1][0] < now - RATE_WINDOW:
            self._samples.popleft()
        if now - self._last_report >= self._interval:
            self.report()

    def rate(self) -> float:
        (then, before), (now, after) = self._samples[0], self._samples[-1]
        return (after - before) / (now - then) if now > then else 0.0

    def snapshot(self) -> TransferProgress:
        rate = self.rate()
        left = self.total - self.done
        eta = left / rate if rate > 0 else (0.0 if left <= 0 else None)
        return TransferProgress(self.name, self.done, self.total, self.downloaded, rate, eta, self._waiting())

    def report(self) -> None:
        self._last_report = self._clock()
        if self._callback is not None:
            self._callback(self.snapshot())
