"""The watchdog logic: what counts as healthy, and pings on a real NOTIFY_SOCKET from a real event loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from telepi.service.notify import Notifier
from telepi.service.watchdog import HealthMonitor, watchdog_interval
from tests.service.conftest import NotifySocket


class Clock:
    """Time that moves only when the test says so, for the pure health decisions."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def monitor_with_clock(**kwargs: object) -> tuple[HealthMonitor, Clock]:
    clock = Clock()
    return HealthMonitor(Notifier(), interval=30.0, clock=clock, **kwargs), clock  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_interval_is_half_of_watchdog_usec(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, pid=4242) == expected


def test_a_beacon_without_progress_becomes_a_problem_after_stall_after() -> None:
    monitor, clock = monitor_with_clock()
    worker = monitor.beacon("worker", stall_after=300)
    clock.now += 299
    assert monitor.check().ok
    worker.touch()
    clock.now += 299
    assert monitor.check().ok
    clock.now += 2
    assert monitor.check().problems == ("worker: no progress for 301 s (limit 300 s)",)


def test_a_declared_flood_wait_is_healthy_until_it_overruns() -> None:
    monitor, clock = monitor_with_clock()
    worker = monitor.beacon("worker", stall_after=60)
    with worker.waiting(3600, "flood_wait"):
        clock.now += 3600 + 60
        assert monitor.check().ok  # the wait plus stall_after of slack
        clock.now += 1
        assert monitor.check().problems == ("worker: flood_wait overran its end by 61 s",)
    assert monitor.check().ok  # leaving the wait counts as progress
    clock.now += 61
    assert not monitor.check().ok


def test_an_open_ended_wait_and_a_closed_beacon_are_healthy() -> None:
    monitor, clock = monitor_with_clock()
    live = monitor.beacon("live", stall_after=10)
    history = monitor.beacon("history", stall_after=10)
    history.close()
    with live.waiting(None, "idle"):
        clock.now += 86400
        assert monitor.check().ok


def test_telegram_may_reconnect_within_the_grace_period() -> None:
    up = [True]
    monitor, clock = monitor_with_clock(connected=lambda: up[0], reconnect_grace=120)
    assert monitor.check().ok
    up[0] = False
    assert monitor.check().ok
    clock.now += 120
    assert monitor.check().ok
    clock.now += 1
    assert monitor.check().problems == ("Telegram disconnected for 121 s (limit 120 s)",)
    up[0] = True
    assert monitor.check().ok
    up[0] = False
    clock.now += 60
    assert monitor.check().ok  # a new outage starts a new grace period


def test_a_failing_connection_check_is_a_problem() -> None:
    def broken() -> bool:
        raise RuntimeError("client gone")

    monitor, _ = monitor_with_clock(connected=broken)
    assert monitor.check().problems == ("connection check failed: RuntimeError: client gone",)


async def test_a_task_that_died_is_a_problem_for_good_one_that_ended_is_not() -> None:
    monitor, _ = monitor_with_clock()

    async def crash() -> None:
        raise ValueError("bad item")

    async def finish() -> None:
        return None

    async def forever() -> None:
        await asyncio.Event().wait()

    finished, died, cancelled = (
        asyncio.create_task(c(), name=n) for c, n in [(finish, "f"), (crash, "worker"), (forever, "c")]
    )
    for task in (finished, died, cancelled):
        monitor.watch(task)
    assert monitor.check().ok  # all still running
    cancelled.cancel()
    await asyncio.wait([finished, died, cancelled])
    assert monitor.check().problems == ("task worker died: ValueError: bad item",)
    assert monitor.check().problems == ("task worker died: ValueError: bad item",)


async def test_run_returns_at_once_without_a_watchdog(notify_socket: NotifySocket) -> None:
    await asyncio.wait_for(HealthMonitor(Notifier(), interval=None).run(), timeout=1)
    assert notify_socket.texts(timeout=0.1) == []


async def test_run_pings_every_interval_while_healthy(notify_socket: NotifySocket) -> None:
    monitor = HealthMonitor(Notifier(), interval=0.1)
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.55)
    task.cancel()
    pings = await asyncio.to_thread(notify_socket.messages, 0.1)
    assert [text for _, text in pings] == ["WATCHDOG=1"] * len(pings)
    assert 4 <= len(pings) <= 7
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(pings)]
    assert all(0.08 <= gap <= 0.3 for gap in gaps), gaps


async def test_run_stops_pinging_while_unhealthy_and_resumes(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = HealthMonitor(Notifier(), interval=0.1)
    worker = monitor.beacon("worker", stall_after=0.3)
    task = asyncio.create_task(monitor.run())
    with caplog.at_level(logging.INFO, logger="telepi.service.watchdog"):
        await asyncio.sleep(0.25)
        healthy = await asyncio.to_thread(notify_socket.texts, 0.01)
        await asyncio.sleep(0.5)  # the worker never touches its beacon: stalled from 0.3 s on
        stalled = await asyncio.to_thread(notify_socket.messages, 0.01)
        worker.touch()
        await asyncio.sleep(0.25)
        task.cancel()
        resumed = await asyncio.to_thread(notify_socket.texts, 0.05)
    assert len(healthy) >= 2
    assert len(stalled) <= 2  # at most the pings due before the stall limit
    assert len(resumed) >= 2
    events = [(r.getMessage().split(":")[0], getattr(r, "event", None)) for r in caplog.records]
    assert events == [
        ("unhealthy, not pinging the watchdog", "unhealthy"),
        ("healthy again; watchdog pings resumed", "healthy"),
    ]
    assert "worker: no progress for" in caplog.records[0].getMessage()


async def test_a_blocked_event_loop_simply_fails_to_ping(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = HealthMonitor(Notifier(), interval=0.1, lag_warning=0.3)
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.2)
    blocked_at = time.monotonic()
    time.sleep(0.6)  # a synchronous call on the loop: nothing else runs, the monitor included
    unblocked_at = time.monotonic()
    await asyncio.sleep(0.25)
    task.cancel()
    pings = await asyncio.to_thread(notify_socket.messages, 0.05)
    assert not [t for t, _ in pings if blocked_at < t < unblocked_at]
    assert [t for t, _ in pings if t >= unblocked_at]  # pings resume once the loop runs again
    [lag] = [r for r in caplog.records if getattr(r, "event", None) == "loop_lag"]
    assert lag.getMessage().startswith("event loop was blocked for 0.")
    assert monitor.worst_lag >= 0 and lag.levelno == logging.WARNING


async def test_a_dead_task_stops_the_pings(notify_socket: NotifySocket) -> None:
    monitor = HealthMonitor(Notifier(), interval=0.05)

    async def crash() -> None:
        await asyncio.sleep(0.1)
        raise ConnectionError("lost")

    worker = asyncio.create_task(crash(), name="worker")
    monitor.watch(worker)
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.2)
    notify_socket.texts(timeout=0.01)  # drain the pings sent before the crash
    await asyncio.sleep(0.3)
    task.cancel()
    assert notify_socket.texts(timeout=0.05) == []
    assert monitor.check().problems == ("task worker died: ConnectionError: lost",)
