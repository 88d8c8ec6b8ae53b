"""``telepi retry``: requeue failed messages, or skipped ones by reason; running sessions pick them up."""

from __future__ import annotations

from telepi.checkpoint import Checkpoint, open_checkpoint
from telepi.checkpoint.model import NEVER_COPYABLE
from telepi.commands.status import locate_checkpoint
from telepi.errors import ConfigError, Problem


def retry(path: str, *, route: int | None, ids: str | None, skipped: str | None = None) -> str:
    """Requeue the failed messages (of one route, or only ``ids``), or with ``skipped`` the skipped ones
    (``""``: every reason but those that can never be copied; else a comma-separated list of reasons);
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
        if skipped is None:
            count = store.retry(route, wanted)
            return f"requeued {count} failed message{_s(count)}; running sessions pick them up"
        reasons = [reason.strip() for reason in skipped.split(",") if reason.strip()] or None
        by_reason = store.retry_skipped(route, wanted, reasons, exclude=() if reasons else NEVER_COPYABLE)
        if not by_reason:
            return _nothing_skipped(store, route, reasons)
    finally:
        store.close()
    total = sum(by_reason.values())
    detail = ", ".join(f"{reason or '-'} {count}" for reason, count in sorted(by_reason.items()))
    return f"requeued {total} skipped message{_s(total)} ({detail}); running sessions pick them up"


def _nothing_skipped(store: Checkpoint, route: int | None, reasons: list[str] | None) -> str:
    """Why nothing matched, with the reasons that are there (a mistyped reason is the usual cause)."""
    present: dict[str, int] = {}
    for route_report in store.report(failures=0, skipped_ids=0).routes:
        if route is None or route_report.route.id == route:
            for entry in route_report.skipped:
                present[entry.reason] = present.get(entry.reason, 0) + entry.count
    wanted = f" with reason {', '.join(reasons)}" if reasons else f" (other than {', '.join(NEVER_COPYABLE)})"
    there = ", ".join(f"{reason or '-'} {count}" for reason, count in sorted(present.items())) or "none"
    return f"no skipped messages{wanted} to requeue; skipped by reason: {there}"


def _s(count: int) -> str:
    return "s" if count != 1 else ""
