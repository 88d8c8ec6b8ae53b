"""Errors a person can fix, each mapped to a process exit code."""

from __future__ import annotations

from dataclasses import dataclass

EX_CONFIG = 78  # sysexits.h: configuration error; systemd is told not to restart on it
EX_TEMPFAIL = 75  # sysexits.h: temporary failure; systemd restarts the unit after RestartSec


@dataclass(frozen=True)
class Problem:
    """One thing wrong: which key (may be empty), what is wrong, how to fix it."""

    key: str
    what: str
    fix: str

    def sentence(self) -> str:
        return f"{self.what}: {self.fix}."


class UserFixableError(Exception):
    """An error that restarting will not cure; the message tells the user what to do."""

    exit_code = EX_CONFIG


class PassingError(UserFixableError):
    """A condition that passes by itself (Telegram unreachable, a checkpoint busy for long): one sentence
    saying what and that telepi retries, exit 75 so systemd restarts the unit after a delay."""

    exit_code = EX_TEMPFAIL


class SessionStopped(UserFixableError):
    """Telegram refuses this account, or its rights in a chat, in a way only a person can fix."""


class ConfigError(UserFixableError):
    """The session configuration is invalid; lists every problem found."""

    def __init__(self, problems: list[Problem], notes: list[str] | None = None, where: str = "") -> None:
        self.problems = problems
        self.notes = notes or []
        lines = [problem.sentence() for problem in problems]
        if len(lines) > 1:
            header = f"{len(lines)} configuration problems" + (f" in {where}" if where else "") + ":"
            lines = [header] + [f"  - {line}" for line in lines]
        lines += [f"  note: {note}" for note in self.notes]
        super().__init__("\n".join(lines))


class CheckpointError(UserFixableError):
    """The shared checkpoint file cannot be used (not a database, corrupted, newer schema)."""


class NoCheckpoint(CheckpointError):
    """The checkpoint database is reachable but no session has created the checkpoint in it yet."""


class CheckpointReplaced(SessionStopped):
    """The checkpoint file was deleted or replaced under a running session (its writes would be lost)."""
