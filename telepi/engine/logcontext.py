"""Which route a log line is about. Each route runs in its own task (session.py sets this there), and
asyncio copies the context into every task it starts, so the planner's, the worker's and the changes'
lines all carry their route; the log handlers (service/logs.py) put it into the journal's TELEPI_ROUTE."""

from __future__ import annotations

from contextvars import ContextVar

ROUTE: ContextVar[str | None] = ContextVar("telepi_route", default=None)
