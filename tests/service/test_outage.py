"""A real outage: the sandbox's port closed under a running session, the real Telethon client reconnecting.
The watchdog keeps pinging through the reconnect grace and stops after it; `telepi status` says
`reconnecting since`; everything comes back when the port opens again. The grace is shortened
(2.5 s for the documented 300 s) so the test does not take minutes; the outage is twice the grace,
as a 6-minute outage is for the 5-minute grace."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.engine.session import Hooks, run_session
from telepi.errors import SessionStopped
from telepi.sandbox.sandbox import Sandbox
from telepi.service.notify import Notifier
from telepi.service.watchdog import HealthMonitor
from telepi.telegram.client import transport_up
from tests.cli import REPO, telepi
from tests.engine.clonecheck import content
from tests.engine.test_clone import forum_world, make_sessions
from tests.service.conftest import NotifySocket

GRACE = 2.5  # stands for HealthMonitor's 300 s
OUTAGE = 2 * GRACE  # stands for the 6-minute outage (well past the grace)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def status_json(path: Path) -> dict[str, dict[str, object]]:
    result = telepi("status", path, "--json", timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return {s["name"]: s for s in json.loads(result.stdout)["sessions"]}


async def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_is_connected_stays_true_while_telethon_reconnects_the_transport_does_not(tmp_path: Path) -> None:
    # The fact the watchdog used to miss: Telethon keeps is_connected() true through a reconnect.
    async with Sandbox(world=forum_world(3), state_dir=tmp_path / "state", port=free_port()) as sb:
        client = await sb.client("bob", connection_retries=-1, retry_delay=0.2)
        assert client.is_connected() and transport_up(client)
        await sb.server.stop()
        await wait_for(lambda: not transport_up(client), 10, "the transport to drop")
        await asyncio.sleep(1.0)  # several reconnect attempts against the closed port
        assert client.is_connected() and not transport_up(client)
        await sb.server.start()
        await wait_for(lambda: transport_up(client), 15, "the reconnect")
        assert (await client.get_me()).id == sb.account("bob").id  # and requests go through again


async def test_an_outage_past_the_grace_stops_the_pings_and_status_says_reconnecting(
    tmp_path: Path, notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state", port=free_port()) as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        monitor = HealthMonitor(Notifier(), interval=0.2, reconnect_grace=GRACE)
        ready, stop = asyncio.Event(), asyncio.Event()
        pinging = asyncio.create_task(monitor.run())
        run = asyncio.create_task(run_session(settings, store, stop, hooks=Hooks(ready=ready.set, monitor=monitor)))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            await wait_for(lambda: len(content(sb.messages("target"))) == 10, 60, "the history copied")
            assert len(await asyncio.to_thread(notify_socket.texts, 0.5)) >= 2  # healthy: pinging

            with caplog.at_level(logging.INFO, logger="telepi.service.watchdog"):
                await sb.server.stop()  # the port closes, every connection is cut
                down_at = time.monotonic()
                await asyncio.sleep(1.5)  # the session records the outage within a second
                during = await asyncio.to_thread(status_json, directory)
                await asyncio.sleep(OUTAGE - 1.5)
                outage = await asyncio.to_thread(notify_socket.messages, 0.01)
                await sb.server.start()  # same port: the client's reconnect loop gets through
                up_at = time.monotonic()
                await wait_for(lambda: monitor.check().ok, 20, "the watchdog to find Telegram again")
                await asyncio.sleep(1.0)
                resumed = await asyncio.to_thread(notify_socket.messages, 0.01)
                after = await asyncio.to_thread(status_json, directory)
        finally:
            stop.set()
            await asyncio.wait_for(run, 30)
            pinging.cancel()
            store.close()

    pings = [t - down_at for t, text in outage if text == "WATCHDOG=1"]
    assert [t for t in pings if t < GRACE - 0.5], pings  # still healthy inside the grace
    assert not [t for t in pings if t > GRACE + 0.5], pings  # and silent after it, until Telegram is back
    print(f"last ping {max(pings):.2f} s into the outage (grace {GRACE} s), outage {up_at - down_at:.1f} s")
    session = during["session1"]
    assert session["health_state"] == "reconnecting", session
    assert str(session["health"]).startswith("reconnecting since "), session
    assert isinstance(session["reconnecting_since"], float)
    assert [t for t, text in resumed if text == "WATCHDOG=1" and t > up_at], "pings resume after the reconnect"
    assert after["session1"]["health_state"] == "running", after
    assert after["session1"]["reconnecting_since"] is None
    [unhealthy] = [r for r in caplog.records if getattr(r, "event", None) == "unhealthy"]
    assert "Telegram disconnected for" in unhealthy.getMessage()


async def test_a_revoked_login_shows_revoked_in_status_and_its_metrics(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(5), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        ready = asyncio.Event()
        run = asyncio.create_task(run_session(settings, store, asyncio.Event(), hooks=Hooks(ready=ready.set)))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            await wait_for(lambda: len(content(sb.messages("target"))) == 5, 60, "the history copied")
            sb.revoke("bob")  # "terminate other sessions" on bob's phone
            with pytest.raises(SessionStopped):
                await asyncio.wait_for(run, 60)  # the live poll meets the revocation within POLL_SECONDS
        finally:
            run.cancel()
            store.close()
    session = (await asyncio.to_thread(status_json, directory))["session1"]
    assert session["health_state"] == "revoked", session
    assert f"telepi login {directory}" in str(session["health"])
    result = telepi("status", directory, "--prometheus", timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    states = {
        sample.labels["telepi_session_state"]: sample.value
        for family in text_string_to_metric_families(result.stdout)
        if family.name == "telepi_session_state"
        for sample in family.samples
    }
    assert states["revoked"] == 1 and sum(states.values()) == 1, states
