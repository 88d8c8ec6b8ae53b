"""``telepi login`` when Telegram holds back: a flood wait on sending the code is a sentence with the wait
(exit 75), the person is told where the code went, and a failed login leaves no ``.session`` file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from telethon.tl import functions

from telepi.errors import EX_CONFIG, EX_TEMPFAIL
from telepi.sandbox.sandbox import Sandbox
from tests.engine.test_login import PHONE_BOB, WORLD, assert_no_secrets, login, unlogged_session


async def test_a_flood_wait_on_sending_the_code_says_how_long_and_exits_75(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "bob")
        sb.faults.inject_error(functions.auth.SendCodeRequest, "FLOOD_WAIT_1800", 420, times=1)
        result = await asyncio.to_thread(login, directory, "--phone", PHONE_BOB, stdin="13579\n")
        assert result.returncode == EX_TEMPFAIL, result.stderr
        assert "Traceback" not in result.stderr
        assert "Telegram asks to wait 30 minutes before it sends another login code (FLOOD_WAIT_1800)" in (
            result.stderr
        )
        assert not (directory / "bob.session").exists()
        assert_no_secrets(result.stdout, result.stderr)


async def test_login_says_where_the_code_went_and_a_wrong_code_leaves_no_session_file(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await unlogged_session(sb, tmp_path, "bob")
        wrong = await asyncio.to_thread(login, directory, "--phone", PHONE_BOB, stdin="00000\n")
        assert wrong.returncode == EX_CONFIG and "Traceback" not in wrong.stderr
        assert "Telegram sent the login code as a message from 'Telegram' in the app on your other devices" in (
            wrong.stdout
        )
        assert not (directory / "bob.session").exists()
        right = await asyncio.to_thread(login, directory, "--phone", PHONE_BOB, stdin="13579\n")
        assert right.returncode == 0, right.stderr
        assert (directory / "bob.session").stat().st_mode & 0o777 == 0o600
