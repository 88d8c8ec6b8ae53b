"""``telepi run`` as a process against the sandbox: login problems are exit 78 with the fix named."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from telepi.errors import EX_CONFIG
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi
from tests.engine.test_clone import forum_world, make_sessions


def run(directory: Path) -> subprocess.CompletedProcess[str]:
    return telepi("run", directory, cwd=None)


async def test_not_logged_in_session_exits_78_naming_telepi_login(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(5), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false")
        (directory / "session1.session").unlink()
        os.chmod(directory / ".env", 0o644)
        result = await _in_thread(run, directory)
        assert result.returncode == EX_CONFIG, result.stderr
        assert f"session session1 is not logged in: run  telepi login {directory}" in result.stderr
        assert f"{directory / '.env'} is readable by other users" in result.stderr  # a warning, not a refusal
        assert (tmp_path / "sessions" / "shared" / "checkpoint.db").is_file()
        log = (directory / "clone.log").read_text()
        api_hash = next(
            line.split("=", 1)[1]
            for line in (directory / ".env").read_text().splitlines()
            if line.startswith("TG_API_HASH=")
        )
        assert "not logged in" in log and api_hash not in log + result.stderr


async def test_unknown_source_chat_exits_78_naming_the_key(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(5), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false")
        env = (directory / ".env").read_text().replace(f"SOURCE_CHAT={sb.chat('source').id}", "SOURCE_CHAT=@nosuchchat")
        (directory / ".env").write_text(env)
        result = await _in_thread(run, directory)
        assert result.returncode == EX_CONFIG, result.stderr
        assert "SOURCE_CHAT='@nosuchchat' cannot be found by this account" in result.stderr


def leases_held(checkpoint: Path) -> int:
    """Messages still leased, read from the checkpoint file as another process would."""
    with sqlite3.connect(f"file:{checkpoint}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM messages WHERE status = 'processing'").fetchone()[0])


async def _in_thread(function, *args):  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(function, *args)


async def test_target_the_account_cannot_post_to_stops_with_78(tmp_path: Path) -> None:
    world = forum_world(5)
    world["chats"].append({"name": "broadcast", "kind": "channel", "owner": "alice", "members": ["bob"]})
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        env = (directory / ".env").read_text()
        env = env.replace(f"TARGET_CHAT={sb.chat('target').id}", f"TARGET_CHAT={sb.chat('broadcast').id}")
        (directory / ".env").write_text(env)
        result = await _in_thread(run, directory)
        assert result.returncode == EX_CONFIG, result.stderr
        assert (
            "TARGET_CHAT: Telegram answered CHAT_WRITE_FORBIDDEN: the account cannot post in the chat" in result.stderr
        )
        assert leases_held(tmp_path / "sessions" / "shared" / "checkpoint.db") == 0  # released on the way out


async def test_under_systemd_ready_status_watchdog_and_a_clean_stop(tmp_path: Path) -> None:
    import signal
    import socket

    async with Sandbox(world=forum_world(30), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy")
        notify_path = tmp_path / "notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify_path))
        listener.setblocking(False)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
        process = subprocess.Popen(
            [sys.executable, "-m", "telepi", "run", str(directory)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        received: list[str] = []

        async def collect(until: str, timeout: float = 30.0) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not any(until in message for message in received):
                assert loop.time() < deadline, f"no {until!r} in {received}"
                try:
                    received.append(listener.recv(4096).decode())
                except BlockingIOError:
                    await asyncio.sleep(0.05)

        try:
            await collect("READY=1")
            await collect("WATCHDOG=1")
            await collect("STATUS=copied")
            for _ in range(300):  # READY comes before the copying: wait for the first copies
                if any(not m["service"] for m in sb.messages("target")):
                    break
                await asyncio.sleep(0.1)
            assert any(not m["service"] for m in sb.messages("target"))
            process.send_signal(signal.SIGTERM)
            await collect("STOPPING=1")
            code = await asyncio.to_thread(process.wait, 60)
        finally:
            if process.poll() is None:
                process.kill()
            listener.close()
        assert code == 0, process.stderr.read() if process.stderr else ""
        assert leases_held(tmp_path / "sessions" / "shared" / "checkpoint.db") == 0
