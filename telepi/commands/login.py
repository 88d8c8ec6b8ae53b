"""``telepi login``: create a session's ``.session`` file, interactively or from a script.

Phone, code and 2FA password are read without echo and never logged or printed. Non-interactive use:
``--phone`` and the code on the first line of stdin (the 2FA password, if any, on the second). With ``--qr``
no code is sent: a logged-in Telegram app scans the QR code printed here (https://core.telegram.org/api/qr-login);
the 2FA password, if any, is asked for (or read from stdin's first line) afterwards.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import io
import os
from collections.abc import Callable
from typing import Any, TextIO

import segno
from telethon import errors

from telepi.config import Settings
from telepi.errors import ConfigError, PassingError, Problem
from telepi.telegram.client import make_client


class LoginError(ConfigError):
    def __init__(self, what: str, fix: str) -> None:
        super().__init__([Problem("", what, fix)])


class Answers:
    """Where the phone, the code and the password come from: the terminal or stdin lines."""

    def __init__(self, phone: str | None, stdin: TextIO, interactive: bool, *, qr: bool = False) -> None:
        self.phone_arg = phone
        self.interactive = interactive
        self.qr = qr
        self.lines: list[str] = []
        if not interactive:
            self.lines = [line.strip() for line in stdin.read().splitlines() if line.strip()]

    def require_input(self) -> None:
        """With no terminal and no input, refuse before Telegram sends a code."""
        if self.interactive or self.qr:  # a QR login sends no code; a 2FA password is asked for when needed
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
    client = make_client(settings, receive_updates=answers.qr)  # the QR's updateLoginToken is an update
    await client.connect()
    try:
        if await client.is_user_authorized():
            me = await client.get_me()
            say(f"{settings.session_name} is already logged in as {_name(me)}; nothing to do.")
            return 0
        answers.require_input()
        if answers.qr:
            me = await _qr_login(client, answers, say)
        else:
            me = await _code_login(client, answers, say)
    finally:
        await client.disconnect()
    os.chmod(settings.session_file, 0o600)
    say(f"{settings.session_name} logged in as {_name(me)}; the session file is {settings.session_file} (mode 600).")
    return 0


async def _code_login(client: Any, answers: Answers, say: Callable[[str], None]) -> Any:
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
            return await client.sign_in(phone=phone, code=answers.code(), phone_code_hash=sent.phone_code_hash)
        except errors.SessionPasswordNeededError:
            return await _two_step(client, answers)
    except (errors.PhoneNumberInvalidError, errors.PhoneNumberBannedError) as exc:
        raise LoginError(
            f"Telegram refused the phone number ({exc.message})", "check it and run telepi login again"
        ) from None
    except (errors.PhoneCodeInvalidError, errors.PhoneCodeExpiredError) as exc:
        raise LoginError(
            f"the login code was not accepted ({exc.message})", "run telepi login again for a new code"
        ) from None


async def _two_step(client: Any, answers: Answers) -> Any:
    try:
        return await client.sign_in(password=answers.password())
    except errors.PasswordHashInvalidError:
        raise LoginError("the two-step verification password is wrong", "run telepi login again") from None


QR_MINUTES = 3  # how long a QR login keeps showing fresh codes before it gives up


async def _qr_login(client: Any, answers: Answers, say: Callable[[str], None]) -> Any:
    """Show a QR code until a logged-in app scans it; each code lasts about 30 s, a new one replaces it."""
    qr = await client.qr_login()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + QR_MINUTES * 60
    while True:
        say(
            "Scan this QR code with the Telegram app of a device where the account is logged in "
            "(Settings > Devices > Link Desktop Device):"
        )
        say(_qr_text(qr.url))
        say(f"or open {qr.url} there; waiting until {qr.expires.astimezone():%H:%M:%S}.")
        remaining = deadline - loop.time()
        try:
            left = (qr.expires - datetime.datetime.now(tz=datetime.UTC)).total_seconds()
            return await qr.wait(timeout=max(1.0, min(left, remaining)))
        except errors.SessionPasswordNeededError:
            return await _two_step(client, answers)
        except TimeoutError:
            if loop.time() >= deadline:
                raise LoginError(
                    f"no device scanned the QR code within {QR_MINUTES} minutes",
                    "run telepi login --qr again, or log in with the code (without --qr)",
                ) from None
            await qr.recreate()


def _qr_text(url: str) -> str:
    """The QR code in text: two rows per line in block characters, readable by a phone's camera."""
    out = io.StringIO()
    segno.make(url, error="l").terminal(out=out, compact=True, border=2)
    return out.getvalue().rstrip("\n")


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
