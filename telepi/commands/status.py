"""``telepi status``: what the shared checkpoint says, as tables for people or JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from rich.console import Console
from rich.table import Table
from rich.text import Text

from telepi.checkpoint import is_url, open_checkpoint
from telepi.checkpoint.model import Pace, SessionInfo, StatusReport
from telepi.commands.live import Snapshot, eta_text, pace_line, snapshot
from telepi.commands.sessionhealth import ago as _ago
from telepi.commands.sessionhealth import judge
from telepi.errors import NoCheckpoint

DEFAULT_DB = Path("shared") / "checkpoint.db"


def locate_checkpoint(target: str | os.PathLike[str]) -> Path | str:
    """A checkpoint file, a PostgreSQL URL, a session directory (its SHARED_DB_URL, else its SHARED_DB_PATH)
    or a sessions root (shared/checkpoint.db)."""
    if is_url(target):
        return str(target)
    path = Path(target).expanduser().absolute()
    if path.is_dir() and (path / ".env").is_file():
        values = {**dotenv_values(path / ".env"), **os.environ}  # as load_settings reads them
        if values.get("SHARED_DB_URL"):
            return str(values["SHARED_DB_URL"])
        configured = values.get("SHARED_DB_PATH") or "../shared/checkpoint.db"
        return (path / configured).resolve()
    if path.is_dir():
        return path / DEFAULT_DB
    return path


def shown(db_path: Path | str) -> str:
    """The checkpoint's location as it may be printed: a URL without its password."""
    if not is_url(db_path):
        return str(db_path)
    url = urlsplit(str(db_path))
    user = f"{url.username}@" if url.username else ""
    return f"postgresql://{user}{url.netloc.rpartition('@')[2]}{url.path}"


def read_report(db_path: Path | str) -> StatusReport | None:
    """The checkpoint's report, or None when no session has created the file yet."""
    if isinstance(db_path, Path) and not db_path.exists():
        return None
    # status never writes: a read-only file (or a read-only database role) works
    try:
        store = open_checkpoint(db_path, create=False, read_only=True)
    except NoCheckpoint:
        return None  # a database no session has used yet, like a file not created yet
    try:
        return store.report()
    finally:
        store.close()


_WARN = {"stalled": "yellow", "dead": "yellow", "reconnecting": "yellow"}  # passes by itself, or systemd acts


def session_health(session: SessionInfo, now: float) -> str:
    return judge(session, now).text


def _paces_by_account(sessions: list[SessionInfo]) -> list[tuple[str, list[Pace]]]:
    """Each account's lessons once, with the names of its sessions (they share them)."""
    names: dict[int, list[str]] = {}
    paces: dict[int, list[Pace]] = {}
    for session in sessions:
        if session.user_id is not None and session.paces:
            names.setdefault(session.user_id, []).append(session.name)
            paces[session.user_id] = session.paces
    return [(", ".join(names[user]), paces[user]) for user in names]


def report_json(
    db_path: Path | str, report: StatusReport | None, view: Snapshot | None = None, indent: int | None = 2
) -> str:
    """The report with what people see computed for scripts; ``view``: the snapshot already built (--watch)."""
    if report is None:
        return json.dumps({"path": str(db_path), "exists": False, "routes": [], "sessions": [], "failures": []})
    view = view or snapshot(report)
    now = report.generated_at
    data: dict[str, Any] = dataclasses.asdict(report)
    data["exists"] = True
    for route_data, route, line in zip(data["routes"], report.routes, view.routes, strict=True):
        route_data["known"] = route.known
        route_data["finished"] = route.finished
        route_data["filtered"] = route.filtered
        route_data["rate_per_minute"] = line.per_minute
        route_data["eta_seconds"] = line.eta_seconds
    for session_data, session, account in zip(data["sessions"], report.sessions, view.accounts, strict=True):
        session_data["activity"] = account.line()
        session_data["leases_held"] = account.leases
        session_data["wait_error"] = account.wait_error
        session_data["wait_method"] = account.wait_method
        session_data["wait_left_seconds"] = account.wait_left
        session_data["stop_reason"] = account.stop_reason
        session_data["exit_code"] = account.exit_code
        verdict = judge(session, now)
        session_data["health"] = verdict.text
        session_data["health_state"] = verdict.state
        session_data["reconnecting_since"] = verdict.since
        session_data["per_minute"] = session.per_minute
        session_data["needs_action"] = session.needs_action
        session_data["fix"] = session.detail if session.needs_action else None
        for pace_data, pace in zip(session_data["paces"], session.paces, strict=True):
            pace_data["per_minute"] = pace.per_minute
            pace_data["line"] = pace_line(pace)
    return json.dumps(data, indent=indent)


