"""Live numbers of one session's run: the terminal progress line and systemd's STATUS= both read them."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Progress:
    known: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_moved: int = 0
    wait_method: str = ""  # "SendMessage" while a flood wait on it lasts
    wait_until: float | None = None
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def copied(self, count: int = 1) -> None:
        now = time.monotonic()
        self.done += count
        self.last_activity = now
        self._recent.extend([now] * count)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def waiting(self, method: str, until: float | None) -> None:
        self.wait_method, self.wait_until = method, until
        self.touch()

    def per_minute(self) -> float:
        now = time.monotonic()
        window = [t for t in self._recent if now - t <= 60]
        if not window:
            return 0.0
        span = max(now - min(window), 1.0)
        return len(window) * 60.0 / span if span < 60 else float(len(window))

    def summary(self) -> str:
        """What this run did, for the stop line: ``copied 306, skipped 2 in 4m12s`` (the route's totals are
        the checkpoint's, in telepi status)."""
        parts = [f"copied {self.done}"]
        if self.skipped:
            parts.append(f"skipped {self.skipped}")
        if self.failed:
            parts.append(f"failed {self.failed}")
        seconds = round(time.monotonic() - self.started)
        return ", ".join(parts) + f" in this run ({seconds // 60}m{seconds % 60:02d}s)"

    def line(self, finished: int | None = None, known: int | None = None) -> str:
        """One line: ``copied 1234/5000 · 38 msg/min · flood-wait 42s on SendMedia``."""
        finished = self.done + self.skipped if finished is None else finished
        known = self.known if known is None else known
        count = f"copied {finished}/{known}" if known >= finished else f"copied {finished}"  # never "306/0"
        parts = [count, f"{self.per_minute():.0f} msg/min"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.wait_method and self.wait_until:
            parts.append(f"flood-wait {max(0, round(self.wait_until - time.time()))}s on {self.wait_method}")
        return " · ".join(parts)
