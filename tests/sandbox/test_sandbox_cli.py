"""``telepi sandbox serve | dump | post`` as separate processes, with a Telethon client watching live."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from telethon import TelegramClient, events
from telethon.crypto import rsa
from telethon.sessions import MemorySession

from telepi.sandbox.sandbox import API_HASH, API_ID, login
from telepi.sandbox.world.world import World
from tests.cli import REPO, telepi
from tests.sandbox.worldkit import base_world

CLI = [sys.executable, "-m", "telepi.sandbox.cli", "sandbox"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


async def read_until_ready(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            raise AssertionError("serve exited early:\n" + "".join(seen))
        seen.append(line)
        if line.startswith("ready"):
            return "".join(seen)


async def test_serve_post_and_dump_while_a_client_listens(tmp_path: Path) -> None:
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(base_world()))
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--world", str(world_file), "--state", str(state),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO, env={**os.environ},
    )  # fmt: skip
    try:
        banner = await read_until_ready(proc)
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        assert f"TG_DC=127.0.0.1:{port}" in banner and "TG_SERVER_KEY=" in banner
        assert "11111" not in banner and "correct horse" not in banner  # no codes or passwords printed

        rsa.add_key((state / "server_key.pem").read_text(), old=False)
        session = MemorySession()
        session.set_dc(2, "127.0.0.1", port)
        client = TelegramClient(session, API_ID, API_HASH)
        await asyncio.wait_for(client.connect(), 20)
        try:
            reader = World(state / "world.sqlite")
            try:
                await asyncio.wait_for(login(client, reader.account("dave")), 20)
            finally:
                reader.close()
            got: asyncio.Queue[Any] = asyncio.Queue()
            client.add_event_handler(got.put, events.NewMessage())
            await client.get_dialogs()

            posted = await asyncio.to_thread(
                run, "post", "--state", str(state), "--chat", "forum", "--text", "from cli", "--topic", "2"
            )
            assert posted.returncode == 0, posted.stderr
            msg_id = int(posted.stdout)
            event = await asyncio.wait_for(got.get(), 20)
            assert (event.message.id, event.message.text) == (msg_id, "from cli")
            assert event.message.reply_to.reply_to_msg_id == 2

            dumped = await asyncio.to_thread(run, "dump", "--state", str(state), "--chat", "forum", "--json")
            assert dumped.returncode == 0, dumped.stderr
            data = json.loads(dumped.stdout)
            assert data["messages"][-1]["text"] == "from cli" and data["messages"][-1]["topic"] == 2
            assert [t["title"] for t in data["topics"]] == ["General", "News", "Talk"]
            table = await asyncio.to_thread(run, "dump", "--state", str(state), "--chat", "forum")
            assert "from cli" in table.stdout and "photo" in table.stdout
        finally:
            await client.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert not (state / "control.sock").exists()
    # Without a running server, post says how to start one.
    refused = run("post", "--state", str(state), "--chat", "forum", "--text", "x")
    assert refused.returncode == 1 and "telepi sandbox serve --state" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dump", "--state", "{tmp}/none", "--chat", "x"], "no sandbox state"),
        (["serve", "--state", "{tmp}/s", "--world", "{tmp}/missing.json"], "does not exist"),
    ],
)
def test_cli_errors_are_one_clear_sentence(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize(
    "verb",
    [
        ["dump", "--chat", "source"],
        ["post", "--chat", "source", "--text", "x"],
        ["account", "--as", "alice", "--standing", "banned"],
    ],
)
def test_the_sandbox_verbs_work_through_the_telepi_command(tmp_path: Path, verb: list[str]) -> None:
    # They once crashed there with AttributeError ('handler'): the tests only called telepi.sandbox.cli.
    result = telepi("sandbox", verb[0], "--state", tmp_path, *verb[1:], timeout=30, cwd=REPO)
    assert "Traceback" not in result.stderr and result.returncode != 0
    assert str(tmp_path) in result.stderr  # one sentence naming the state directory with no sandbox in it