def render(console: Console, db_path: Path | str, report: StatusReport | None, view: Snapshot | None = None) -> None:
    if report is None:
        console.print(_plain(f"No checkpoint yet at {db_path}: no session has run."))
        console.print("Start one with: telepi run sessions/session1   (or: systemctl start telepi@session1)")
        return
    view = view or snapshot(report)
    now = report.generated_at
    console.print(_plain(f"Checkpoint {report.path}"))
    if not report.routes:
        console.print("No routes yet: sessions have started but nothing has been planned.")
    routes = Table(title="Routes", title_justify="left")
    columns = (
        "route",
        "progress",
        "pending",
        "processing",
        "done",
        "failed",
        "skipped",
        "next in order",
        "per min",
        "ETA",
    )
    for column in columns:
        routes.add_column(column, justify="left" if column == "route" else "right")
    for route, line in zip(report.routes, view.routes, strict=True):
        percent = f"{100 * route.finished / route.known:.1f}%" if route.known else "-"
        counts = route.counts
        _row(
            routes,
            route.route.label,
            f"{route.finished}/{route.known} {percent}",
            *(str(counts.get(status, 0)) for status in ("pending", "processing", "done", "failed", "skipped")),
            "-" if route.low_water is None else str(route.low_water),
            "—" if line.per_minute is None else f"{line.per_minute:.1f}",
            eta_text(line.eta_seconds),
        )
    if report.routes:
        console.print(routes)

    leases = [(route.route.label, lease, False) for route in report.routes for lease in route.leases]
    leases += [(route.route.label, lease, True) for route in report.routes for lease in route.expired]
    if leases:
        table = Table(title="Leases", title_justify="left")
        for column in ("route", "message", "session", "held for", "expires", "phase"):
            table.add_column(column)
        for label, lease, expired in leases:
            expires = f"expired {_ago(-lease.expires_in)} ago, awaiting takeover" if expired else _ago(lease.expires_in)
            _row(
                table,
                label,
                str(lease.source_msg_id),
                lease.session,
                _ago(lease.age_seconds),
                expires,
                "sending" if lease.sending else "preparing",
            )
        console.print(table)

    skipped = [(route.route.label, entry) for route in report.routes for entry in route.skipped]
    if skipped:
        table = Table(title="Skipped by reason", title_justify="left")
        for column in ("route", "reason", "messages", "latest ids"):
            table.add_column(column, justify="right" if column == "messages" else "left")
        for label, entry in skipped:
            _row(table, label, entry.reason or "-", str(entry.count), ", ".join(map(str, entry.latest)))
        console.print(table)
        for route in report.routes:
            if route.filtered:
                console.print(
                    f"{route.filtered} of route {route.route.id}'s messages left out by its filters "
                    f"(telepi retry --filtered {route.route.id} after widening them)",
                    markup=False,
                )

    if report.sessions:
        table = Table(title="Sessions", title_justify="left")
        for column in ("session", "host:pid", "state", "last heartbeat", "copied", "per min", "leases"):
            table.add_column(column)
        for session, account in zip(report.sessions, view.accounts, strict=True):
            verdict = judge(session, now)
            _row(
                table,
                session.name,
                f"{session.host}:{session.pid}",
                verdict.text,
                f"{_ago(now - session.last_seen)} ago",
                str(session.done_total),
                f"{session.per_minute:.1f}",
                str(account.leases),
                style="bold red" if session.needs_action else _WARN.get(verdict.state),
            )
        console.print(table)
        for session in report.sessions:
            if session.needs_action:  # a table cell may cut the fix: say it in full once more
                fix = session.detail or session.state
                console.print(
                    Text.assemble((clean(f"{session.name} needs you"), "bold red"), clean(f": {fix}")), soft_wrap=True
                )
        for names, paces in _paces_by_account(report.sessions):
            for pace in paces:
                console.print(_plain(f"{names}: {pace_line(pace)}"), soft_wrap=True)
    else:
        console.print("No session has registered yet.")

    if report.failures:
        table = Table(title="Latest failures", title_justify="left")
        for column in ("route", "message", "status", "attempts", "when", "error"):
            table.add_column(column)
        labels = {route.route.id: route.route.label for route in report.routes}
        for failure in report.failures:
            when = f"{_ago(now - failure.at)} ago" if failure.at else "-"
            _row(
                table,
                labels.get(failure.route_id, str(failure.route_id)),
                str(failure.source_msg_id),
                failure.status,
                str(failure.attempts),
                when,
                failure.error,
            )
        console.print(table)


# Chat and topic titles, texts and errors come from Telegram, chosen by whoever owns the chats: shown as
# plain text, never read as rich markup, and control characters (escapes, carriage returns) made visible.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    code: f"\\u{code:04x}" for code in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def clean(value: str) -> str:
    return value.translate(_CONTROL)


def _plain(value: str) -> Text:
    return Text(clean(value))


def _row(table: Table, *cells: str, style: str | None = None) -> None:
    table.add_row(*(_plain(cell) for cell in cells), style=style)
