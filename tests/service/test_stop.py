"""SIGTERM (``systemctl stop``) ends a real ``telepi run`` promptly with exit 0 whatever the link does:
Telegram gone mid-run while Telethon reconnects, unreachable from the start, or a long flood wait.
A benchmark found two processes that ignored SIGTERM for 30 minutes while Telethon kept reconnecting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from telepi.errors import EX_CONFIG, EX_TEMPFAIL
from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO, telepi_async
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions
from tests.service.test_outage import free_port, wait_for
from tests.unit.test_operator_safety import small_disk

STOP_DEADLINE = 5.0  # systemd's TimeoutStopSec is far longer; a clean stop takes well under a second


def start(directory: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "telepi", "run", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def terminate(process: subprocess.Popen[bytes], log: Path) -> tuple[int, float]:
    """SIGTERM, then the exit code and how long the process took; SIGKILL after the deadline so the
    test fails instead of hanging."""
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        code = await asyncio.to_thread(process.wait, STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"SIGTERM ignored for {STOP_DEADLINE} s:\n{log.read_text()[-3000:]}") from None
    return code, time.monotonic() - sent


def leases_and_state(db: Path) -> tuple[int, str, str]:
    with sqlite3.connect(db) as conn:
        leases = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'processing'").fetchone()[0]
        state, detail = conn.execute("SELECT state, detail FROM sessions").fetchone()
    return int(leases), str(state), str(detail)


def flood_waits(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM flood_waits").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


async def test_sigterm_while_telethon_reconnects_to_a_telegram_gone_away_exits_0_at_once(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    async with Sandbox(world=forum_world(400), state_dir=tmp_path / "state", port=port) as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy")
        process = start(directory, log)
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) >= 20, 60, "the first copies")
            await sb.server.stop()  # Telegram goes away mid-history: Telethon reconnects, again and again
            await asyncio.sleep(3.0)
            code, took = await terminate(process, log)
        finally:
            if process.poll() is None:
                process.kill()
        print(f"SIGTERM during reconnects: exit {code} after {took:.2f} s")
        assert code == 0, log.read_text()[-3000:]
        assert took < STOP_DEADLINE
        assert "Traceback" not in log.read_text()
        leases, state, detail = leases_and_state(tmp_path / "sessions" / "shared" / "checkpoint.db")
        assert (leases, state, detail) == (0, "stopped", "exit 0")

        await sb.server.start()  # Telegram back: a new run finishes the clone, nothing doubled or lost
        process = start(directory, log)
        try:
            whole = len(content(sb.messages("source")))
            await wait_for(lambda: len(content(sb.messages("target"))) >= whole, 120, "the rest copied")
            await asyncio.sleep(1.0)
            code, _ = await terminate(process, log)
        finally:
            if process.poll() is None:
                process.kill()
        assert code == 0
        assert_clone_equal(sb, "source", "target", ordered=False)  # every message once: none doubled or lost


async def test_sigterm_during_the_start_up_connect_to_an_unreachable_telegram_exits_0(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    async with Sandbox(world=forum_world(5), state_dir=tmp_path / "state", port=port) as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy")
        await sb.server.stop()
        process = start(directory, log)
        try:
            await asyncio.sleep(4.0)  # started, connecting: each attempt meets a closed port
            assert process.poll() is None, log.read_text()
            code, took = await terminate(process, log)
        finally:
            if process.poll() is None:
                process.kill()
    print(f"SIGTERM during the start-up connect: exit {code} after {took:.2f} s")
    assert code == 0, log.read_text()[-3000:]
    assert took < STOP_DEADLINE
    assert "Traceback" not in log.read_text()


async def test_sigterm_during_a_long_flood_wait_exits_0_and_gives_the_send_back(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    async with Sandbox(world=forum_world(30), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy")
        for method in ("SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest"):
            sb.faults.inject_error(method, "FLOOD_WAIT_3600", 420, nth=3)  # an hour: SIGTERM comes first
        db = tmp_path / "sessions" / "shared" / "checkpoint.db"
        process = start(directory, log)
        try:
            await wait_for(lambda: flood_waits(db) > 0, 60, "the flood wait")
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGUSR1)  # what each task waits on, to the log: the send sits out the wait
            await wait_for(lambda: "(SIGUSR1)" in log.read_text(), 10, "the task dump")
            await asyncio.sleep(0.5)
            dump = [line for line in log.read_text().splitlines() if "account.py" in line]
            assert any(line.rstrip().endswith(" wait") for line in dump), log.read_text()[-3000:]
            code, took = await terminate(process, log)
        finally:
            if process.poll() is None:
                process.kill()
    print(f"SIGTERM during a flood wait: exit {code} after {took:.2f} s")
    assert code == 0, log.read_text()[-3000:]
    assert took < STOP_DEADLINE
    leases, state, _ = leases_and_state(db)
    assert (leases, state) == (0, "stopped")


async def test_a_checkpoint_that_cannot_be_written_during_the_stop_is_not_exit_0(tmp_path: Path) -> None:
    """The disk under the checkpoint fills while the run follows live, then SIGTERM: the stop's writes
    (leases released, state 'stopped') fail. systemd must not hear 'all is well' (exit 0 was the answer):
    exit 78 with the sentence naming the disk, no traceback; the next start (disk freed) copies what was
    posted meanwhile, and verify finds nothing missing or doubled."""
    log = tmp_path / "run.log"
    with small_disk(tmp_path / "disk", size="2m") as disk:
        db = disk / "checkpoint.db"
        async with Sandbox(world=forum_world(20), state_dir=tmp_path / "state") as sb:
            [directory] = await make_sessions(
                sb,
                tmp_path / "sessions",
                ["bob"],
                LIVE="true",
                MODE="copy",
                LEASE_SECONDS="600",  # heartbeats every 150 s: the stop is the first write to meet the full disk
                SHARED_DB_PATH=str(db),
            )
            whole = len(content(sb.messages("source")))
            process = start(directory, log)
            try:
                await wait_for(lambda: len(content(sb.messages("target"))) >= whole, 60, "the history copied")
                await asyncio.sleep(1.0)
                with contextlib.suppress(OSError), (disk / "filler").open("wb") as filler:
                    filler.write(b"\0" * 4 * 1024 * 1024)
                code, took = await terminate(process, log)
            finally:
                if process.poll() is None:
                    process.kill()
            said = log.read_text()
            print(f"SIGTERM with the checkpoint's disk full: exit {code} after {took:.2f} s")
            assert code == EX_CONFIG, said[-3000:]
            assert "Traceback" not in said
            assert f"the disk holding the checkpoint {db} is full" in said.splitlines()[-1], said[-3000:]
            assert took < STOP_DEADLINE

            (disk / "filler").unlink()
            await sb.post("source", "posted while the session was down")
            again = await telepi_async("run", directory, env={**os.environ, "PYTHONPATH": str(REPO), "LIVE": "false"})
            assert again.returncode == 0, again.stderr[-3000:]
            assert_clone_equal(sb, "source", "target", ordered=True)  # nothing lost, nothing doubled
            verify = await telepi_async("verify", directory, env={**os.environ, "PYTHONPATH": str(REPO)})
            assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_a_checkpoint_locked_past_the_busy_timeout_during_the_stop_exits_75(tmp_path: Path) -> None:
    """Another process holds the checkpoint's write lock when SIGTERM comes: the stop's writes wait SQLite's
    busy timeout (30 s) and fail. That passes by itself: exit 75 with the sentence (before: exit 0)."""
    log = tmp_path / "run.log"
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(
            sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy", LEASE_SECONDS="600"
        )
        db = tmp_path / "sessions" / "shared" / "checkpoint.db"
        whole = len(content(sb.messages("source")))
        process = start(directory, log)
        holder: sqlite3.Connection | None = None
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) >= whole, 60, "the history copied")
            await asyncio.sleep(1.0)
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held until the process has exited
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 90)
        finally:
            if holder is not None:
                holder.close()
            if process.poll() is None:
                process.kill()
    said = log.read_text()
    assert code == EX_TEMPFAIL, said[-3000:]
    assert "Traceback" not in said
    assert f"the checkpoint {db} stayed locked by another process for 30 s" in said.splitlines()[-1], said[-3000:]
