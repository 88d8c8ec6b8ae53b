"""Tell systemd how the service is doing (sd_notify): READY, STATUS, STOPPING, WATCHDOG.

Uses the ``sdnotify`` package. Everything is a no-op when ``NOTIFY_SOCKET`` is unset (a terminal,
``run.sh``, tests), so callers never need to check where they run::

    from telepi.service import notify
    notify.ready("copying @source -> @target")
    notify.status("1,204 of 9,876 copied; flood wait 120 s")
    notify.stopping()

The watchdog pings come from :class:`telepi.service.watchdog.HealthMonitor`, which sends them only
while the process is healthy.
"""

from __future__ import annotations

import logging
import os

from sdnotify import SystemdNotifier

log = logging.getLogger(__name__)

# systemd ignores a notification longer than 4096 bytes; a long STATUS is cut instead of being lost.
_STATUS_BYTES = 2048


class Notifier:
    """One connection to ``$NOTIFY_SOCKET``; methods return whether systemd was told."""

    def __init__(self) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET", "")
        self._notifier: SystemdNotifier | None = None
        self._failed = False
        if self._address and self._address[0] not in "/@":
            log.warning("NOTIFY_SOCKET=%s is not a unix socket path; not notifying systemd", self._address)
            self._address = ""

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notify socket (Type=notify)."""
        return bool(self._address)

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, line: str) -> bool:
        return self.send(*_status(line))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (e.g. a login or a long flush); ignored once running."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; a failure is logged once, never raised."""
        if not self.enabled or not assignments:
            return False
        # sdnotify encodes as latin-1; sd_notify is UTF-8. Handing it the UTF-8 bytes as latin-1
        # characters sends exactly those bytes (a Cyrillic chat title would otherwise be dropped).
        payload = "\n".join(assignments).encode("utf-8").decode("latin-1")
        try:
            self._send(payload)
        except OSError:
            # The socket may have been re-created (systemd re-executed): reconnect and try once more.
            self._notifier = None
            try:
                self._send(payload)
            except OSError as exc:
                self._notifier = None
                self._report(exc)
                return False
        self._failed = False
        return True

    def _send(self, payload: str) -> None:
        if self._notifier is None:
            self._notifier = self._connect()
        self._notifier.notify(payload)

    def _connect(self) -> SystemdNotifier:
        notifier = SystemdNotifier(debug=True)  # debug: raise instead of silently doing nothing
        # Never block the event loop on a busy systemd: a dropped ping beats a frozen process.
        notifier.socket.setblocking(False)
        return notifier

    def _report(self, exc: OSError) -> None:
        if not self._failed:
            log.warning("cannot notify systemd at %s: %s", self._address, exc)
        self._failed = True


def _status(line: str | None) -> tuple[str, ...]:
    if line is None:
        return ()
    # A newline would start a new KEY=value assignment (STATUS=x\nREADY=1): flatten it.
    flat = " ".join(line.split())
    return ("STATUS=" + flat.encode("utf-8")[:_STATUS_BYTES].decode("utf-8", "ignore"),)


_default: Notifier | None = None


def notifier() -> Notifier:
    """The process's notifier, created on first use from the environment systemd gave us."""
    global _default
    if _default is None:
        _default = Notifier()
    return _default


def ready(status: str | None = None) -> bool:
    """Startup finished (Type=notify): systemd marks the unit active and starts the watchdog."""
    return notifier().ready(status)


def status(line: str) -> bool:
    """One line shown by ``systemctl status``."""
    return notifier().status(line)


def stopping(status: str | None = None) -> bool:
    """A clean shutdown has begun."""
    return notifier().stopping(status)


def watchdog() -> bool:
    """Keep-alive ping; prefer :class:`~telepi.service.watchdog.HealthMonitor`, which pings only when healthy."""
    return notifier().watchdog()
