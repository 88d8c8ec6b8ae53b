"""Telegram errors, as Telethon raises them, sorted into what the engine does about them."""

from __future__ import annotations

import pytest
from telethon import errors

from telepi.telegram.errors import ErrorKind, classify, error_name


@pytest.mark.parametrize(
    ("exc", "name", "kind", "seconds"),
    [
        (errors.FloodWaitError(None, capture=42), "FLOOD_WAIT_42", ErrorKind.FLOOD_WAIT, 42),
        (errors.FloodPremiumWaitError(None, capture=7), "FLOOD_PREMIUM_WAIT_7", ErrorKind.FLOOD_WAIT, 7),
        (errors.SlowModeWaitError(None, capture=30), "SLOWMODE_WAIT_30", ErrorKind.SLOWMODE, 30),
        (errors.PeerFloodError(None), "PEER_FLOOD", ErrorKind.PEER_FLOOD, 0),
        (errors.ChatForwardsRestrictedError(None), "CHAT_FORWARDS_RESTRICTED", ErrorKind.FORWARDS_RESTRICTED, 0),
        (errors.FileReferenceExpiredError(None), "FILE_REFERENCE_EXPIRED", ErrorKind.FILE_REFERENCE_EXPIRED, 0),
        (errors.ChatWriteForbiddenError(None), "CHAT_WRITE_FORBIDDEN", ErrorKind.FATAL_CONFIG, 0),
        (errors.ChatAdminRequiredError(None), "CHAT_ADMIN_REQUIRED", ErrorKind.FATAL_CONFIG, 0),
        (errors.MediaInvalidError(None), "MEDIA_INVALID", ErrorKind.PERMANENT, 0),
        (errors.RPCError(None, "INTERNAL", 500), "INTERNAL", ErrorKind.TRANSIENT, 0),
        (ConnectionError("reset"), "ConnectionError", ErrorKind.TRANSIENT, 0),
    ],
)
def test_classify(exc: BaseException, name: str, kind: ErrorKind, seconds: int) -> None:
    assert error_name(exc) == name
    found = classify(exc)
    assert (found.kind, found.seconds) == (kind, seconds)
