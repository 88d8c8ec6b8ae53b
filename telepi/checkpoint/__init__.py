"""The shared checkpoint: leases, progress and topic mapping for every session on the host (SQLite)
or across hosts (PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from telepi.checkpoint.model import NewItem, Route, StatusReport, TopicClaim, WorkItem
from telepi.checkpoint.sqlite import SqliteStore
from telepi.checkpoint.store import Store
from telepi.errors import CheckpointError

if TYPE_CHECKING:
    from telepi.checkpoint.postgres import PostgresStore  # psycopg is an extra: imported only for a URL
    from telepi.config import Settings

Checkpoint: TypeAlias = "SqliteStore | PostgresStore"  # a Store, and what the commands also read

__all__ = [
    "Checkpoint",
    "NewItem",
    "Route",
    "SqliteStore",
    "StatusReport",
    "Store",
    "TopicClaim",
    "WorkItem",
    "is_url",
    "open_checkpoint",
    "open_store",
]


def is_url(target: str | os.PathLike[str]) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_checkpoint(
    target: str | os.PathLike[str],
    *,
    clock: Callable[[], float] | None = None,
    create: bool = True,
    read_only: bool = False,
) -> Checkpoint:
    """The checkpoint at ``target``: a PostgreSQL URL, or the path of the SQLite file."""
    if is_url(target):
        try:
            from telepi.checkpoint.postgres import PostgresStore
        except ImportError:
            raise CheckpointError(
                "SHARED_DB_URL needs PostgreSQL support: pip install 'telepi[postgres]' on this machine."
            ) from None
        return PostgresStore(str(target), clock=clock, create=create, read_only=read_only)
    if clock is None:
        return SqliteStore(target, create=create, read_only=read_only)
    return SqliteStore(target, clock=clock, create=create, read_only=read_only)


def open_store(settings: Settings, *, create: bool = True, read_only: bool = False) -> Checkpoint:
    """The checkpoint a session's settings name: ``SHARED_DB_URL`` when set, else ``SHARED_DB_PATH``."""
    return open_checkpoint(settings.shared_db_url or settings.shared_db_path, create=create, read_only=read_only)
