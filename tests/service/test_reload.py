"""SIGHUP (``systemctl reload``) on a real ``telepi run``: the routes file is read again, the routes stop
cleanly and start again in the same process; a broken file is refused with its sentence and the routes
go on; SIGTERM still ends it with exit 0."""

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

from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world
from tests.service.test_outage import wait_for
from tests.service.test_stop import leases_and_state, start, terminate


def world() -> dict[str, Any]:
    spec = forum_world(30)
    spec["chats"].append({"name": "second", "kind": "supergroup", "owner": "alice", "members": ["bob"]})
    return spec


def route(name: str, source: int, target: int) -> str:
    return f'[[routes]]\nname = "{name}"\nsource = {source}\ntarget = {target}\nmode = "copy"\n'


async def test_sighup_picks_up_a_new_route_and_refuses_a_broken_file(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    async with Sandbox(world=world(), state_dir=tmp_path / "state") as sb:
        source, target, second = (sb.chat(name).id for name in ("source", "target", "second"))
        root = tmp_path / "sessions"
        (root / "shared").mkdir(parents=True)
        routes = root / "shared" / "routes.toml"
        routes.write_text(route("forum", source, target))
        directory = await sb.session_dir(root / "bob", "bob", SEND_INTERVAL="0", READ_INTERVAL="0")
        whole = len(content(sb.messages("source")))
        process = start(directory, log)
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) >= whole, 60, "the first route copied")
            assert content(sb.messages("second")) == []

            routes.write_text(route("forum", source, target) + route("flat", source, second))
            process.send_signal(signal.SIGHUP)
            await wait_for(lambda: len(content(sb.messages("second"))) >= whole, 60, "the new route copied")
            assert process.poll() is None

            routes.write_text(route("forum", source, target) + 'modee = "copy"\n')
            process.send_signal(signal.SIGHUP)
            await wait_for(lambda: "reload refused" in log.read_text(), 10, "the refusal")
            await sb.post("source", "after the refused reload")  # both routes still follow live
            await wait_for(lambda: len(content(sb.messages("second"))) == whole + 1, 30, "the live post")
            await wait_for(lambda: len(content(sb.messages("target"))) == whole + 1, 30, "the live post")
            await asyncio.sleep(1.0)
            code, _ = await terminate(process, log)
        finally:
            if process.poll() is None:
                process.kill()
        text = log.read_text()
        assert code == 0, text[-3000:]
        assert "Traceback" not in text
        assert "route 'forum': modee is not a route key: did you mean mode" in text
        assert text.count("reloading: stopping the routes cleanly") == 1
        assert_clone_equal(sb, "source", "target")
        assert [m["text"] for m in content(sb.messages("second"))] == [
            m["text"] for m in content(sb.messages("source"))
        ]
        leases, state, _ = leases_and_state(root / "shared" / "checkpoint.db")
        assert (leases, state) == (0, "stopped")


JOURNAL_CAPTURE = """
import json, os
from systemd import journal

_init = journal.JournalHandler.__init__


def _capturing(self, *args, **kwargs):
    # systemd-python's own hook: the entry telepi's handler builds, written to a file instead of journald
    _init(self, *args, **kwargs)

    def send(message, **fields):
        with open(os.environ["TELEPI_TEST_JOURNAL"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"MESSAGE": message, **{k: str(v) for k, v in fields.items()}}) + "\\n")

    self.send = send


journal.JournalHandler.__init__ = _capturing
"""


async def test_after_a_reload_the_journal_names_the_routes_running_now_and_each_route_its_own(tmp_path: Path) -> None:
    pytest.importorskip("systemd.journal", reason="systemd-python (telepi[journald]) is not installed")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(JOURNAL_CAPTURE)
    entries = tmp_path / "journal.jsonl"
    async with Sandbox(world=world(), state_dir=tmp_path / "state") as sb:
        source, target, second = (sb.chat(name).id for name in ("source", "target", "second"))
        root = tmp_path / "sessions"
        (root / "shared").mkdir(parents=True)
        routes = root / "shared" / "routes.toml"
        routes.write_text(route("forum", source, target))
        directory = await sb.session_dir(root / "bob", "bob", SEND_INTERVAL="0", READ_INTERVAL="0")
        whole = len(content(sb.messages("source")))
        process = subprocess.Popen(
            [sys.executable, "-m", "telepi", "run", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": f"{hook}:{REPO}",
                "INVOCATION_ID": "0" * 32,  # as systemd starts it: logs go to the journal
                "TELEPI_TEST_JOURNAL": str(entries),
            },
        )
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) >= whole, 60, "the first route copied")
            routes.write_text(route("forum", source, target) + route("flat", source, second))
            process.send_signal(signal.SIGHUP)
            await wait_for(lambda: len(content(sb.messages("second"))) >= whole, 60, "the new route copied")
            code, _ = await terminate(process, tmp_path / "none.log")
        finally:
            if process.poll() is None:
                process.kill()
    assert code == 0
    lines = [json.loads(line) for line in entries.read_text().splitlines()]
    reload = next(i for i, entry in enumerate(lines) if entry["MESSAGE"].startswith("reloading:"))
    before, after = lines[:reload], lines[reload + 1 :]

    def route_of(entries: list[dict[str, str]], starting: str) -> set[str]:
        return {entry.get("TELEPI_ROUTE", "") for entry in entries if entry["MESSAGE"].startswith(starting)}

    assert route_of(before, "session bob starting") == {"1 route: forum"}
    assert route_of(after, "session bob starting") == {"2 routes: forum, flat"}  # before: still "1 route: forum"
    assert route_of(after, "session bob stopped") == {"2 routes: forum, flat"}
    planned = [entry for entry in after if entry["MESSAGE"].startswith("planned ")]
    assert {entry["TELEPI_ROUTE"] for entry in planned} == {"flat"}, planned  # the new route's own lines
    assert {entry["TELEPI_ROUTE"] for entry in before if entry["MESSAGE"].startswith("planned ")} == {"forum"}
    assert all(entry.get("TELEPI_SESSION") == "bob" for entry in lines)
    assert route_of(after, "ready:") == {"2 routes: forum, flat"}  # the session's line, not its last route's
