"""Telegram's errors, sorted into what the engine should do about them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from telethon.errors import RPCError, rpcerrorlist


class Scope(Enum):
    """Who an error is about, which decides what the engine does (ARCHITECTURE.md, "Errors by scope")."""

    MESSAGE = "message"  # this message can never be sent as is: skipped with a reason
    CHAT = "chat"  # the chat or the account's rights in it: stop, leases released, exit 78 naming the key
    ACCOUNT = "account"  # the account itself: every lease released at once, state recorded, exit 78
    FLOOD = "flood"  # wait the given seconds, then the same call again; never an attempt
    TRANSIENT = "transient"  # network, server trouble: retried with backoff
    UNKNOWN = "unknown"  # a refusal nobody listed: retried, and several in a row stop the session


class ErrorKind(Enum):
    FLOOD_WAIT = "flood_wait"  # wait the given seconds, then retry the same call
    SLOWMODE = "slowmode"  # per chat wait
    FORWARDS_RESTRICTED = "forwards_restricted"  # protected content: switch to reupload
    FILE_REFERENCE_EXPIRED = "file_reference_expired"  # refetch the source message
    CHAT = "chat"  # the user must fix the chat or the account's rights in it
    ACCOUNT = "account"  # the user must log in again or deal with the account's standing
    MESSAGE = "message"  # this message can never be sent as is: skip it with a reason
    TRANSIENT = "transient"  # retry with backoff
    UNKNOWN = "unknown"  # an unlisted refusal: retry, and stop when it repeats on other messages


_SCOPES = {
    ErrorKind.FLOOD_WAIT: Scope.FLOOD,
    ErrorKind.SLOWMODE: Scope.FLOOD,
    ErrorKind.FORWARDS_RESTRICTED: Scope.MESSAGE,
    ErrorKind.FILE_REFERENCE_EXPIRED: Scope.TRANSIENT,
    ErrorKind.CHAT: Scope.CHAT,
    ErrorKind.ACCOUNT: Scope.ACCOUNT,
    ErrorKind.MESSAGE: Scope.MESSAGE,
    ErrorKind.TRANSIENT: Scope.TRANSIENT,
    ErrorKind.UNKNOWN: Scope.UNKNOWN,
}


@dataclass(frozen=True)
class Classified:
    kind: ErrorKind
    name: str
    seconds: int = 0
    state: str = ""  # account scope: revoked, banned, frozen or limited (shown by telepi status)
    fix: str = ""  # account and chat scope: what the person must do

    @property
    def scope(self) -> Scope:
        return _SCOPES[self.kind]


# Account scope (https://core.telegram.org/api/errors): every call fails the same way until a person acts.
# "{login}" becomes the session's own `telepi login DIR`.
_RELOGIN = "log the session in again with  {login}"
_ACCOUNT: dict[str, tuple[str, str]] = {
    "AUTH_KEY_UNREGISTERED": ("revoked", "Telegram no longer knows this session's login: " + _RELOGIN),
    "AUTH_KEY_INVALID": ("revoked", "Telegram no longer knows this session's login: " + _RELOGIN),
    "AUTH_KEY_PERM_EMPTY": ("revoked", "Telegram no longer knows this session's login: " + _RELOGIN),
    "AuthKeyNotFound": ("revoked", "Telegram forgot this session's auth key: " + _RELOGIN),
    "SESSION_REVOKED": ("revoked", "the login was ended (terminated from another device or by Telegram): " + _RELOGIN),
    "SESSION_EXPIRED": ("revoked", "the login expired: " + _RELOGIN),
    "AUTH_KEY_DUPLICATED": (
        "revoked",
        "the session file was used from two places at once and Telegram revoked it: use each .session file in "
        "one place only and " + _RELOGIN,
    ),
    "USER_DEACTIVATED": ("banned", "the account was deleted: use another account for this session"),
    "USER_DEACTIVATED_BAN": ("banned", "Telegram banned the account: use another account for this session"),
    "PEER_FLOOD": (
        "limited",
        "Telegram limits this account for spam (PEER_FLOOD): it may not send for a while; ask @SpamBot with this "
        "account, lower SEND_INTERVAL's pace, and start the session again later",
    ),
    "USER_RESTRICTED": (
        "limited",
        "Telegram restricted this account (USER_RESTRICTED): ask @SpamBot with this account, then start again",
    ),
}
_FROZEN = (
    "frozen",
    "Telegram froze the account ({name}): it can only appeal, via @SpamBot, until it is unfrozen",
)
# Chat scope: the target (or source) chat, or the account's rights in it. Never about one message.
_CHAT = {
    "CHAT_WRITE_FORBIDDEN": "the account cannot post in the chat: make it an admin with 'post messages'",
    "CHAT_ADMIN_REQUIRED": "the account needs admin rights in the chat (post messages, manage topics)",
    "CHAT_RESTRICTED": "the chat is restricted for this account: grant it the right to send",
    "CHAT_GUEST_SEND_FORBIDDEN": "the account must join the chat before it can post",
    "CHANNEL_PRIVATE": "the account is not a member of the chat (or was removed): join it with this account first",
    "CHANNEL_INVALID": "the chat id is wrong or the account has never seen it: check the chat setting",
    "CHAT_ID_INVALID": "the chat id is wrong or the account has never seen it: check the chat setting",
    "PEER_ID_INVALID": "the chat id is wrong or the account has never seen it: check the chat setting",
    "USER_NOT_PARTICIPANT": "the account is not a member of the chat: join it with this account first",
    "USER_BANNED_IN_CHANNEL": "the account is banned from the chat: unban it or use another account",
    "TOPIC_CLOSED": "a target topic is closed: reopen it or give the account the 'manage topics' right",
    "TOPIC_DELETED": "a target topic was deleted: let telepi recreate it (AUTO_CREATE_TOPICS) or fix topic_map.json",
}
# Granular send rights (layer 150+): CHAT_SEND_PHOTOS_FORBIDDEN, CHAT_SEND_DOCS_FORBIDDEN, ...
_SEND_RIGHT = re.compile(r"CHAT_SEND_(\w+)_FORBIDDEN")
# Message scope: this one message can never be sent as it is.
_MESSAGE = {
    "MEDIA_EMPTY",
    "MEDIA_INVALID",
    "MESSAGE_EMPTY",
    "POLL_OPTION_INVALID",
    "POLL_ANSWERS_INVALID",
    "QUIZ_CORRECT_ANSWERS_EMPTY",
    "WEBPAGE_CURL_FAILED",
    "MESSAGE_TOO_LONG",
    "MEDIA_CAPTION_TOO_LONG",
    "FILE_PARTS_INVALID",
    "ENTITY_BOUNDS_INVALID",
    "ENTITY_MENTION_USER_INVALID",
    "PHOTO_INVALID_DIMENSIONS",
    "PHOTO_EXT_INVALID",
    "DOCUMENT_INVALID",
    "MESSAGE_ID_INVALID",
    "GROUPED_MEDIA_INVALID",
    # edits and deletes of a copy (engine/changes.py decides: not modified is done, the others not retried)
    "MESSAGE_NOT_MODIFIED",
    "MESSAGE_AUTHOR_REQUIRED",
    "MESSAGE_DELETE_FORBIDDEN",
    "MESSAGE_EDIT_TIME_EXPIRED",
}


def fatal_hint(name: str) -> str | None:
    """What to do about a chat-scope error, or None for other errors."""
    if name in _CHAT:
        return _CHAT[name]
    match = _SEND_RIGHT.fullmatch(name)
    if match:
        right = match.group(1).lower().replace("_", " ")
        return f"the chat does not let this account send {right}: grant it that right (or make it an admin)"
    return None


# Telethon's specific error classes carry only their base's generic message ("FORBIDDEN", "FLOOD"):
# map each class back to Telegram's own error name.
_NAMES: dict[type, str] = {cls: name for name, cls in rpcerrorlist.rpc_errors_dict.items()}
_PATTERNS: dict[type, str] = {cls: pattern for pattern, cls in rpcerrorlist.rpc_errors_re}


def error_name(exc: BaseException) -> str:
    """Telegram's error name (``CHAT_WRITE_FORBIDDEN``, ``FLOOD_WAIT_30``) or the exception's class name."""
    cls = type(exc)
    if cls in _NAMES:
        return _NAMES[cls]
    if cls in _PATTERNS:
        value = getattr(exc, "seconds", None) or getattr(exc, "new_dc", None) or getattr(exc, "value", None)
        return _PATTERNS[cls].replace("(\\d+)", str(value if value is not None else "X"))
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return cls.__name__


def classify(exc: BaseException) -> Classified:
    """Sort an exception from a Telegram call into its scope and what the engine should do about it."""
    name = error_name(exc)
    if type(exc).__name__ == "AuthKeyNotFound":  # the transport's -404: Telethon disconnects with it
        name = "AuthKeyNotFound"
    elif not isinstance(exc, RPCError):
        return Classified(ErrorKind.TRANSIENT, name)
    return classify_name(name, getattr(exc, "code", None), int(getattr(exc, "seconds", 0) or 0))


def classify_name(name: str, code: int | None = None, seconds: int = 0) -> Classified:
    """The same sorting from Telegram's error name alone (a transfer reports only the name)."""
    if name in _ACCOUNT:
        state, fix = _ACCOUNT[name]
        return Classified(ErrorKind.ACCOUNT, name, state=state, fix=fix)
    if name.startswith("FROZEN_"):  # Telethon classes FROZEN_METHOD_INVALID as a flood; it is not one
        return Classified(ErrorKind.ACCOUNT, name, state=_FROZEN[0], fix=_FROZEN[1].format(name=name))
    if re.match(r"FLOOD_(PREMIUM_)?WAIT", name):
        return Classified(ErrorKind.FLOOD_WAIT, name, seconds or _seconds_in(name))
    if name.startswith("SLOWMODE_WAIT"):
        return Classified(ErrorKind.SLOWMODE, name, seconds or _seconds_in(name))
    if name == "CHAT_FORWARDS_RESTRICTED":
        return Classified(ErrorKind.FORWARDS_RESTRICTED, name)
    if name.startswith("FILE_REFERENCE_"):
        return Classified(ErrorKind.FILE_REFERENCE_EXPIRED, name)
    hint = fatal_hint(name)
    if hint is not None:
        return Classified(ErrorKind.CHAT, name, fix=hint)
    if name in _MESSAGE:
        return Classified(ErrorKind.MESSAGE, name)
    if code is not None and int(code) == 401:  # any other 401 is about the login
        return Classified(ErrorKind.ACCOUNT, name, state="revoked", fix="Telegram refuses the login: " + _RELOGIN)
    if code is not None and 400 <= int(code) < 500 and int(code) != 420:
        return Classified(ErrorKind.UNKNOWN, name)
    return Classified(ErrorKind.TRANSIENT, name)


def _seconds_in(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else 1


def request_name(request: Any) -> str:
    """``SendMessageRequest`` → ``SendMessage``, for logs and the status line."""
    return type(request).__name__.removesuffix("Request")
