"""Syntax of chat references in the configuration: ``-100…`` ids, ``@usernames`` and ``t.me`` links.

Only the syntax is checked here; resolving a reference to a chat needs the Telegram client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ChatKind = Literal["id", "username", "invite"]

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_LINK = re.compile(r"(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/(?P<path>[^?#]+)/?(?:[?#].*)?")
_PRIVATE_POST = re.compile(r"c/(?P<id>\d+)(?:/\d+)*")
_INVITE = re.compile(r"(?:\+|joinchat/)(?P<hash>[A-Za-z0-9_-]{8,})")
_PUBLIC_POST = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_]{3,31})(?:/\d+)*")

CHAT_SYNTAX_HELP = "a -100… chat id, an @username or a https://t.me/… link"


@dataclass(frozen=True)
class ChatRef:
    """A chat as the user wrote it, normalised so two spellings of one chat compare equal."""

    kind: ChatKind
    value: int | str  # chat id (marked, e.g. -1001234), lower-case username, or invite hash
    raw: str

    @property
    def key(self) -> str:
        """Canonical text form: ``-1001234``, ``@name`` or ``+hash``."""
        if self.kind == "id":
            return str(self.value)
        if self.kind == "username":
            return f"@{self.value}"
        return f"+{self.value}"

    def __str__(self) -> str:
        return self.key


def parse_chat(text: str) -> ChatRef:
    """Parse a chat reference; raises ``ValueError`` with a sentence saying what is accepted."""
    raw = text
    text = text.strip()
    if not text:
        raise ValueError(f"is empty; expected {CHAT_SYNTAX_HELP}")
    if re.fullmatch(r"-?\d+", text):
        number = int(text)
        if number >= 0:
            raise ValueError(
                "is a positive number; channel and supergroup ids start with -100 "
                "(for example -1001234567890) and basic group ids are negative"
            )
        return ChatRef("id", number, raw)
    if text.startswith("@"):
        name = text[1:]
        if not _USERNAME.fullmatch(name):
            raise ValueError("is not a valid username (5-32 letters, digits or underscores, starting with a letter)")
        return ChatRef("username", name.lower(), raw)
    link = _LINK.fullmatch(text)
    if link:
        return _parse_link_path(link.group("path").rstrip("/"), raw)
    if _USERNAME.fullmatch(text):
        return ChatRef("username", text.lower(), raw)
    raise ValueError(f"is not {CHAT_SYNTAX_HELP}")


def _parse_link_path(path: str, raw: str) -> ChatRef:
    private = _PRIVATE_POST.fullmatch(path)
    if private:
        return ChatRef("id", int(f"-100{private.group('id')}"), raw)
    invite = _INVITE.fullmatch(path)
    if invite:
        return ChatRef("invite", invite.group("hash"), raw)
    public = _PUBLIC_POST.fullmatch(path)
    if public:
        return ChatRef("username", public.group("name").lower(), raw)
    raise ValueError(f"is a t.me link telepi cannot read; expected {CHAT_SYNTAX_HELP}")
