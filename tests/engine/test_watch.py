"""``telepi status --watch`` as a process beside a real ``telepi run`` held in a flood wait: the wait shows with
its error, method, end and time left, on a terminal (a pseudo-terminal) and as plain lines, and Ctrl-C ends
the watch with exit 0; ``--json`` carries the same fields; the stopped session's exit code is shown."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi
from tests.engine.clonecheck import content
from tests.engine.test_clone import make_sessions
from tests.engine.test_ordered_sharing import channel_world

WAIT = 900  # seconds Telegram asks for: far longer than the test
WAITING = re.compile(r"waiting on FLOOD_WAIT for SendMessage until (\d\d:\d\d) \((\d+)m (\d\d)s left\)")


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "telepi", *args]


def status_json(root: Path) -> dict[str, Any]:
    result = telepi("status", root, "--json", timeout=60, cwd=None)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def drain(fd: int, into: bytearray) -> None:
    """Read a pseudo-terminal until its process closed it (EIO on Linux)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into += chunk


async def wait_until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def watch_until_shown(command: list[str], count: int, *, tty: bool) -> tuple[str, int, str]:
    """Run the watcher until ``WAITING`` matched ``count`` times, then Ctrl-C (SIGINT): its output, exit code
    and stderr."""
    env = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm"}
    if tty:
        leader, follower = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE, env=env
        )
        os.close(follower)
    else:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    output = b""
    deadline = time.monotonic() + 60
    try:
        while len(WAITING.findall(output.decode(errors="replace"))) < count:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            if tty:
                chunk = await asyncio.to_thread(os.read, leader, 65536)
            else:
                assert process.stdout is not None
                chunk = await asyncio.wait_for(process.stdout.read(65536), 30)
            assert chunk, output.decode(errors="replace")
            output += chunk
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
        if tty:
            os.close(leader)
    assert process.stderr is not None
    return output.decode(errors="replace"), code, (await process.stderr.read()).decode()


async def test_watch_shows_a_flood_wait_with_its_method_and_time_left(tmp_path: Path) -> None:
    async with Sandbox(world=channel_world(12, {"text": 100}), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy", LIVE="false")
        sb.faults.inject_error("SendMessageRequest", f"FLOOD_WAIT_{WAIT}", 420, nth=4)
        root = tmp_path / "sessions"
        # telepi run on a terminal: its bar is read (and drained) from a pseudo-terminal all along
        leader, follower = pty.openpty()
        run = await asyncio.create_subprocess_exec(
            *argv("run", str(directory)),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
        )
        os.close(follower)
        bar = bytearray()
        draining = asyncio.create_task(asyncio.to_thread(drain, leader, bar))
        try:
            await wait_until(
                lambda: status_json(root)["sessions"][:1] and status_json(root)["sessions"][0]["wait_method"]
            )
            assert len(content(sb.messages("target"))) == 3  # the fourth send was refused: the run sits it out

            data = status_json(root)
            [session] = data["sessions"]
            assert session["health_state"] == "flood-wait"
            assert (session["wait_error"], session["wait_method"]) == ("FLOOD_WAIT", "SendMessage")
            assert WAIT - 60 < session["wait_left_seconds"] <= WAIT
            assert WAITING.fullmatch(session["activity"]), session["activity"]
            assert session["leases_held"] == sum(
                1 for lease in data["routes"][0]["leases"] if lease["session"] == "session1"
            )
            [route] = data["routes"]
            assert route["counts"]["done"] == 3 and route["known"] - route["finished"] == 9  # (+1: a service message)
            shown = f"{route['finished']}/{route['known']}"
            assert "rate_per_minute" in route and "eta_seconds" in route

            for tty in (False, True):  # plain lines through a pipe, rich Live on a terminal
                output, code, errors = await watch_until_shown(argv("status", str(root), "--watch", "0.5"), 2, tty=tty)
                assert code == 0 and "Traceback" not in errors, errors
                until, minutes, seconds = WAITING.findall(output)[-1]
                left = int(minutes) * 60 + int(seconds)
                assert WAIT - 120 < left <= WAIT, output
                # the time it ends, as a clock on this machine shows it (a minute's rounding either way)
                end = session["wait_until"]
                assert until in {time.strftime("%H:%M", time.localtime(end + d)) for d in (-60, 0, 60)}
                assert shown in output

            # --watch --json: one document a line, the same fields
            process = await asyncio.create_subprocess_exec(
                *argv("status", str(root), "--watch", "0.5", "--json"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert process.stdout is not None
            first = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
            second = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 30) == 0
            assert first["sessions"][0]["wait_method"] == second["sessions"][0]["wait_method"] == "SendMessage"
            assert second["sessions"][0]["wait_left_seconds"] <= first["sessions"][0]["wait_left_seconds"]
        finally:
            if run.returncode is None:
                run.send_signal(signal.SIGTERM)  # ends the wait at once (README: Stopping)
            assert await asyncio.wait_for(run.wait(), 60) == 0
            await asyncio.wait_for(draining, 30)
            os.close(leader)
        shown_bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bar.decode(errors="replace"))  # colours, cursor moves
        assert re.search(rf"{shown} +\d+ msg/min .*flood-wait \d+s on SendMessage", shown_bar), shown_bar[-2000:]
        assert "Traceback" not in shown_bar
        [stopped] = status_json(root)["sessions"]
        assert (stopped["health_state"], stopped["exit_code"], stopped["activity"]) == (
            "stopped",
            0,
            "stopped (exit 0)",
        )


async def test_run_without_a_terminal_logs_one_progress_line_a_minute(tmp_path: Path) -> None:
    async with Sandbox(world=channel_world(20, {"text": 100}), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy", LIVE="false")
        run = await asyncio.create_subprocess_exec(
            *argv("run", str(directory)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _, err = await asyncio.wait_for(run.communicate(), 120)
        assert run.returncode == 0, err.decode()
        assert len(content(sb.messages("target"))) == 20
    log = (directory / "clone.log").read_text()
    assert len(re.findall(r"progress: copied \d+", log)) == 1, log  # a run under a minute: the first line only
    assert b"\r" not in err and b"\x1b[" not in err  # no bar, no cursor codes in a log


async def test_the_bar_on_a_terminal_names_the_chats_by_their_titles(tmp_path: Path) -> None:
    """The .env names the chats by id; the operator wants to read what is copying: once resolved, the
    bar shows the chats' titles (before: ``-1001500000001 -> -1001500000002``)."""
    async with Sandbox(world=channel_world(12, {"text": 100}), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy", LIVE="false")
        source, target = sb.chat("source").id, sb.chat("target").id
        leader, follower = pty.openpty()
        run = await asyncio.create_subprocess_exec(
            *argv("run", str(directory)),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
        )
        os.close(follower)
        shown = bytearray()
        try:
            await asyncio.to_thread(drain, leader, shown)
            assert await asyncio.wait_for(run.wait(), 60) == 0
        finally:
            if run.returncode is None:
                run.kill()
            os.close(leader)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))
    bars = [line for line in screen.replace("\r", "\n").splitlines() if "msg/min" in line]
    # its last state: 12 copies and a service message, all finished (before: 0/?, a run shorter than 2 s)
    assert bars and re.search(r"Source -> Target +━+ +13/13 ", bars[-1]), screen[-2000:]
    assert not [line for line in bars if str(source) in line or str(target) in line], bars  # no ids, ever
