"""The metrics a running session records for `telepi status --prometheus`: bytes its streaming reupload
moved and the flood waits Telegram asked, by method, read from a real run against the sandbox."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO, telepi
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions
from tests.service.test_outage import wait_for


def prometheus(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = telepi("status", directory, "--prometheus", timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(result.stdout)
        for sample in family.samples
    }


async def test_a_running_session_records_its_transfer_bytes_and_flood_waits(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(30, noforwards=True), state_dir=tmp_path / "state") as sb:
        # LEASE_SECONDS=10: a heartbeat (and its pulse) every 2.5 s
        [directory] = await make_sessions(
            sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="auto", LEASE_SECONDS="10"
        )
        sb.faults.inject_error("SendMessageRequest", "FLOOD_WAIT_2", 420, nth=1)
        sb.faults.inject_error("GetHistoryRequest", "FLOOD_WAIT_1", 420, nth=1)
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        stop = asyncio.Event()
        run = asyncio.create_task(run_session(settings, store, stop))
        try:
            expected = len(content(sb.messages("source")))
            await wait_for(lambda: len(content(sb.messages("target"))) >= expected, 90, "the history copied")
            await asyncio.sleep(3)  # one more heartbeat after the last file
            found = await asyncio.to_thread(prometheus, directory)
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)
            store.close()
        assert_clone_equal(sb, "source", "target")
        sizes = [m["media"]["size"] for m in content(sb.messages("source")) if m["media"] and "size" in m["media"]]
    down = found[("telepi_transfer_bytes_total", (("direction", "down"), ("session", "session1")))]
    up = found[("telepi_transfer_bytes_total", (("direction", "up"), ("session", "session1")))]
    print(f"{len(sizes)} files, {sum(sizes)} bytes; recorded down {down:.0f}, up {up:.0f}")
    assert down == up == sum(sizes)  # every file's bytes streamed once each way (thumbnails are not counted)
    floods = {labels: value for (name, labels), value in found.items() if name == "telepi_flood_waits_total"}
    assert floods == {
        (("method", "SendMessage"), ("session", "session1")): 1,
        (("method", "GetHistory"), ("session", "session1")): 1,
    }
