"""``telepi run`` and ``telepi doctor`` as processes when something is in the way: a second process of the
session, Telegram unreachable, the source chat lost between two runs. Each ends in one sentence and its
exit code (78 a person acts, 75 it passes by itself), never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from telepi.errors import EX_CONFIG, EX_TEMPFAIL
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi_async
from tests.engine.test_clone import forum_world, make_sessions
from tests.unit.test_operator_safety import small_disk


async def in_thread(*args: str) -> subprocess.CompletedProcess[str]:
    return await telepi_async(*args, cwd=None)


async def test_a_second_run_of_a_running_session_exits_78_and_doctor_works_beside_it(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(400), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], SEND_INTERVAL="0.2", MODE="copy")
        for secret in (directory / ".env", directory / "session1.session"):
            secret.chmod(0o600)
        first = subprocess.Popen(
            [sys.executable, "-m", "telepi", "run", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):  # registered once connected and the chats resolved: then it copies
                if any(not m["service"] for m in sb.messages("target")):
                    break
                await asyncio.sleep(0.1)
            second = await in_thread("run", str(directory))
            assert second.returncode == EX_CONFIG, second.stderr
            assert "Traceback" not in second.stderr
            assert f"session session1 is already running here (pid {first.pid}): stop it first" in second.stderr
            doctor = await in_thread("doctor", str(directory))
            assert "Traceback" not in doctor.stdout + doctor.stderr
            assert f"note    session session1 is running (pid {first.pid})" in doctor.stdout
            assert "ok      logged in as user id" in doctor.stdout
            assert "source 'Source forum'" in doctor.stdout and doctor.returncode == 0, doctor.stdout + doctor.stderr
            assert first.poll() is None  # the running session was left alone
        finally:
            first.kill()
            first.wait()


@contextlib.contextmanager
def hanging_up_server() -> Iterator[int]:
    """A TCP port that accepts and closes at once: Telegram's address answering nothing (the handshake
    reads end early, IncompleteReadError)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = listener.accept()
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join()
        listener.close()


async def test_telegram_unreachable_at_start_exits_75_naming_the_address(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(5), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false")
    with hanging_up_server() as port:
        env = (directory / ".env").read_text()
        env = "\n".join(f"TG_DC=127.0.0.1:{port}" if line.startswith("TG_DC=") else line for line in env.splitlines())
        (directory / ".env").write_text(env + "\n")
        result = await in_thread("run", str(directory))
    assert result.returncode == EX_TEMPFAIL, result.stderr
    assert "Traceback" not in result.stderr
    assert f"Telegram at 127.0.0.1:{port} cannot be reached" in result.stderr
    assert "telepi starts again by itself" in result.stderr
    assert result.stderr.count("\n") <= 4 and "Server closed" not in result.stderr  # one sentence, not pages


async def test_a_restart_after_the_account_lost_the_source_exits_78_naming_source_chat(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(20), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(
            sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy", AUTO_CREATE_TOPICS="false"
        )
        first = await in_thread("run", str(directory))
        assert first.returncode == 0, first.stderr
        assert "session session1 stopped: copied 20 in this run (" in (directory / "clone.log").read_text()
        sb.world.remove_member(sb.chat("source").id, sb.account("bob").id)
        again = await in_thread("run", str(directory))
        assert again.returncode == EX_CONFIG, again.stderr
        assert "Traceback" not in again.stderr
        assert "SOURCE_CHAT" in again.stderr and "Telegram answered CHANNEL_PRIVATE" in again.stderr


async def test_a_full_disk_mid_run_ends_the_process_with_the_sentence(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", size="2m") as disk:
        async with Sandbox(world=forum_world(20), state_dir=tmp_path / "state") as sb:
            [directory] = await make_sessions(
                sb, tmp_path / "sessions", ["bob"], MODE="copy", LEASE_SECONDS="10", SHARED_DB_PATH=str(disk / "c.db")
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "telepi", "run", str(directory)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                for _ in range(300):  # live: once everything is copied it only heartbeats and waits
                    if sum(not m["service"] for m in sb.messages("target")) >= 20:
                        break
                    await asyncio.sleep(0.1)
                with contextlib.suppress(OSError), (disk / "filler").open("wb") as filler:
                    filler.write(b"\0" * 4 * 1024 * 1024)
                code = await asyncio.to_thread(process.wait, 60)  # the heartbeat (every 2.5 s) meets it first
            finally:
                if process.poll() is None:
                    process.kill()
            stderr = process.stderr.read() if process.stderr else ""
        assert code == EX_CONFIG, stderr
        assert "Traceback" not in stderr
        assert f"the disk holding the checkpoint {disk / 'c.db'} is full" in stderr


async def test_a_machine_whose_clock_runs_ten_minutes_fast_still_clones(tmp_path: Path) -> None:
    """Telegram corrects a client's clock through bad_msg_notification (its msg_ids carry the time); a VPS
    without NTP once hung before ready here with no message at all."""
    fast = tmp_path / "fast-clock"
    fast.mkdir()
    (fast / "sitecustomize.py").write_text(  # the whole telepi process sees a clock 10 minutes ahead
        "import time\n_real = time.time\ntime.time = lambda: _real() + 600\n"
    )
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        env = {**os.environ, "PYTHONPATH": str(fast)}
        result = await telepi_async("run", directory, env=env, cwd=None)
        assert result.returncode == 0, result.stderr
        copies = [m for m in sb.messages("target") if not m["service"]]
        assert len(copies) == len([m for m in sb.messages("source") if not m["service"]]) > 0
