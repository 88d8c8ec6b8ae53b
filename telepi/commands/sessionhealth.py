"""What a session is doing, judged from the facts in the checkpoint rather than the last state it wrote.

A process that dies (SIGKILL, a power cut, a frozen VM) writes nothing on the way out: its row still says
``running`` or ``flood_wait``. So the state a session wrote counts only while its heartbeat is fresh; the
heartbeat carries its own interval and, while Telegram is unreachable, when the outage began.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from telepi.checkpoint.model import SessionInfo

STALL_BEATS = 3  # heartbeats missed in a row: the process is hung, stopped or gone
LEGACY_STALE_SECONDS = 180.0  # a row from before schema 6 carries no interval
# Every state `telepi status` and its metrics can show, the ones a person must end last.
STATES = (
    "running",
    "reconnecting",
    "flood-wait",
    "stalled",
    "dead",
    "stopped",
    "error",
    "revoked",
    "banned",
    "frozen",
    "limited",
    "blocked",
)


@dataclass(frozen=True)
class Verdict:
    state: str  # one of STATES
    text: str  # what the table shows
    since: float | None = None  # reconnecting: when Telegram became unreachable (wall clock)


def judge(
    session: SessionInfo,
    now: float,
    *,
    host: str | None = None,
    alive: Callable[[int], bool] | None = None,
) -> Verdict:
    """The session's state: a stop a person must end, a clean stop, a dead or silent process, then what
    its fresh heartbeat says (reconnecting, a flood wait that has not ended yet) or running."""
    if session.needs_action:  # the session stopped on it: this, not "dead", is what to act on
        return Verdict(session.state, f"{session.state.upper()}: {session.detail or 'see the session log'}")
    if session.state == "stopped":
        return Verdict("stopped", "stopped")
    if session.host == (host or socket.gethostname()) and not (alive or pid_alive)(session.pid):
        return Verdict("dead", "dead (process gone; its leases expire and are taken over)")
    silent = now - session.last_seen
    limit = STALL_BEATS * session.heartbeat_every if session.heartbeat_every else LEGACY_STALE_SECONDS
    if silent > limit:
        return Verdict(
            "stalled", f"stalled (no heartbeat for {ago(silent)}, expected every {ago(limit / STALL_BEATS)})"
        )
    if session.link_down_since is not None:
        at = datetime.fromtimestamp(session.link_down_since).strftime("%Y-%m-%d %H:%M:%S")
        return Verdict(
            "reconnecting",
            f"reconnecting since {at} ({ago(now - session.link_down_since)}): Telegram unreachable",
            session.link_down_since,
        )
    if session.wait_until is not None and session.wait_until > now:
        method = session.detail[session.detail.find("on ") :] if "on " in session.detail else session.detail
        return Verdict("flood-wait", f"flood-wait {round(session.wait_until - now)}s {method}".strip())
    return Verdict("running", "running")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
