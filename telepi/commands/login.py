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
from telepi.errors import ConfigError, PassingError, Problem
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
        return self._ask("Login code: ")

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


class CodeFloodWait(PassingError):
    """Telegram asks to wait before it sends another login code: the wait passes by itself."""


async def login(settings: Settings, answers: Answers, say: Callable[[str], None]) -> int:
    new_file = not settings.session_file.exists()
    if new_file:  # Telethon creates it with the umask's mode: it holds the login key, so 0600 from the start
        os.close(os.open(settings.session_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    logged_in = False
    try:
        result = await _login(settings, answers, say)
        logged_in = True
        return result
    finally:
        if new_file and not logged_in:  # no login, no session file: "telepi run" then says to log in
            for leftover in (
                settings.session_file,
                settings.session_file.with_name(settings.session_file.name + "-journal"),
            ):
                leftover.unlink(missing_ok=True)


async def _login(settings: Settings, answers: Answers, say: Callable[[str], None]) -> int:
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
            try:
                sent = await client.send_code_request(phone)
            except errors.FloodWaitError as exc:
                raise CodeFloodWait(
                    f"Telegram asks to wait {_duration(exc.seconds)} before it sends another login code "
                    f"(FLOOD_WAIT_{exc.seconds}): run telepi login again after that, and use the last code "
                    "you received if one arrived"
                ) from None
            say(f"Telegram sent the login code {_delivery(sent.type)}.")
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


# How auth.sendCode delivered the code (https://core.telegram.org/type/auth.SentCodeType): the person
# must know where to look, the Telegram app on another device being the usual and least obvious one.
_DELIVERY = {
    "SentCodeTypeApp": "as a message from 'Telegram' in the app on your other devices",
    "SentCodeTypeSms": "by SMS",
    "SentCodeTypeSmsWord": "by SMS (a word)",
    "SentCodeTypeSmsPhrase": "by SMS (a phrase)",
    "SentCodeTypeCall": "by a phone call that reads it out",
    "SentCodeTypeFlashCall": "by a flash call (the code is the caller's number)",
    "SentCodeTypeMissedCall": "by a missed call (the code is the end of the caller's number)",
    "SentCodeTypeEmailCode": "by email",
    "SentCodeTypeFragmentSms": "through fragment.com (the number is an anonymous one)",
    "SentCodeTypeFirebaseSms": "by SMS",
}


def _delivery(kind: Any) -> str:
    return _DELIVERY.get(type(kind).__name__, f"({type(kind).__name__})")


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 7200:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def _name(user: Any) -> str:
    parts = [getattr(user, "first_name", None) or "", getattr(user, "last_name", None) or ""]
    name = " ".join(p for p in parts if p) or (getattr(user, "username", None) or "?")
    return f"{name} (id {user.id})"
