"""Logging base: the console, a size-bounded ``clone.log`` in the session directory, secrets redacted."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterable
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
CLONE_LOG_BYTES = 5 * 1024 * 1024
CLONE_LOG_BACKUPS = 3


class RedactSecrets(logging.Filter):
    """Replaces known secret values (API hash, phone, …) in every record, whatever logged them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, "[redacted]")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str = "INFO", log_file: Path | None = None, secrets: Iterable[str] = ()) -> None:
    """Send records to stderr and, when given, to a rotating ``clone.log``; idempotent per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    redact = RedactSecrets(secrets)
    formatter = logging.Formatter(LOG_FORMAT)
    console = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file, maxBytes=CLONE_LOG_BYTES, backupCount=CLONE_LOG_BACKUPS, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redact)
        root.addHandler(handler)
    # Telethon is chatty at INFO (connection lines on every reconnect); keep its warnings.
    logging.getLogger("telethon").setLevel(max(logging.getLevelName(level), logging.WARNING))
