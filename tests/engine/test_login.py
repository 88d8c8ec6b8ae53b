"""``telepi login`` against the sandbox: code, 2FA, scripts, a terminal; secrets never echoed or printed."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from telepi.errors import EX_CONFIG
from telepi.sandbox.sandbox import Sandbox

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
    return subprocess.run(
        [sys.executable, "-m", "telepi", "login", str(directory), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
