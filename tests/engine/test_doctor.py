"""``telepi doctor`` against the sandbox: every check says ok or names the fix; problems exit 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

from telepi.checkpoint import SqliteStore
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi

WORLD: dict[str, Any] = {
    "accounts": [
        {"name": "alice", "phone": "+15550002000", "code": "11111"},
        {"name": "bob", "phone": "+15550002001", "code": "11111"},
        {"name": "dave", "phone": "+15550002002", "code": "11111"},
    ],
    "chats": [
        {
            "name": "source",
            "kind": "supergroup",
            "forum": True,
            "noforwards": True,
            "owner": "alice",
            "members": ["bob", "dave"],
            "topics": [{"title": "News"}],
        },
        {
            "name": "target",
            "kind": "supergroup",
            "forum": True,
            "owner": "alice",
            "admins": {"bob": ["post_messages", "manage_topics"]},
            "members": ["dave"],
        },
        {"name": "broadcast", "kind": "channel", "owner": "alice", "members": ["dave"]},
    ],
}


def doctor(directory: Path) -> subprocess.CompletedProcess[str]:
    return telepi("doctor", directory, cwd=None)


async def session(sb: Sandbox, root: Path, account: str, target: str, **env: str) -> Path:
    directory = await sb.session_dir(
        root / account, account, SOURCE_CHAT=str(sb.chat("source").id), TARGET_CHAT=str(sb.chat(target).id), **env
    )
    os.chmod(directory / ".env", 0o600)
    os.chmod(directory / f"{account}.session", 0o600)
    return directory


async def test_healthy_session_is_all_ok(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directory = await session(sb, tmp_path / "sessions", "bob", "target")
        result = await asyncio.to_thread(doctor, directory)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert not any(line.startswith("PROBLEM") for line in lines)
        assert any("MODE=auto will reupload (protected content)" in line for line in lines)
        assert any("may create topics in the target" in line for line in lines)
        assert any("will be created by the first session that runs" in line for line in lines)
        assert not (tmp_path / "sessions" / "shared").exists()  # a check creates nothing
        SqliteStore(tmp_path / "sessions" / "shared" / "checkpoint.db").close()
        again = await asyncio.to_thread(doctor, directory)
        assert f"ok      checkpoint {tmp_path / 'sessions' / 'shared' / 'checkpoint.db'} is writable" in again.stdout


async def test_problems_name_their_fix_and_exit_1(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        no_topics = await session(sb, tmp_path / "sessions", "dave", "target")
        result = await asyncio.to_thread(doctor, no_topics)
        assert result.returncode == 1
        assert "PROBLEM the source has topics but this account may not create them in the target" in result.stdout
        assert "give it the admin right 'manage topics', or set TARGET_TOPIC" in result.stdout

        cannot_post = await session(sb, tmp_path / "more", "dave", "broadcast", MODE="forward")
        result = await asyncio.to_thread(doctor, cannot_post)
        assert result.returncode == 1
        assert "PROBLEM this account cannot post in target" in result.stdout
        assert "is protected: forwarding is refused — set MODE=auto or MODE=reupload" in result.stdout

        (cannot_post / "dave.session").unlink()
        os.chmod(cannot_post / ".env", 0o644)
        result = await asyncio.to_thread(doctor, cannot_post)
        assert result.returncode == 1
        assert (
            f"PROBLEM no session file {cannot_post / 'dave.session'} — run: telepi login {cannot_post}" in result.stdout
        )
        assert "is readable by other users (mode 644) — run: chmod 600" in result.stdout
