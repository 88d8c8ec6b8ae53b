"""``telepi routes``: the routes a session works, with their state in the checkpoint; ``telepi routes check``
validates the routes file (every problem one sentence naming the route and the key, exit 78)."""

from __future__ import annotations

from telepi.checkpoint.model import RouteReport
from telepi.commands.status import locate_checkpoint, read_report, shown
from telepi.config import Settings, load_settings

STATES = ("done", "pending", "processing", "failed")


def check(session_dir: str) -> str:
    settings = load_settings(session_dir)  # a ConfigError lists every problem, exit 78
    if settings.routes_file is None:
        return f"no routes file: the one route is the .env's, {settings.route_label}"
    lines = [f"{len(settings.all_routes)} routes in {settings.routes_file}, valid:"]
    lines += [f"  {_describe(settings, route)}" for route in settings.all_routes]
    return "\n".join(lines)


def listing(session_dir: str) -> str:
    settings = load_settings(session_dir)
    db_path = locate_checkpoint(session_dir)
    report = read_report(db_path)
    reports = report.routes if report is not None else []
    lines = [f"routes of session {settings.session_name} (checkpoint {shown(db_path)}):"]
    for route in settings.all_routes:
        lines.append(f"  {_describe(settings, route)}")
        found = _find(route, reports)
        if found is None:
            lines.append("    not started (no session has opened it yet)")
            continue
        counts = ", ".join(f"{found.counts.get(state, 0)} {state}" for state in STATES)
        skipped = found.counts.get("skipped", 0)
        lines.append(
            f"    route {found.route.id}: {counts}, {found.filtered} filtered, {skipped - found.filtered} skipped "
            f"otherwise; {found.finished}/{found.known} finished"
        )
    return "\n".join(lines)


def _describe(settings: Settings, route: Settings) -> str:
    who = "every session" if route.route_sessions is None else "sessions " + ", ".join(sorted(route.route_sessions))
    mine = "" if settings.works(route) else f" (not for {settings.session_name})"
    name = route.route_name or "(.env)"
    order = "topic" if route.ordered_by_topic else str(route.ordered).lower()
    return (
        f"{name}: {route.route_label}, mode {route.mode}, ordered {order}, live {str(route.live).lower()}; {who}{mine}"
    )


def _find(route: Settings, reports: list[RouteReport]) -> RouteReport | None:
    """The route's row: by its chats' ids when the file gives ids, else by the name its label starts with."""
    for report in reports:
        ids = (report.route.source_chat, report.route.target_chat)
        if ids == (str(route.source_chat.value), str(route.target_chat.value)):
            return report
        if route.route_name and report.route.label.startswith(f"{route.route_name}: "):
            return report
    return None
