"""The test run's one PostgreSQL server (``telepi/sandbox/pgserver.py``), started on first use."""

from __future__ import annotations

from telepi.sandbox.pgserver import USER, PgServer, binaries, start_server

__all__ = ["USER", "PgServer", "binaries", "shared_server", "stop_shared_server"]

_server: PgServer | None = None


def shared_server() -> PgServer | None:
    """The test run's one server, started on first use; None when PostgreSQL is not installed here."""
    global _server
    if _server is None:
        _server = start_server()
    return _server


def stop_shared_server() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
