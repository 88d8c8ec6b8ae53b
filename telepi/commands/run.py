"""``telepi run``: one session's clone as a service — logging, signals, sd_notify and the watchdog
around the engine's :func:`~telepi.engine.session.run_session`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from telepi.checkpoint import Checkpoint, open_store
from telepi.config import Settings, load_settings
from telepi.engine.session import Hooks, run_session
from telepi.errors import UserFixableError
from telepi.secret_files import check_permissions
from telepi.service.logs import set_routes, setup_logging, under_systemd
from telepi.service.notify import notifier
from telepi.service.taskdump import dump_tasks
from telepi.service.terminal import progress_display
from telepi.service.watchdog import HealthMonitor

log = logging.getLogger("telepi")


class AlreadyRunning(UserFixableError):
    """A second process for one session. Exit 78, not 75: systemd never starts a unit again while its old
    process still runs (a restart waits for the stop), so a second live process is always a second start
    by hand, and restarting it would only repeat this."""


def running_pid(store: Checkpoint, session: str) -> int | None:
    """The pid of a live telepi process of this session on this host, if another one is running."""
    found = store.session_process(session)
    if found is None:
        return None
    host, pid, state = found
    if host != socket.gethostname() or pid == os.getpid() or state not in ("running", "flood_wait"):
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None  # it died without a clean stop
    except OSError:
        return pid  # hidden from us (another user, ProtectProc): alive all the same
    return pid if b"telepi" in command else None  # a reused pid is not ours


def refuse_second_process(store: Checkpoint, settings: Settings) -> None:
    pid = running_pid(store, settings.session_name)
    if pid is not None:
        raise AlreadyRunning(
            f"session {settings.session_name} is already running here (pid {pid}): stop it first "
            f"(systemctl stop telepi@{settings.session_name}, or kill {pid}) — two processes cannot share "
            "one .session file."
        )


def run(session_dir: str, *, strict: bool) -> int:
    settings = load_settings(session_dir)
    setup_logging(
        settings.log_level,
        settings.log_file,
        secrets=[settings.api_hash, *filter(None, [urlsplit(settings.shared_db_url).password])],
        session=settings.session_name,
        route=_shown_routes(settings),
    )
    for warning in settings.warnings:
        log.warning(warning)
    for warning in check_permissions(settings, strict=strict):
        log.warning(warning)
    store = open_store(settings)
    try:
        refuse_second_process(store, settings)
        reloaded: Settings | None = settings
        while reloaded is not None:  # SIGHUP: the routes stopped cleanly; start them again as now configured
            settings = reloaded
            set_routes(_shown_routes(settings))  # the journal's TELEPI_ROUTE follows the routes running now
            for route in settings.all_routes:
                log.info("session %s starting: %s, mode %s", settings.session_name, _named(route), route.mode)
            reloaded = asyncio.run(_run_until_signalled(settings, store))
    finally:
        store.close()
    return 0


def _named(route: Settings) -> str:
    return f"route {route.route_name}: {route.route_label}" if route.route_name else route.route_label


def _shown_routes(settings: Settings) -> str:
    """What the journal's route field, systemd's status and the progress bar name: the route, or the routes."""
    if not settings.routes:
        return settings.route_label
    mine = [route.route_name for route in settings.all_routes if settings.works(route)]
    return f"{len(mine)} route{'s' if len(mine) != 1 else ''}: {', '.join(mine)}"


def _reread(settings: Settings) -> Settings | None:
    """The session's configuration read again for a reload, or None (and why, in the log) when it is
    invalid: the routes running now go on, nothing is stopped for a typo."""
    try:
        fresh = load_settings(settings.session_dir)
    except UserFixableError as exc:
        log.error("reload refused, the routes go on as they were: %s", exc, extra={"event": "reload_refused"})
        return None
    if (fresh.shared_db_path, fresh.shared_db_url) != (settings.shared_db_path, settings.shared_db_url):
        log.warning("reload: a new SHARED_DB_PATH or SHARED_DB_URL takes effect at the next start only")
    return fresh


def _one_line(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A background task's error nobody awaited (Telethon's reconnects after the run gave up, say): a debug
    line in the log, not asyncio's traceback on the terminal; what ended the run was said already."""
    error = context.get("exception")
    detail = f"{type(error).__name__}: {error}" if error is not None else ""
    log.debug("background: %s %s", context.get("message", ""), detail)


async def _run_until_signalled(settings: Settings, store: Checkpoint) -> Settings | None:
    """Runs until SIGINT/SIGTERM (None) or a SIGHUP with a valid configuration (the new settings)."""
    systemd = notifier()
    monitor = HealthMonitor(systemd)
    stop = asyncio.Event()
    reload: list[Settings] = []

    def on_reload() -> None:
        fresh = _reread(settings)
        if fresh is None or stop.is_set():
            return
        log.info("reloading: stopping the routes cleanly to start them again", extra={"event": "reloading"})
        systemd.send("RELOADING=1", "STATUS=reloading the routes")
        reload.append(fresh)
        stop.set()

    def on_signal() -> None:
        log.info("stopping cleanly: finishing the sends in flight, releasing leases", extra={"event": "stopping"})
        systemd.stopping("stopping: finishing the sends in flight, releasing leases")
        stop.set()

    shown = [_shown_routes(settings)]  # the chats' ids until they are resolved, then their titles

    def on_ready() -> None:
        log.info("ready: connected, logged in, chats resolved", extra={"event": "ready"})
        systemd.ready(shown[0])

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_one_line)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)  # where a session that does nothing sits
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    # READY once connected, logged in and both chats resolved (run_session calls it then).
    pinging = asyncio.create_task(monitor.run(), name="watchdog")
    page = None
    if settings.web_port is not None:
        from telepi.commands.web import serve_beside_run

        page = await serve_beside_run(settings.shared_db_url or settings.shared_db_path, settings.web_port)
    terminal = sys.stderr.isatty() and not under_systemd()
    try:
        # Named by the chats' titles once resolved (Hooks.named); ids say little to the operator meanwhile.
        with progress_display(f"{settings.session_name}: connecting", terminal) as show:

            def on_named(label: str) -> None:
                shown[0] = label
                show.name(label)

            hooks = Hooks(ready=on_ready, status=systemd.status, monitor=monitor, progress=show, named=on_named)
            progress = await run_session(settings, store, stop, hooks=hooks)
    finally:
        pinging.cancel()
        if page is not None:
            await page.cleanup()
    if reload:
        log.info("session %s reloading: %s", settings.session_name, progress.summary(), extra={"event": "reloaded"})
        return reload[0]
    log.info("session %s stopped: %s", settings.session_name, progress.summary(), extra={"event": "stopped"})
    return None
