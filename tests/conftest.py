"""Fixtures every test folder shares: the checkpoint backends (a SQLite file, a real PostgreSQL server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PgServer, shared_server, stop_shared_server

BACKENDS = ["sqlite", "postgres"]
NO_POSTGRES = "PostgreSQL is not installed here: scripts/setup.sh dev installs Debian's postgresql package"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the whole run (initdb + pg_ctl in a temporary directory)."""
    server = shared_server()
    if server is None:
        pytest.skip(NO_POSTGRES)
    yield server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_shared_server()  # whatever happened; an atexit hook covers a run that dies before this


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def checkpoint_target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where a test's checkpoint lives: a fresh SQLite file, or a fresh PostgreSQL database's URL."""
    if backend == "sqlite":
        return tmp_path / "shared" / "checkpoint.db"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def shared_db_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The .env lines that put sessions' checkpoint on the backend: none for the SQLite file (the default),
    SHARED_DB_URL of a fresh database for PostgreSQL."""
    if backend == "sqlite":
        return {}
    server: PgServer = request.getfixturevalue("pg_server")
    return {"SHARED_DB_URL": server.new_database()}
