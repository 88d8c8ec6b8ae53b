"""Test-only stand-in for `telepi run` inside the e2e container, installed as an ExecStart drop-in.

Until the engine can run against the sandbox there, this drives the service lifecycle with telepi's real
parts: the session's .env (load_settings, --strict permission check), logging (journald + clone.log),
the shared checkpoint, sd_notify READY/STATUS/STOPPING and the HealthMonitor's watchdog pings.
Signals script the failures the e2e test wants to see systemd handle:

    SIGUSR1  block the event loop (a synchronous sleep): the pings stop, WatchdogSec kills the process
    SIGUSR2  the pipeline stalls (its beacon is no longer touched): the HealthMonitor stops pinging
    SIGTERM  clean stop: STOPPING=1, exit 0

Usage: python service_stub.py SESSION_DIR
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
import time
from pathlib import Path

import cryptg

from telepi.checkpoint.sqlite import SqliteStore
from telepi.config import Settings, load_settings
from telepi.errors import UserFixableError
from telepi.permissions import check_permissions
from telepi.service import notify
from telepi.service.logs import setup_logging
from telepi.service.watchdog import HealthMonitor

log = logging.getLogger("telepi.e2e")
STALL_AFTER = 3.0


def probe_hardening(settings: Settings) -> str:
    """Where this process may write: 'ok' or the errno name, per place."""
    places = {
        "sessions": settings.session_dir / ".probe",
        "venv": Path(sys.prefix) / ".probe",
        "etc": Path("/etc/.telepi-probe"),
        "root_home": Path("/root/.telepi-probe"),
    }
    outcome = []
    for name, path in places.items():
        try:
            path.write_text("x")
            path.unlink()
            outcome.append(f"{name}=ok")
        except OSError as exc:
            outcome.append(f"{name}={errno.errorcode.get(exc.errno or 0, str(exc.errno))}")
    return " ".join(outcome)


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stalled = asyncio.Event()
    monitor = HealthMonitor(notify.notifier())
    pipeline = monitor.beacon("pipeline", stall_after=STALL_AFTER)

    def block_the_loop() -> None:
        log.warning("blocking the event loop", extra={"event": "e2e_block"})
        time.sleep(3600)

    def stall() -> None:
        log.warning("stalling the pipeline", extra={"event": "e2e_stall"})
        stalled.set()

    loop.add_signal_handler(signal.SIGUSR1, block_the_loop)
    loop.add_signal_handler(signal.SIGUSR2, stall)
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def work() -> None:
        while not stalled.is_set():
            pipeline.touch()
            await asyncio.sleep(0.2)
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(work(), name="pipeline"), asyncio.create_task(monitor.run(), name="watchdog")]
    for task in tasks:
        monitor.watch(task)
    notify.ready(f"e2e stand-in: {settings.route_label}")
    log.info("ready", extra={"event": "ready", "msg_id": 5})
    await stop.wait()
    notify.stopping("stopping")
    log.info("stopping cleanly", extra={"event": "stopping"})
    for task in tasks:
        task.cancel()


def main(session_dir: str) -> int:
    try:
        settings = load_settings(session_dir)
        check_permissions(settings, strict=True)
    except UserFixableError as exc:
        print(f"telepi: {exc}", file=sys.stderr)
        return exc.exit_code
    setup_logging(
        settings.log_level,
        settings.log_file,
        secrets=[settings.api_hash],
        session=settings.session_name,
        route=settings.route_label,
    )
    store = SqliteStore(settings.shared_db_path)
    try:
        # cryptg's AES under MemoryDenyWriteExecute=yes: a JIT or W+X mapping would be refused here.
        assert len(cryptg.encrypt_ige(bytes(32), bytes(range(32)), bytes(range(32)))) == 32
        log.info(
            "hardening: %s; uid %d; api hash %s",
            probe_hardening(settings),
            os.getuid(),
            settings.api_hash,  # must come out redacted everywhere
            extra={"event": "hardening_probe"},
        )
        asyncio.run(serve(settings))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
