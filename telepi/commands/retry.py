"""``telepi retry``: requeue failed messages; running sessions pick them up."""

from __future__ import annotations

from telepi.checkpoint.sqlite import SqliteStore
from telepi.commands.status import locate_checkpoint
from telepi.errors import ConfigError, Problem


def retry(path: str, *, route: int | None, ids: str | None) -> str:
    """Requeue the failed messages (of one route, or only ``ids``); returns the line to print."""
    wanted = None
    if ids:
        try:
            wanted = [int(part) for part in ids.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(
                [Problem("--ids", f"--ids={ids!r} is not a list of ids", "write e.g. --ids 12,15,40")]
            ) from None
    store = SqliteStore(locate_checkpoint(path), create=False)
    try:
        count = store.retry(route, wanted)
    finally:
        store.close()
    return f"requeued {count} failed message{'s' if count != 1 else ''}; running sessions pick them up"
