"""``telepi status --watch``: the status snapshot (commands/live.py) again every few seconds, with rates
measured by the watcher itself — redrawn in place on a terminal (rich Live), one block of plain lines per
interval otherwise (a log, a pipe, ``watch``-less scripts), one JSON document per line with ``--json``.
Ctrl-C ends it with exit 0."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from telepi.checkpoint.model import StatusReport
from telepi.commands.live import RateWindow, Snapshot, eta_text, snapshot
from telepi.commands.status import _plain, clean, read_report, report_json

DEFAULT_SECONDS = 2.0


def route_text(line: Snapshot, index: int) -> str:
    route = line.routes[index]
    rate = "—" if route.per_minute is None else f"{route.per_minute:.1f}/min"
    eta = eta_text(route.eta_seconds)
    return (
        f"route {route.id} {route.label}: {route.done}/{route.total} done, {route.failed} failed, "
        f"{route.filtered} filtered · {rate} · ETA {eta}"
    )


def plain_lines(view: Snapshot) -> list[str]:
    """One snapshot as lines: each route, then each session with its activity, leases and paces."""
    at = time.strftime("%H:%M:%S", time.localtime(view.at))
    lines = [f"{at} {route_text(view, index)}" for index in range(len(view.routes))]
    for account in view.accounts:
        lines.append(f"{at} {account.session}: {account.line()} · leases held: {account.leases}")
        lines += [f"{at} {account.session}: {pace}" for pace in account.paces]
    if not view.routes and not view.accounts:
        lines.append(f"{at} no routes and no sessions yet")
    return [clean(line) for line in lines]


def live_view(view: Snapshot, every: float) -> RenderableType:
    at = time.strftime("%H:%M:%S", time.localtime(view.at))
    routes = Table(title=f"Routes at {at} (every {every:g}s, Ctrl-C ends)", title_justify="left")
    for column in ("route", "done / total", "failed", "filtered", "per min", "ETA"):
        routes.add_column(column, justify="left" if column == "route" else "right")
    for route in view.routes:
        routes.add_row(
            _plain(f"{route.id} {route.label}"),
            f"{route.done}/{route.total}",
            str(route.failed),
            str(route.filtered),
            "—" if route.per_minute is None else f"{route.per_minute:.1f}",
            eta_text(route.eta_seconds),
        )
    accounts = Table(title="Sessions", title_justify="left")
    for column in ("session", "doing", "leases"):
        accounts.add_column(column, justify="right" if column == "leases" else "left")
    for account in view.accounts:
        doing = "\n".join([account.line(), *account.paces])
        style = "yellow" if account.state == "flood-wait" else "bold red" if account.exit_code == 78 else None
        accounts.add_row(_plain(account.session), _plain(doing), str(account.leases), style=style)
    return Group(routes, accounts)


def watch(
    db_path: Path | str,
    shown_path: str,
    every: float = DEFAULT_SECONDS,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    out = out or sys.stdout
    window = RateWindow()

    def take() -> tuple[StatusReport | None, Snapshot | None]:
        report = read_report(db_path)
        return report, (snapshot(report, window) if report is not None else None)

    try:
        if as_json:
            while True:
                report, view = take()
                print(report_json(shown_path, report, view, indent=None), file=out, flush=True)
                sleep(every)
        elif out.isatty():
            console = Console(file=out)
            with Live(console=console, auto_refresh=False, transient=False) as live:
                while True:
                    report, view = take()
                    shown: RenderableType = (
                        live_view(view, every) if view else Text(clean(f"No checkpoint yet at {shown_path}"))
                    )
                    live.update(shown, refresh=True)
                    sleep(every)
        else:
            while True:
                report, view = take()
                lines = plain_lines(view) if view else [clean(f"no checkpoint yet at {shown_path}")]
                print("\n".join(lines), file=out, flush=True)
                sleep(every)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a watch ends
