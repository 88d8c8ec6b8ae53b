"""``telepi checkpoint copy SRC DST``: a checkpoint written by real sessions moves SQLite → PostgreSQL → SQLite
unchanged, sessions carry on from the copy with nothing doubled, and it refuses a filled DST and a SRC in use.
Real sessions, a real PostgreSQL server (tests/pgserver.py), the CLI as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from telepi.checkpoint import open_checkpoint
from telepi.errors import EX_CONFIG, EX_TEMPFAIL
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions, run_all
from tests.pgserver import PgServer


def copy(src: Path | str, dst: Path | str) -> subprocess.CompletedProcess[str]:
    return telepi("checkpoint", "copy", str(src), str(dst), cwd=None)


def sqlite_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the file with every row, read with sqlite3 itself (not through telepi)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {name: sorted(db.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr) for name in names}


def schema_of(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def with_env(directory: Path, **env: str) -> None:
    lines = [line for line in (directory / ".env").read_text().splitlines() if line.split("=")[0] not in env]
    (directory / ".env").write_text("\n".join([*lines, *(f"{k}={v}" for k, v in env.items())]) + "\n")


async def test_round_trip_through_postgres_is_equal_and_sessions_carry_on_there(
    tmp_path: Path, pg_server: PgServer
) -> None:
    async with Sandbox(world=forum_world(80), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(sb, tmp_path / "sessions", ["bob", "carol"], LIVE="false", MODE="copy")
        await run_all(directories)
        original = tmp_path / "sessions" / "shared" / "checkpoint.db"
        before = sqlite_tables(original)
        assert len(before["messages"]) >= 80 and before["topics"] and len(before["sessions"]) == 2

        url = pg_server.new_database()
        there = await asyncio.to_thread(copy, original, url)
        assert there.returncode == 0, there.stderr
        assert "verified row for row" in there.stdout and f"{len(before['messages']):,} rows" in there.stdout
        assert pg_server.password not in there.stdout + there.stderr
        back = tmp_path / "back" / "checkpoint.db"
        again = await asyncio.to_thread(copy, url, back)
        assert again.returncode == 0, again.stderr
        assert sqlite_tables(back) == before  # every table, every row, every value
        assert schema_of(back) == schema_of(original)  # the triggers that keep counters came back too

        # The copied ids continue: a route created on PostgreSQL after the copy gets the next id.
        store = open_checkpoint(url)
        assert store.route("-100999", "-100998").id == max(r[0] for r in before["routes"]) + 1
        store.close()

        # The sessions move to PostgreSQL and carry on: new posts are copied once, the history not again.
        for directory in directories:
            with_env(directory, SHARED_DB_URL=url)
        for n in range(5):
            await sb.post("source", f"after the move {n}", as_account="alice")
        await run_all(directories)
        assert_clone_equal(sb, "source", "target")
        texts = [m["text"] for m in content(sb.messages("target"))]
        assert len(texts) == len(content(sb.messages("source")))
        assert all(texts.count(f"after the move {n}") == 1 for n in range(5))
        with psycopg.connect(url) as db:
            moved = db.execute("SELECT COUNT(*) FILTER (WHERE status = 'done'), COUNT(*) FROM messages").fetchone()
        done_before = sum(1 for row in before["messages"] if "done" in row)
        assert moved == (done_before + 5, len(before["messages"]) + 5)


async def test_a_filled_destination_is_refused_and_left_as_it_was(tmp_path: Path, pg_server: PgServer) -> None:
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state") as sb:
        directories = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        await run_all(directories)
    source = tmp_path / "sessions" / "shared" / "checkpoint.db"
    url = pg_server.new_database()
    assert copy(source, url).returncode == 0
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT COUNT(*) FROM messages").fetchone()
    refused = copy(source, url)
    assert refused.returncode == EX_CONFIG
    assert "is not empty (" in refused.stderr and "messages (" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and pg_server.password not in refused.stderr
    assert f"postgresql://telepi@127.0.0.1:{pg_server.port}/" in refused.stderr  # DST named, without its password
    with psycopg.connect(url) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == rows
    # The same into a SQLite file that already holds a checkpoint.
    refused = copy(url, source)
    assert refused.returncode == EX_CONFIG and f"{source} is not empty" in refused.stderr, refused.stderr


async def test_a_source_in_use_by_a_running_session_is_refused_until_it_stops(
    tmp_path: Path, pg_server: PgServer
) -> None:
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="true", MODE="copy")
        source = tmp_path / "sessions" / "shared" / "checkpoint.db"
        session = subprocess.Popen(
            [sys.executable, "-m", "telepi", "run", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while not (source.exists() and sqlite_tables(source).get("sessions")):
                assert session.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.2)
            url = pg_server.new_database()
            refused = await asyncio.to_thread(copy, source, url)
            assert refused.returncode == EX_TEMPFAIL, refused.stderr
            assert f"session1 on {os.uname().nodename} (pid {session.pid}" in refused.stderr
            assert "stop them" in refused.stderr and "Traceback" not in refused.stderr
        finally:
            session.send_signal(signal.SIGTERM)
            await asyncio.to_thread(session.wait, 60)
        copied = await asyncio.to_thread(copy, source, url)  # stopped: nothing writes any more
        assert copied.returncode == 0, copied.stderr
