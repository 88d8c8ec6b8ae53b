"""``telepi web``, and ``WEB_PORT`` in ``telepi run``: the status page over HTTP, read-only.

Two routes, GET only (aiohttp answers 405 to anything else): ``/`` the page (webpage.py) and
``/status.json``, the very document ``telepi status --json`` prints. Each request reads the checkpoint
afresh, read-only, in a thread (the event loop of a running clone never waits on it). There is no
authentication, so it listens on the loopback by default: reach it from elsewhere through ``ssh -L``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from telepi.checkpoint.model import StatusReport
from telepi.commands.status import read_report, report_json, shown
from telepi.commands.webpage import error_page, page
from telepi.errors import UserFixableError

log = logging.getLogger("telepi")

DEFAULT_PORT = 8765
LOOPBACK = "127.0.0.1"
# No script, no frames, no outside requests: the page is plain HTML and its own inline style.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class PortTaken(UserFixableError):
    """``telepi web`` cannot listen where it was told to."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LOCAL_NAMES = {"127.0.0.1", "localhost", "[::1]"}


def make_app(db_path: Path | str, *, local_only: bool = True) -> web.Application:
    """``local_only``: answer only requests addressed to the loopback by name (``Host: 127.0.0.1:8765``, as
    through ``ssh -L``), so a web page that rebinds its own name to 127.0.0.1 cannot read the status."""
    where = shown(db_path)  # a PostgreSQL URL without its password

    @web.middleware
    async def loopback_names(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").lower()
        name = host if host.endswith("]") else host.rsplit(":", 1)[0]  # without the port: [::1]:8765 -> [::1]
        if name not in _LOCAL_NAMES:
            return web.Response(text="this page answers requests to 127.0.0.1 or localhost only\n", status=421)
        return await handler(request)

    async def read() -> tuple[StatusReport | None, str | None]:
        try:
            return await asyncio.to_thread(read_report, db_path), None
        except UserFixableError as exc:  # unreadable for now: say so, and the next refresh tries again
            return None, str(exc)

    async def index(_request: web.Request) -> web.Response:
        report, problem = await read()
        if problem is not None:
            return web.Response(text=error_page(problem), status=503, content_type="text/html", headers=_HEADERS)
        return web.Response(text=page(where, report), content_type="text/html", headers=_HEADERS)

    async def status_json(_request: web.Request) -> web.Response:
        report, problem = await read()
        if problem is not None:
            return web.json_response({"path": where, "error": problem}, status=503, headers=_HEADERS)
        body = report_json(where, report)
        return web.Response(text=body, content_type="application/json", headers=_HEADERS)

    app = web.Application(middlewares=[loopback_names] if local_only else [])
    app.router.add_get("/", index)
    app.router.add_get("/status.json", status_json)
    return app


async def start(db_path: Path | str, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listen on ``host:port`` (0: any free port); the runner to clean up and the port it got.
    OSError when the address is taken or cannot be had."""
    runner = web.AppRunner(make_app(db_path, local_only=is_loopback(host)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=False)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])  # the port it got (port 0: a free one)


async def serve_beside_run(db_path: Path | str, port: int) -> web.AppRunner | None:
    """``WEB_PORT`` in ``telepi run``: the page on the loopback while the session runs. One session per host
    serves it; a port already taken (another session's page, say) is a warning and the clone goes on."""
    try:
        runner, _ = await start(db_path, LOOPBACK, port)
    except OSError as exc:
        why = "is taken (another session on this host serves the page?)" if exc.errno == errno.EADDRINUSE else str(exc)
        log.warning("status page not served: port %d %s; set WEB_PORT in one session's .env only", port, why)
        return None
    log.info("status page on http://%s:%d/ (read-only)", LOOPBACK, port)
    return runner


def serve(db_path: Path | str, host: str, port: int, say: Callable[[str], object] = print) -> int:
    """``telepi web``: serve until SIGINT or SIGTERM, then exit 0."""

    async def main() -> None:
        try:
            runner, got = await start(db_path, host, port)
        except OSError as exc:
            why = "is taken" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror or exc})"
            raise PortTaken(f"port {port} on {host} {why}: choose another with --port.") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        shown_host = f"[{host}]" if ":" in host else host
        say(f"status of {shown(db_path)} on http://{shown_host}:{got}/ (read-only; Ctrl-C stops)")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return 0
