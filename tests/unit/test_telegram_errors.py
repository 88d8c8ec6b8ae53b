"""Telegram errors, as Telethon raises them, sorted by scope into what the engine does about them."""

from __future__ import annotations

import pytest
from telethon import errors
from telethon.errors.common import AuthKeyNotFound

from telepi.telegram.errors import Classified, ErrorKind, Scope, classify, classify_name, error_name


@pytest.mark.parametrize(
    ("exc", "name", "kind", "seconds"),
    [
        (errors.FloodWaitError(None, capture=42), "FLOOD_WAIT_42", ErrorKind.FLOOD_WAIT, 42),
        (errors.FloodPremiumWaitError(None, capture=7), "FLOOD_PREMIUM_WAIT_7", ErrorKind.FLOOD_WAIT, 7),
        (errors.SlowModeWaitError(None, capture=30), "SLOWMODE_WAIT_30", ErrorKind.SLOWMODE, 30),
        (errors.PeerFloodError(None), "PEER_FLOOD", ErrorKind.ACCOUNT, 0),
        (errors.ChatForwardsRestrictedError(None), "CHAT_FORWARDS_RESTRICTED", ErrorKind.FORWARDS_RESTRICTED, 0),
        (errors.FileReferenceExpiredError(None), "FILE_REFERENCE_EXPIRED", ErrorKind.FILE_REFERENCE_EXPIRED, 0),
        (errors.ChatWriteForbiddenError(None), "CHAT_WRITE_FORBIDDEN", ErrorKind.CHAT, 0),
        (errors.ChatAdminRequiredError(None), "CHAT_ADMIN_REQUIRED", ErrorKind.CHAT, 0),
        (errors.MediaInvalidError(None), "MEDIA_INVALID", ErrorKind.MESSAGE, 0),
        (errors.RPCError(None, "INTERNAL", 500), "INTERNAL", ErrorKind.TRANSIENT, 0),
        (ConnectionError("reset"), "ConnectionError", ErrorKind.TRANSIENT, 0),
        # Account scope: every call fails the same way until a person acts.
        (errors.AuthKeyUnregisteredError(None), "AUTH_KEY_UNREGISTERED", ErrorKind.ACCOUNT, 0),
        (errors.SessionRevokedError(None), "SESSION_REVOKED", ErrorKind.ACCOUNT, 0),
        (errors.UserDeactivatedBanError(None), "USER_DEACTIVATED_BAN", ErrorKind.ACCOUNT, 0),
        (errors.AuthKeyDuplicatedError(None), "AUTH_KEY_DUPLICATED", ErrorKind.ACCOUNT, 0),
        (AuthKeyNotFound(), "AuthKeyNotFound", ErrorKind.ACCOUNT, 0),
        # Telethon classes FROZEN_METHOD_INVALID as a FloodError: it is the account, not a wait.
        (errors.FrozenMethodInvalidError(None), "FROZEN_METHOD_INVALID", ErrorKind.ACCOUNT, 0),
        # Granular rights and topics are about the chat, never one message.
        (errors.RPCError(None, "CHAT_SEND_PHOTOS_FORBIDDEN", 403), "CHAT_SEND_PHOTOS_FORBIDDEN", ErrorKind.CHAT, 0),
        (errors.RPCError(None, "TOPIC_DELETED", 400), "TOPIC_DELETED", ErrorKind.CHAT, 0),
        # Nobody listed it: never a reason to skip.
        (errors.RPCError(None, "SOMETHING_NEW_INVALID", 400), "SOMETHING_NEW_INVALID", ErrorKind.UNKNOWN, 0),
        (errors.RPCError(None, "SOMETHING_ELSE", 401), "SOMETHING_ELSE", ErrorKind.ACCOUNT, 0),
    ],
)
def test_classify(exc: BaseException, name: str, kind: ErrorKind, seconds: int) -> None:
    found = classify(exc)
    assert (found.name, found.kind, found.seconds) == (name, kind, seconds)
    if not isinstance(exc, AuthKeyNotFound):
        assert error_name(exc) == name


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("SESSION_REVOKED", "revoked"),
        ("AUTH_KEY_UNREGISTERED", "revoked"),
        ("USER_DEACTIVATED", "banned"),
        ("FROZEN_PARTICIPANT_MISSING", "frozen"),
        ("PEER_FLOOD", "limited"),
        ("USER_RESTRICTED", "limited"),
    ],
)
def test_account_scope_names_the_state_and_the_fix(name: str, state: str) -> None:
    found = classify_name(name)
    assert found.scope is Scope.ACCOUNT and found.state == state and found.fix


def test_relogin_fixes_name_the_login_command() -> None:
    assert "{login}" in classify_name("SESSION_REVOKED").fix
    assert "{login}" not in classify_name("USER_DEACTIVATED_BAN").fix


def test_granular_send_rights_name_the_right() -> None:
    assert "send docs" in classify_name("CHAT_SEND_DOCS_FORBIDDEN").fix


def test_every_kind_has_a_scope_and_every_scope_a_kind() -> None:
    assert {Classified(kind, "X").scope for kind in ErrorKind} == set(Scope)
