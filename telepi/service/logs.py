"""Logging: the console, or the journal under systemd; a size-bounded ``clone.log`` in the session
directory; secrets redacted everywhere.

Structured fields. Pass them with ``extra=`` on any log call; under systemd they become journal fields
(other destinations keep the plain message)::

    log.info("flood wait %d s", 120, extra={"event": "flood_wait", "msg_id": 5})
    log.warning("copy failed: %s", err, extra={"event": "copy_failed", "msg_id": 5, "route": route_label})

==============  ====================  ========================================================
``extra`` key   journal field         meaning
==============  ====================  ========================================================
``session``     ``TELEPI_SESSION``    session name; defaults to ``setup_logging(session=...)``
``route``       ``TELEPI_ROUTE``      the route's name (or ``source -> target``); defaults to the route
                                      whose task logs (engine/logcontext.py), else to the session's
                                      routes (``setup_logging(route=...)``, ``set_routes`` on a reload)
``msg_id``      ``TELEPI_MSG_ID``     source message id
``event``       ``TELEPI_EVENT``      snake_case name of what happened (flood_wait, copied, ...)
==============  ====================  ========================================================

Query them with e.g. ``journalctl -u telepi@session1 TELEPI_EVENT=flood_wait -o json``.
Under systemd without systemd-python installed, records go to stderr as plain lines with a ``<N>``
priority prefix, which journald turns into the entry's priority.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from telepi.engine.logcontext import ROUTE

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
CLONE_LOG_BYTES = 5 * 1024 * 1024
CLONE_LOG_BACKUPS = 3
SYSLOG_IDENTIFIER = "telepi"

# extra= key -> journal field
STRUCTURED_FIELDS = {
    "session": "TELEPI_SESSION",
    "route": "TELEPI_ROUTE",
    "msg_id": "TELEPI_MSG_ID",
    "event": "TELEPI_EVENT",
}


class RedactSecrets(logging.Filter):
    """Replaces known secret values (API hash, phone, …) in every record, whatever logged them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class _RedactingFormatter(logging.Formatter):
    """Also redacts what the filter cannot see: exception tracebacks and stack traces."""

    def __init__(self, fmt: str, redact: RedactSecrets) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact.redact(super().format(record))


class _PriorityPrefixFormatter(_RedactingFormatter):
    """``<3>message``: journald reads the prefix of a stderr line as its syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = journal_priority(record.levelno)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """``clone.log`` and its rotations 0600 whatever the umask: they name chats, accounts and messages."""

    def _open(self) -> io.TextIOWrapper:
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(descriptor, 0o600)
        return io.TextIOWrapper(io.FileIO(descriptor, "a"), encoding=self.encoding, errors=self.errors)


class QuietReconnects(logging.Filter):
    """Telethon logs a line for every failed connection attempt, one each ``retry_delay`` (2 s) for as long as
    Telegram is unreachable: a long outage would bury the journal. The first attempt's line and then every
    ``every``-th one pass: about one a minute, enough to show the outage goes on."""

    MESSAGE = "Attempt %d at connecting failed: %s: %s"  # telethon/network/mtprotosender.py, 1.45

    def __init__(self, every: int = 30) -> None:
        super().__init__()
        self.every = every

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE or not isinstance(record.args, tuple) or not record.args:
            return True
        attempt = record.args[0]
        return not isinstance(attempt, int) or attempt <= 1 or attempt % self.every == 0


def journal_priority(levelno: int) -> int:
    """Syslog priority of a logging level (sparse levels round up to the next standard one)."""
    for limit, priority in ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3)):
        if levelno <= limit:
            return priority
    return 2


def structured_fields(record: logging.LogRecord, defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """The TELEPI_* journal fields of a record: its ``extra=`` values over the route whose task logs it
    (read when the record is made, in that task), over the process-wide defaults."""
    fields = dict(defaults or {})
    route = ROUTE.get()
    if route:
        fields["TELEPI_ROUTE"] = route
    for key, field in STRUCTURED_FIELDS.items():
        value = getattr(record, key, None)
        if value is not None and value != "":
            fields[field] = str(value)
    return fields


def under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """True when a systemd unit started this process: its stderr is the journal (``JOURNAL_STREAM`` names
    the stderr file), or systemd gave it an invocation id or a notify socket."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM", "")
    if stream:
        try:
            stat = os.fstat(sys.stderr.fileno())
            if stream == f"{stat.st_dev}:{stat.st_ino}":
                return True
        except (OSError, ValueError, AttributeError):  # stderr closed or replaced by a non-file
            pass
    return bool(env.get("INVOCATION_ID") or env.get("NOTIFY_SOCKET"))


