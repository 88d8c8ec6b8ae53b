"""SIGHUP (``systemctl reload``) on a real ``telepi run``: the routes file is read again, the routes stop
cleanly and start again in the same process; a broken file is refused with its sentence and the routes
go on; SIGTERM still ends it with exit 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from telepi.sandbox.sandbox import Sandbox
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
