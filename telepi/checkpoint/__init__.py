"""The shared checkpoint: leases, progress and topic mapping for every session on the host."""

from telepi.checkpoint.model import NewItem, Route, StatusReport, TopicClaim, WorkItem
from telepi.checkpoint.sqlite import SqliteStore
from telepi.checkpoint.store import Store

__all__ = ["NewItem", "Route", "SqliteStore", "StatusReport", "Store", "TopicClaim", "WorkItem"]
