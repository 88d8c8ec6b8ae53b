"""``telepi run``: one session's clone as a service — logging, signals, sd_notify and the watchdog
around the engine's :func:`~telepi.engine.session.run_session`."""

from __future__ import annotations

import asyncio
import logging
import signal

from telepi.checkpoint.sqlite import SqliteStore
from telepi.config import Settings, load_settings
from telepi.engine.session import Hooks, run_session
from telepi.secret_files import check_permissions
from telepi.service.logs import setup_logging
from telepi.service.notify import notifier
from telepi.service.watchdog import HealthMonitor

log = logging.getLogger("telepi")


def run(session_dir: str, *, strict: bool) -> int:
    settings = load_settings(session_dir)
    setup_logging(
        settings.log_level,
        settings.log_file,
        secrets=[settings.api_hash],
        session=settings.session_name,
        route=settings.route_label,
    )
    for warning in settings.warnings:
        log.warning(warning)
    for warning in check_permissions(settings, strict=strict):
        log.warning(warning)
    store = SqliteStore(settings.shared_db_path)
    try:
        log.info("session %s starting: %s, mode %s", settings.session_name, settings.route_label, settings.mode)
        asyncio.run(_run_until_signalled(settings, store))
    finally:
        store.close()
    return 0


async def _run_until_signalled(settings: Settings, store: SqliteStore) -> None:
    systemd = notifier()
    monitor = HealthMonitor(systemd)
    stop = asyncio.Event()

    def on_signal() -> None:
        log.info("stopping cleanly: finishing the sends in flight, releasing leases", extra={"event": "stopping"})
        systemd.stopping("stopping: finishing the sends in flight, releasing leases")
        stop.set()

    def on_ready() -> None:
        log.info("ready: connected, logged in, chats resolved", extra={"event": "ready"})
        systemd.ready(settings.route_label)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    # READY once connected, logged in and both chats resolved (run_session calls it then).
    hooks = Hooks(ready=on_ready, status=systemd.status, monitor=monitor)
    pinging = asyncio.create_task(monitor.run(), name="watchdog")
    try:
        progress = await run_session(settings, store, stop, hooks=hooks)
    finally:
        pinging.cancel()
    log.info("session %s stopped: %s", settings.session_name, progress.line(), extra={"event": "stopped"})