# TELEPI_SESSION / TELEPI_ROUTE of every entry without its own: set by setup_logging, the route by set_routes.
_DEFAULTS: dict[str, str] = {}


def set_routes(routes: str) -> None:
    """The routes the session runs now (after a SIGHUP reload): the TELEPI_ROUTE of lines no route's task logs."""
    if routes:
        _DEFAULTS["TELEPI_ROUTE"] = routes
    else:
        _DEFAULTS.pop("TELEPI_ROUTE", None)


def journal_handler(defaults: Mapping[str, str] | None = None) -> logging.Handler | None:
    """A ``systemd.journal.JournalHandler`` sending a fixed set of fields, or None without systemd-python.

    The stock handler copies every LogRecord attribute into the journal (raw ``args`` included, which
    may hold a secret the redaction filter removed from the message); this one sends MESSAGE, PRIORITY,
    LOGGER, THREAD_NAME, CODE_* and the TELEPI_* fields only.
    """
    try:
        from systemd import journal
    except ImportError:
        return None
    fixed = _DEFAULTS if defaults is None else defaults

    class TelepiJournalHandler(journal.JournalHandler):  # type: ignore[misc]  # systemd-python is untyped
        def emit(self, record: logging.LogRecord) -> None:
            try:
                self.send(
                    self.format(record),
                    PRIORITY=str(journal_priority(record.levelno)),
                    LOGGER=record.name,
                    THREAD_NAME=record.threadName,
                    CODE_FILE=record.pathname,
                    CODE_LINE=record.lineno,
                    CODE_FUNC=record.funcName,
                    SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
                    **structured_fields(record, fixed),
                )
            except Exception:
                self.handleError(record)

    return TelepiJournalHandler()


def setup_logging(
    level: str = "INFO",
    log_file: Path | None = None,
    secrets: Iterable[str] = (),
    *,
    session: str | None = None,
    route: str | None = None,
    journal: bool | None = None,
) -> None:
    """Send records to the console (the journal under systemd) and, when given, to a rotating ``clone.log``;
    idempotent per process.

    ``session`` and ``route`` are the default TELEPI_SESSION / TELEPI_ROUTE of every journal entry.
    ``journal`` forces the journal on or off; by default it is used when :func:`under_systemd`.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    redact = RedactSecrets(secrets)
    handlers: list[logging.Handler] = []
    use_journal = under_systemd() if journal is None else journal
    _DEFAULTS.clear()
    _DEFAULTS.update(
        {
            field: value
            for field, value in (("TELEPI_SESSION", session), ("TELEPI_ROUTE", route))
            if value  # empty values would only add noise to every entry
        }
    )
    if use_journal:
        to_journal = journal_handler()
        if to_journal is not None:
            to_journal.setFormatter(_RedactingFormatter("%(message)s", redact))
            handlers.append(to_journal)
        else:
            # systemd-python missing: stderr is the journal's stream; no timestamp, journald adds one.
            console = logging.StreamHandler(sys.stderr)
            console.setFormatter(_PriorityPrefixFormatter("%(levelname)s %(name)s: %(message)s", redact))
            handlers.append(console)
    else:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(_RedactingFormatter(LOG_FORMAT, redact))
        handlers.append(console)
    if log_file is not None:
        clone_log = _PrivateRotatingFileHandler(
            log_file, maxBytes=CLONE_LOG_BYTES, backupCount=CLONE_LOG_BACKUPS, encoding="utf-8"
        )
        clone_log.setFormatter(_RedactingFormatter(LOG_FORMAT, redact))
        handlers.append(clone_log)
    for handler in handlers:
        handler.addFilter(redact)
        root.addHandler(handler)
    # Telethon is chatty at INFO (connection lines on every reconnect); keep its warnings.
    logging.getLogger("telethon").setLevel(max(logging.getLevelName(level), logging.WARNING))
    sender_log = logging.getLogger("telethon.network.mtprotosender")
    if not any(isinstance(f, QuietReconnects) for f in sender_log.filters):
        sender_log.addFilter(QuietReconnects())
