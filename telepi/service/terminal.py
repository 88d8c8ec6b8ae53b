"""How ``telepi run`` shows its progress: a rich progress bar on a terminal (done/known, rate, the current
flood wait), or elsewhere (systemd's journal, a pipe) one progress line a minute in the log."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from telepi.engine.progress import Progress as RunProgress

log = logging.getLogger("telepi")

JOURNAL_EVERY_SECONDS = 60.0


class Shows(Protocol):
    def __call__(self, progress: RunProgress, finished: int, known: int) -> object: ...

    def name(self, label: str) -> None:
        """What is copying, once the chats are resolved (their titles, not the ids the .env names)."""


class JournalLine:
    """The engine's progress line (``copied 1234/5000 · 38 msg/min · flood-wait 42s on SendMessage``) logged
    once a minute, the first as soon as there is one."""

    def __init__(self, every: float = JOURNAL_EVERY_SECONDS) -> None:
        self.every = every
        self._due = 0.0

    def __call__(self, progress: RunProgress, finished: int, known: int) -> None:
        now = time.monotonic()
        if now >= self._due:
            self._due = now + self.every
            log.info("progress: %s", progress.line(finished, known), extra={"event": "progress"})

    def name(self, label: str) -> None:
        pass  # the journal's line carries the route in TELEPI_ROUTE


class TerminalBar:
    """A rich bar on stderr; log records go above it while it shows (the console handler is pointed at
    rich's stderr proxy)."""

    def __init__(self, label: str) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("[yellow]{task.fields[wait]}"),
            console=Console(stderr=True),
            redirect_stderr=True,
            transient=False,
        )
        self.task = self.bar.add_task(_plain(label), total=None, rate="", wait="")

    def name(self, label: str) -> None:
        self.bar.update(self.task, description=_plain(label))

    def __call__(self, progress: RunProgress, finished: int, known: int) -> None:
        wait = ""
        if progress.wait_method and progress.wait_until:
            left = max(0, round(progress.wait_until - time.time()))
            wait = f"flood-wait {left}s on {progress.wait_method}"
        self.bar.update(
            self.task,
            completed=finished,
            total=max(known, finished) or None,
            rate=f"{progress.per_minute():.0f} msg/min",
            wait=wait,
        )

    @contextlib.contextmanager
    def shown(self) -> Iterator[TerminalBar]:
        original = sys.stderr
        handlers = [
            h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler and h.stream is original
        ]
        with self.bar:
            for handler in handlers:
                handler.setStream(sys.stderr)  # rich's proxy now: each record printed above the bar
            try:
                yield self
            finally:
                for handler in handlers:
                    handler.setStream(original)


@contextlib.contextmanager
def progress_display(label: str, terminal: bool) -> Iterator[Shows]:
    """The bar on a terminal, else the journal's line a minute."""
    if not terminal:
        yield JournalLine()
        return
    with TerminalBar(label).shown() as bar:
        yield bar


def _plain(label: str) -> str:
    """A chat's title as written: rich markup in it is shown, not applied."""
    return label.replace("[", "\\[")
