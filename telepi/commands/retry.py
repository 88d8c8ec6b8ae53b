"""``telepi retry``: requeue failed messages, or skipped ones by reason; running sessions pick them up."""

from __future__ import annotations

from telepi.checkpoint import Checkpoint, open_checkpoint
from telepi.checkpoint.model import FILTERED, NEVER_COPYABLE
from telepi.commands.status import locate_checkpoint
from telepi.errors import ConfigError, Problem


def retry(path: str, *, route: int | None, ids: str | None, skipped: str | None = None, filtered: bool = False) -> str:
    """Requeue the failed messages (of one route, or only ``ids``), or with ``skipped`` the skipped ones
    (``""``: every reason but those that can never be copied and the filtered ones; else a comma-separated
    list of reasons), or with ``filtered`` those the route's filters left out (sessions judge them again);
    returns the line to print."""
    wanted = None
    if ids:
        try:
            wanted = [int(part) for part in ids.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(
                [Problem("--ids", f"--ids={ids!r} is not a list of ids", "write e.g. --ids 12,15,40")]
            ) from None
    store = open_checkpoint(locate_checkpoint(path), create=False)
    try:
        if filtered:
            left_out = [r for r in _present(store, route) if r.startswith(FILTERED)]
            by_reason = store.retry_skipped(route, wanted, left_out, exclude=()) if left_out else {}
            if not by_reason:
                return "no filtered messages to requeue"
            total = sum(by_reason.values())
            return (
                f"requeued {total} filtered message{_s(total)}; running sessions judge them by their current "
                "filters: what passes is copied (after later copies already sent), the rest is filtered again"
            )
        if skipped is None:
            count = store.retry(route, wanted)
            return f"requeued {count} failed message{_s(count)}; running sessions pick them up"
        reasons = [reason.strip() for reason in skipped.split(",") if reason.strip()] or None
        never = (*NEVER_COPYABLE, *(r for r in _present(store, route) if r.startswith(FILTERED)))
        by_reason = store.retry_skipped(route, wanted, reasons, exclude=() if reasons else never)
        if not by_reason:
            return _nothing_skipped(store, route, reasons)
    finally:
        store.close()
    total = sum(by_reason.values())
    detail = ", ".join(f"{reason or '-'} {count}" for reason, count in sorted(by_reason.items()))
    return f"requeued {total} skipped message{_s(total)} ({detail}); running sessions pick them up"


def route_id(path: str, route: str | None) -> int | None:
    """``--route``: a route id, or a route's name in the routes file (its checkpoint label starts with it)."""
    if not route:
        return None
    if route.isdigit():
        return int(route)
    store = open_checkpoint(locate_checkpoint(path), create=False, read_only=True)
    try:
        routes = store.routes()
    finally:
        store.close()
    found = [r.id for r in routes if r.label.startswith(f"{route}: ")]
    if len(found) != 1:
        names = ", ".join(sorted({r.label.partition(": ")[0] for r in routes if ": " in r.label})) or "none"
        fix = f"pass a route id from telepi status, or one of the names in the checkpoint: {names}"
        raise ConfigError([Problem("--route", f"--route {route} names no route in the checkpoint", fix)])
    return found[0]


def _present(store: Checkpoint, route: int | None) -> dict[str, int]:
    """Skip reasons present (of one route or all) and how many rows have each."""
    present: dict[str, int] = {}
    for route_report in store.report(failures=0, skipped_ids=0).routes:
        if route is None or route_report.route.id == route:
            for entry in route_report.skipped:
                present[entry.reason] = present.get(entry.reason, 0) + entry.count
    return present


def _nothing_skipped(store: Checkpoint, route: int | None, reasons: list[str] | None) -> str:
    """Why nothing matched, with the reasons that are there (a mistyped reason is the usual cause)."""
    present = _present(store, route)
    wanted = f" with reason {', '.join(reasons)}" if reasons else f" (other than {', '.join(NEVER_COPYABLE)}, filtered)"
    there = ", ".join(f"{reason or '-'} {count}" for reason, count in sorted(present.items())) or "none"
    return f"no skipped messages{wanted} to requeue; skipped by reason: {there}"


def _s(count: int) -> str:
    return "s" if count != 1 else ""
