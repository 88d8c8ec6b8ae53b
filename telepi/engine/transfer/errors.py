"""Why a streaming reupload did not produce media: each a distinct type the worker can act on."""

from __future__ import annotations


class TransferError(Exception):
    """A file could not be moved. ``retryable``: trying the item again later may succeed."""

    retryable = False
    reason = "transfer_failed"


class TooLarge(TransferError):
    """The file needs more upload parts than the account may use (4000, or 8000 for premium).

    Raised before any byte moves.
    """

    reason = "too_large"

    def __init__(self, size: int, parts: int, cap: int) -> None:
        super().__init__(f"file of {size} bytes needs {parts} upload parts; this account may upload at most {cap}")
        self.size = size
        self.parts = parts
        self.cap = cap


class TransferFailed(TransferError):
    """A request failed in a way retrying will not fix (``error`` is Telegram's error name), or one
    part kept failing past its retries (then ``retryable`` is true)."""

    def __init__(self, message: str, *, error: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.retryable = retryable


class SourceChanged(TransferError):
    """``refresh()`` returned different media (the message was edited or deleted): the item must be
    planned again rather than finished with a mix of two files."""

    reason = "source_changed"


class FloodWaitTooLong(TransferError):
    """Telegram asked this account to wait longer than ``max_flood_wait`` for transfers."""

    retryable = True
    reason = "flood_wait"

    def __init__(self, seconds: float, error: str) -> None:
        super().__init__(f"{error}: Telegram asks to wait {seconds:.0f} s before transferring again")
        self.seconds = seconds
        self.error = error
