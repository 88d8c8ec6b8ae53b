"""``telepi login``: create a session's ``.session`` file, interactively or from a script.

Phone, code and 2FA password are read without echo and never logged or printed. Non-interactive use:
``--phone`` and the code on the first line of stdin (the 2FA password, if any, on the second).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any, TextIO

from telethon import errors

from telepi.config import Settings
from telepi.errors import ConfigError, Problem
from telepi.telegram.client import make_client


class LoginError(ConfigError):
    def __init__(self, what: str, fix: str) -> None:
        super().__init__([Problem("", what, fix)])


class Answers:
    """Where the phone, the code and the password come from: the terminal or stdin lines."""

    def __init__(self, phone: str | None, stdin: TextIO, interactive: bool) -> None:
        self.phone_arg = phone
        self.interactive = interactive
        self.lines: list[str] = []
        if not interactive:
            self.lines = [line.strip() for line in stdin.read().splitlines() if line.strip()]

    def require_input(self) -> None:
        """With no terminal and no input, refuse before Telegram sends a code."""
        if self.interactive:
            return
        if not self.phone_arg:
            raise LoginError("no phone number given", "pass --phone +<country><number> when stdin is not a terminal")
        if not self.lines:
            raise LoginError(
                "stdin is not a terminal and gives no login code",
                "run telepi login in a terminal, or pipe the code (and the 2FA password on a second line)",
            )

    def phone(self) -> str:
        return self.phone_arg or self._ask("Phone number (international format): ")

    def code(self) -> str:
        return self._ask("Login code (sent to your Telegram app): ")

    def password(self) -> str:
        return self._ask("Two-step verification password: ")

    def _ask(self, prompt: str) -> str:
        if self.interactive:
            return getpass.getpass(prompt).strip()
        if not self.lines:
            raise LoginError(
                "this account has two-step verification and stdin gives no password",
                "pipe the password on the line after the code, or run telepi login in a terminal",
            )
        return self.lines.pop(0)


async def login(settings: Settings, answers: Answers, say: Callable[[str], None]) -> int:
    client = make_client(settings, receive_updates=False)
    await client.connect()
    try:
        if await client.is_user_authorized():
            me = await client.get_me()
            say(f"{settings.session_name} is already logged in as {_name(me)}; nothing to do.")
            return 0
        answers.require_input()
        phone = answers.phone()
        try:
            sent = await client.send_code_request(phone)
            try:
                me = await client.sign_in(phone=phone, code=answers.code(), phone_code_hash=sent.phone_code_hash)
            except errors.SessionPasswordNeededError:
                me = await client.sign_in(password=answers.password())
        except (errors.PhoneNumberInvalidError, errors.PhoneNumberBannedError) as exc:
            raise LoginError(
                f"Telegram refused the phone number ({exc.message})", "check it and run telepi login again"
            ) from None
        except (errors.PhoneCodeInvalidError, errors.PhoneCodeExpiredError) as exc:
            raise LoginError(
                f"the login code was not accepted ({exc.message})", "run telepi login again for a new code"
            ) from None
        except errors.PasswordHashInvalidError:
            raise LoginError("the two-step verification password is wrong", "run telepi login again") from None
    finally:
        await client.disconnect()
    os.chmod(settings.session_file, 0o600)
    say(f"{settings.session_name} logged in as {_name(me)}; the session file is {settings.session_file} (mode 600).")
    return 0


def _name(user: Any) -> str:
    parts = [getattr(user, "first_name", None) or "", getattr(user, "last_name", None) or ""]
    name = " ".join(p for p in parts if p) or (getattr(user, "username", None) or "?")
    return f"{name} (id {user.id})"
