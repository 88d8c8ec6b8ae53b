"""Telegram's errors, sorted into what the engine should do about them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from telethon.errors import RPCError, rpcerrorlist


class ErrorKind(Enum):
    FLOOD_WAIT = "flood_wait"  # wait the given seconds, then retry the same message
    SLOWMODE = "slowmode"  # per chat wait
    PEER_FLOOD = "peer_flood"  # the account is spam-limited: stop this session
    FORWARDS_RESTRICTED = "forwards_restricted"  # protected content: switch to reupload
    FILE_REFERENCE_EXPIRED = "file_reference_expired"  # refetch the source message
    FATAL_CONFIG = "fatal_config"  # the user must fix rights or chats: stop with exit 78
    PERMANENT = "permanent"  # this message can never be sent as is: skip it with a reason
    TRANSIENT = "transient"  # retry with backoff


@dataclass(frozen=True)
class Classified:
    kind: ErrorKind
    name: str
    seconds: int = 0


_FATAL = {
    "CHAT_WRITE_FORBIDDEN": "the account cannot post in the target chat: make it an admin with 'post messages'",
    "CHAT_ADMIN_REQUIRED": "the account needs admin rights in the target (post messages, manage topics)",
    "CHAT_SEND_MEDIA_FORBIDDEN": "the target does not allow this account to send media: grant it media rights",
    "CHANNEL_PRIVATE": "the account is not a member of the chat: join it with this account first",
    "CHANNEL_INVALID": "the chat id is wrong or the account has never seen it: check the chat setting",
    "USER_BANNED_IN_CHANNEL": "the account is banned from the chat",
    "TOPIC_CLOSED": "a target topic is closed: reopen it or give the account manage-topics rights",
}
_PERMANENT = {
    "MEDIA_EMPTY",
    "MEDIA_INVALID",
    "MESSAGE_EMPTY",
    "POLL_OPTION_INVALID",
    "WEBPAGE_CURL_FAILED",
    "MESSAGE_TOO_LONG",
    "MEDIA_CAPTION_TOO_LONG",
    "FILE_PARTS_INVALID",
    "ENTITY_BOUNDS_INVALID",
}


def fatal_hint(name: str) -> str | None:
    return _FATAL.get(name)


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
    """Sort an exception from a Telegram call into what the engine should do about it."""
    name = error_name(exc)
    seconds = int(getattr(exc, "seconds", 0) or 0)
    if not isinstance(exc, RPCError):
        return Classified(ErrorKind.TRANSIENT, name)
    if re.match(r"FLOOD_(PREMIUM_)?WAIT", name) or type(exc).__name__ in {"FloodWaitError", "FloodPremiumWaitError"}:
        return Classified(ErrorKind.FLOOD_WAIT, name, seconds or _seconds_in(name))
    if name.startswith("SLOWMODE_WAIT") or type(exc).__name__ == "SlowModeWaitError":
        return Classified(ErrorKind.SLOWMODE, name, seconds or _seconds_in(name))
    if name == "PEER_FLOOD":
        return Classified(ErrorKind.PEER_FLOOD, name)
    if name == "CHAT_FORWARDS_RESTRICTED":
        return Classified(ErrorKind.FORWARDS_RESTRICTED, name)
    if name.startswith("FILE_REFERENCE_"):
        return Classified(ErrorKind.FILE_REFERENCE_EXPIRED, name)
    if name in _FATAL:
        return Classified(ErrorKind.FATAL_CONFIG, name)
    if name in _PERMANENT:
        return Classified(ErrorKind.PERMANENT, name)
    code = getattr(exc, "code", None)
    if code is not None and 400 <= int(code) < 500 and int(code) not in (420, 429):
        return Classified(ErrorKind.PERMANENT, name)
    return Classified(ErrorKind.TRANSIENT, name)


def _seconds_in(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else 1


def request_name(request: Any) -> str:
    """``SendMessageRequest`` → ``SendMessage``, for logs and the status line."""
    return type(request).__name__.removesuffix("Request")
