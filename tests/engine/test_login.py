"""``telepi login`` against the sandbox: code, 2FA, scripts, a terminal; secrets never echoed or printed."""

from __future__ import annotations

import asyncio
import base64
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from telethon.tl import functions

from telepi.errors import EX_CONFIG
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi

PHONE_BOB, PHONE_CAROL = "+15550001001", "+15550001002"
WORLD: dict[str, Any] = {
    "accounts": [
        {"name": "alice", "phone": "+15550001000", "code": "24680"},
        {"name": "bob", "phone": PHONE_BOB, "code": "13579"},
        {"name": "carol", "phone": PHONE_CAROL, "code": "11223", "password": "correct horse battery"},
    ],
    "chats": [
        {"name": "source", "kind": "channel", "owner": "alice", "members": ["bob", "carol"]},
        {"name": "target", "kind": "channel", "owner": "alice", "admins": {"bob": ["post_messages"]}},
    ],
}
SECRETS = (PHONE_BOB, PHONE_CAROL, "13579", "11223", "correct horse battery")


async def unlogged_session(sb: Sandbox, root: Path, account: str) -> Path:
    directory = await sb.session_dir(
        root / account, account, SOURCE_CHAT=str(sb.chat("source").id), TARGET_CHAT=str(sb.chat("target").id)
    )
    (directory / f"{account}.session").unlink()
    return directory


def login(directory: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return telepi("login", directory, *args, stdin=stdin, cwd=None)


def assert_no_secrets(*texts: str) -> None:
    for secret in SECRETS:
        assert all(secret not in text for text in texts), "a secret was printed"


async def test_scripted_login_with_code_then_already_logged_in(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "bob")
        first = await asyncio.to_thread(login, directory, "--phone", PHONE_BOB, stdin="13579\n")
        assert first.returncode == 0, first.stderr
        assert "bob logged in as" in first.stdout
        assert stat.S_IMODE((directory / "bob.session").stat().st_mode) == 0o600
        again = await asyncio.to_thread(login, directory)
        assert again.returncode == 0 and "already logged in" in again.stdout
        assert_no_secrets(first.stdout, first.stderr, again.stdout, again.stderr)


async def test_scripted_login_with_two_step_password(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "carol")
        missing = await asyncio.to_thread(login, directory, "--phone", PHONE_CAROL, stdin="11223\n")
        assert missing.returncode == EX_CONFIG
        assert "two-step verification and stdin gives no password" in missing.stderr
        done = await asyncio.to_thread(login, directory, "--phone", PHONE_CAROL, stdin="11223\ncorrect horse battery\n")
        assert done.returncode == 0, done.stderr
        assert_no_secrets(missing.stdout, missing.stderr, done.stdout, done.stderr)


async def test_no_input_and_wrong_code_are_exit_78(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "bob")
        empty = await asyncio.to_thread(login, directory, "--phone", PHONE_BOB)
        assert empty.returncode == EX_CONFIG
        assert "stdin is not a terminal and gives no login code" in empty.stderr
        no_phone = await asyncio.to_thread(login, directory, stdin="13579\n")
        assert no_phone.returncode == EX_CONFIG and "pass --phone" in no_phone.stderr
        wrong = await asyncio.to_thread(login, directory, "--phone", PHONE_BOB, stdin="00000\n")
        assert wrong.returncode == EX_CONFIG and "the login code was not accepted" in wrong.stderr
        assert not (directory / "bob.session").exists() or "logged in" not in wrong.stdout
        assert_no_secrets(empty.stderr, no_phone.stderr, wrong.stdout, wrong.stderr)


def _interactive_login(directory: Path, answers: list[str]) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: telepi login on a terminal
        os.execv(sys.executable, [sys.executable, "-m", "telepi", "login", str(directory)])
    seen = b""
    deadline = time.monotonic() + 60
    pending = list(answers)
    answered_at = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            # Answer each prompt once it is shown (getpass has switched echo off by then).
            if pending and seen[answered_at:].rstrip().endswith(b":"):
                os.write(fd, pending.pop(0).encode() + b"\n")
                answered_at = len(seen)
        else:
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


async def test_interactive_login_never_echoes(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "carol")
        code, screen = await asyncio.to_thread(
            _interactive_login, directory, [PHONE_CAROL, "11223", "correct horse battery"]
        )
        assert code == 0, screen
        assert "Phone number" in screen and "Login code" in screen and "Two-step verification password" in screen
        assert "carol logged in as" in screen
        assert_no_secrets(screen)


async def _scan_when_shown(sb: Sandbox, process: subprocess.Popen[str], phone: Any) -> list[str]:
    """Read the QR login's output until its tg://login URL, then accept the token from ``phone``, a logged-in
    client of the account, as the phone app does when it scans the code. Returns the lines read."""
    assert process.stdout is not None
    lines: list[str] = []
    while not any("tg://login?token=" in line for line in lines):
        line = await asyncio.to_thread(process.stdout.readline)
        assert line, "".join(lines) + (process.stderr.read() if process.stderr else "")
        lines.append(line)
    url = next(line for line in lines if "tg://login?token=" in line)
    token = url.split("tg://login?token=")[1].split()[0].rstrip(";.")
    await phone(functions.auth.AcceptLoginTokenRequest(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))))
    return lines


def qr_login(directory: Path, stdin: str = "") -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "telepi", "login", str(directory), "--qr"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    return process


async def test_qr_login_with_a_scan_from_a_logged_in_device(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "bob")
        phone = await sb.client("bob")  # logged in before the code is shown: it lasts 30 s
        process = qr_login(directory)
        shown = await _scan_when_shown(sb, process, phone)
        code = await asyncio.to_thread(process.wait, 60)
        rest = process.stdout.read() if process.stdout else ""
        assert code == 0, rest + (process.stderr.read() if process.stderr else "")
        assert any("▀" in line or "█" in line for line in shown)  # the code itself, drawn in the terminal
        assert "bob logged in as" in rest
        assert stat.S_IMODE((directory / "bob.session").stat().st_mode) == 0o600
        again = await asyncio.to_thread(login, directory)
        assert again.returncode == 0 and "already logged in" in again.stdout


async def test_qr_login_then_the_two_step_password(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "carol")
        phone = await sb.client("carol")  # logged in (its 2FA takes a while) before the code is shown
        process = qr_login(directory, stdin="correct horse battery\n")
        shown = await _scan_when_shown(sb, process, phone)
        code = await asyncio.to_thread(process.wait, 60)
        rest = (process.stdout.read() if process.stdout else "") + (process.stderr.read() if process.stderr else "")
        assert code == 0, rest
        assert "carol logged in as" in rest
        assert_no_secrets("".join(shown), rest)
