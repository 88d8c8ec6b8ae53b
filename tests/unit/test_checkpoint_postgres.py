"""What only the PostgreSQL checkpoint has: claims that skip each other's rows instead of waiting, a schema
that is recognised before anything is written, connection errors as one sentence without the password,
`telepi status` reading a session's SHARED_DB_URL. Everything against the real server of tests/pgserver.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from telepi.checkpoint import NewItem, open_checkpoint
from telepi.checkpoint.pg_hot import HotConnection
from telepi.checkpoint.postgres import PostgresStore
from telepi.errors import CheckpointError, PassingError
from telepi.sandbox.pgserver import start_server
from tests.cli import telepi
from tests.pgserver import PgServer


@pytest.fixture
def url(pg_server: PgServer) -> str:
    return pg_server.new_database()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return telepi(*args, timeout=60, env={**os.environ, "COLUMNS": "200"}, cwd=cwd)


def test_a_claim_skips_rows_another_claim_holds_instead_of_waiting(url: str) -> None:
    store = open_checkpoint(url)
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), NewItem(2), *(NewItem(i, grouped_id=9) for i in (3, 4)), NewItem(5)])
    with psycopg.connect(url) as other:
        # Another session's claim in flight: rows 1 and 4 (half of the album) locked, not yet committed.
        other.execute(b"SELECT 1 FROM messages WHERE source_msg_id IN (1, 4) FOR UPDATE")
        started = time.monotonic()
        taken = store.claim(route.id, "s2", 3, 60)
        waited = time.monotonic() - started
        other.rollback()
    assert waited < 1.0
    # Row 1 is skipped, and the album is not split: it goes whole to whoever holds part of it, or waits.
    assert [i.source_msg_id for i in taken] == [2, 5]
    assert [i.source_msg_id for i in store.claim(route.id, "s3", 5, 60)] == [1, 3, 4]
    store.close()


def test_a_session_stopped_inside_a_transaction_holds_the_others_up_only_for_the_idle_timeout(url: str) -> None:
    stopped, running = open_checkpoint(url), open_checkpoint(url)
    route = running.route("a", "b")
    running.enqueue(route.id, [NewItem(1)])
    assert isinstance(stopped, PostgresStore)
    with stopped._pool.connection() as conn:  # one of the stopped session's own connections
        conn.execute(b"BEGIN")
        conn.execute(b"UPDATE messages SET attempts = attempts WHERE source_msg_id = 1")  # its row lock, held
        started = time.monotonic()
        taken = running.claim(route.id, "s2", 1, 60)  # the row is locked: skipped, not waited for
        assert taken == [] and time.monotonic() - started < 1.0
        running.complete(route.id, {1: 100}, "s2")  # a write that must wait for the lock
        waited = time.monotonic() - started
        with pytest.raises(psycopg.Error, match="idle-in-transaction"):  # resumed: its transaction was ended
            conn.execute(b"SELECT 1")
    assert 9.0 < waited < 15.0, waited  # IDLE_IN_TRANSACTION_SECONDS, not until the stopped one resumes
    assert running.ledger(route.id) == {1: ("done", 100)}
    assert stopped.ledger(route.id) == {1: ("done", 100)}  # and the resumed session goes on
    running.close()
    stopped.close()


def test_concurrent_claims_from_many_threads_never_lease_an_item_twice(url: str) -> None:
    store = PostgresStore(url, pool_size=8)
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i, grouped_id=1000 + i // 3 if i % 5 == 0 else None) for i in range(1, 401)])
    taken: list[list[int]] = []

    def worker(name: str) -> None:
        while items := store.claim(route.id, name, 3, 60):
            taken.append([i.source_msg_id for i in items])
            store.complete(route.id, {i.source_msg_id: i.source_msg_id for i in items}, name)

    threads = [threading.Thread(target=worker, args=(f"s{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [i for batch in taken for i in batch]
    assert sorted(flat) == list(range(1, 401))
    assert store.route_counts(route.id) == (400, 400)
    store.close()


def test_foreign_tables_are_refused_and_left_untouched(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(b"CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(CheckpointError, match="holds tables that are not a telepi checkpoint"):
        open_checkpoint(url)
    with psycopg.connect(url) as db:
        tables = {row[0] for row in db.execute(b"SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"invoices"}


def test_newer_schema_is_refused_and_reopening_keeps_state(url: str) -> None:
    first = open_checkpoint(url)
    route = first.route("a", "b")
    first.enqueue(route.id, [NewItem(1)])
    first.close()
    again = open_checkpoint(url)
    assert again.low_water_mark(route.id) == 1
    again.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(b"UPDATE telepi_meta SET version = version + 1")
    with pytest.raises(CheckpointError, match="written by a newer telepi"):
        open_checkpoint(url)


def test_leases_run_on_the_servers_clock(url: str) -> None:
    store = open_checkpoint(url)
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1)])
    [item] = store.claim(route.id, "s1", 1, 60)
    with psycopg.connect(url) as db:
        server_now = db.execute(b"SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert server_now is not None
    assert abs(item.lease_expires - 60 - server_now[0]) < 5
    store.close()


def test_a_wrong_password_is_one_sentence_exit_78_without_the_password(pg_server: PgServer) -> None:
    wrong = pg_server.url().replace(pg_server.password, "Wr0ngSecretValue")
    with pytest.raises(CheckpointError) as caught:
        PostgresStore(wrong)
    assert "Wr0ngSecretValue" not in str(caught.value)
    result = cli("status", wrong)
    assert result.returncode == 78, result.stderr
    assert "password authentication failed" in result.stderr
    assert "fix SHARED_DB_URL" in result.stderr
    assert "Wr0ngSecretValue" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_server_that_does_not_answer_passes_exit_75(pg_server: PgServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    down = pg_server.url().replace(f":{pg_server.port}/", f":{port}/")
    with pytest.raises(PassingError):
        PostgresStore(down)
    result = cli("status", down)
    assert result.returncode == 75, result.stderr
    assert pg_server.password not in result.stderr + result.stdout
    assert "cannot be reached" in result.stderr


def test_status_of_a_session_directory_reads_its_shared_db_url(url: str, tmp_path: Path, pg_server: PgServer) -> None:
    store = open_checkpoint(url)
    route = store.route("a", "b", "a -> b")
    store.enqueue(route.id, [NewItem(i) for i in range(1, 6)])
    store.claim(route.id, "s1", 2, 60)
    store.complete(route.id, {1: 11}, "s1")
    store.close()
    session = tmp_path / "sessions" / "session1"
    session.mkdir(parents=True)
    (session / ".env").write_text(f"SHARED_DB_URL={url}\n")
    result = cli("status", str(session), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert pg_server.password not in result.stdout
    data = json.loads(result.stdout)
    assert data["path"].startswith("postgresql://telepi@127.0.0.1:")
    assert data["routes"][0]["counts"] == {"pending": 3, "processing": 1, "done": 1, "failed": 0, "skipped": 0}
    table = cli("status", str(session), cwd=tmp_path)
    assert table.returncode == 0 and "a -> b" in table.stdout and pg_server.password not in table.stdout


def test_a_wait_for_the_head_is_woken_by_another_sessions_write_not_by_a_poll(url: str) -> None:
    waiter, writer = open_checkpoint(url), open_checkpoint(url)
    route = writer.route("a", "b")
    other = writer.route("a", "c")
    writer.enqueue(route.id, [NewItem(1), NewItem(2)])
    writer.enqueue(other.id, [NewItem(1)])
    writer.claim(route.id, "s1", 1, 60)
    writer.claim(other.id, "s1", 1, 60)
    assert waiter.wait_head(route.id, 0.05) is False  # nothing moved: the wait runs its time out
    woke: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        assert waiter.wait_head(route.id, 10.0)
        woke.append(time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    writer.complete(other.id, {1: 5}, "s1")  # another route's head: not this wait's business
    time.sleep(0.3)
    assert not woke
    writer.complete(route.id, {1: 10}, "s1")
    thread.join(5)
    assert woke and 0.5 < woke[0] < 2.0
    waiter.close()
    writer.close()


def test_a_complete_wakes_the_waits_only_when_it_moves_a_head(url: str) -> None:
    # Each NOTIFY holds a cluster-wide lock through its commit: a complete that moved no head sends none.
    waiter, writer = open_checkpoint(url), open_checkpoint(url)
    route = writer.route("a", "b")
    writer.enqueue(route.id, [NewItem(1), NewItem(2), NewItem(3, topic_id=7), NewItem(4, topic_id=7)])
    assert len(writer.claim(route.id, "s1", 4, 60)) == 4
    assert waiter.wait_head(route.id, 0.05) is False  # listening from here on
    writer.complete(route.id, {2: 20}, "s1")  # row 1 is still open below it
    assert waiter.wait_head(route.id, 0.3) is False
    writer.complete(route.id, {4: 40}, "s1")  # row 3 of its topic is still open below it
    assert waiter.wait_head(route.id, 0.3) is False
    writer.complete(route.id, {3: 30}, "s1")  # its topic's head (ORDERED=topic waits on it)
    assert waiter.wait_head(route.id, 0.3) is True
    writer.complete(route.id, {1: 10}, "s1")  # the route's head
    assert waiter.wait_head(route.id, 0.3) is True
    assert waiter.head(route.id) is None
    waiter.close()
    writer.close()


def test_status_of_a_database_no_session_used_yet_is_an_empty_report(url: str, pg_server: PgServer) -> None:
    result = cli("status", url)
    assert result.returncode == 0, result.stderr
    assert "No checkpoint yet at postgresql://telepi@127.0.0.1:" in result.stdout
    data = json.loads(cli("status", url, "--json").stdout)
    assert data["exists"] is False and data["path"].startswith("postgresql://telepi@127.0.0.1:")
    assert pg_server.password not in result.stdout + json.dumps(data)


def test_doctor_checks_the_database_without_creating_anything_or_showing_the_password(
    url: str, pg_server: PgServer
) -> None:
    from telepi.commands.doctor import _database

    empty = _database(url)
    assert empty.verdict == "ok" and "is empty: the first session that runs creates it" in empty.what
    with psycopg.connect(url) as db:
        assert db.execute(b"SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    open_checkpoint(url).close()
    assert _database(url).verdict == "ok"
    wrong = _database(url.replace(pg_server.password, "Wr0ngSecretValue"))
    assert wrong.verdict == "problem" and "Wr0ngSecretValue" not in wrong.what + wrong.fix


def test_the_hot_path_reads_typed_rows_and_raises_the_servers_errors_as_psycopg_does(url: str) -> None:
    hot = HotConnection(psycopg.connect(url, autocommit=True))
    params = {"id": 7, "at": 0.1 + 0.2, "who": "w'1", "none": None}
    rows = hot.rows(
        "SELECT %(id)s + 1 AS next, %(at)s::float8 AS at, %(who)s::text AS who, %(none)s::bigint AS none, "
        "%(id)s > 5 AS big, '{1,2}'::text AS literal",
        params,
    )
    assert rows == [{"next": 8, "at": 0.1 + 0.2, "who": "w'1", "none": None, "big": True, "literal": "{1,2}"}]
    with pytest.raises(psycopg.errors.DivisionByZero):
        hot.rows("SELECT 1 / %(zero)s AS n", {"zero": 0})
    assert hot.rows("SELECT 1 / %(one)s AS n", {"one": 1}) == [{"n": 1}]  # prepared once, run again
    hot.close()


def test_a_hot_connection_the_server_ended_fails_as_passing_and_the_next_call_reconnects(url: str) -> None:
    store = PostgresStore(url)
    route = store.route("-1001", "-1002").id
    store.enqueue(route, [NewItem(1), NewItem(2)])
    assert store.head(route) is not None
    with psycopg.connect(url, autocommit=True) as admin:  # a server restart, as far as this connection knows
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'WITH clock%%'"
        )
    with pytest.raises(PassingError):
        store.claim(route, "w", 1, 60.0)
    assert [item.source_msg_id for item in store.claim(route, "w", 1, 60.0)] == [1]
    store.close()


def test_the_done_counters_count_a_hot_complete_once(url: str) -> None:
    store = PostgresStore(url)
    route = store.route("-1001", "-1002").id
    store.enqueue(route, [NewItem(1), NewItem(2, grouped_id=9), NewItem(3, grouped_id=9), NewItem(4)])
    store.claim(route, "w", 10, 60.0)
    assert store.complete(route, {2: 20, 3: 30}, "w") == 2
    assert store.complete(route, {2: 20}, "w") == 0  # done already: nothing counted twice
    assert store.complete(route, {4: 40}, "v") == 1  # taken over: counted for whoever sent it
    with psycopg.connect(url) as conn:
        counts = dict(conn.execute("SELECT session, done FROM done_counts").fetchall())
        real = dict(
            conn.execute("SELECT session, COUNT(*) FROM messages WHERE status = 'done' GROUP BY session").fetchall()
        )
    assert counts == real == {"w": 2, "v": 1}
    assert store.report(failures=0).routes[0].counts["done"] == 3
    store.close()


def test_a_complete_commits_without_waiting_for_the_wal_flush_and_the_sending_mark_still_waits() -> None:
    # The shared test server runs with synchronous_commit off: this one has PostgreSQL's durable defaults.
    server = start_server(durable=True)
    if server is None:
        pytest.skip("PostgreSQL is not installed here: scripts/setup.sh dev installs it.")
    try:
        store = PostgresStore(server.new_database())
        route = store.route("-1001", "-1002").id
        units = 30
        store.enqueue(route, [NewItem(i) for i in range(1, units + 1)])
        store.claim(route, "w", units, 600.0)
        hot = store._hot_connection()

        def flushes() -> int:
            # The hot connection's backend reports its WAL counts when it goes idle, before it answers.
            hot.rows("SELECT pg_stat_force_next_flush() AS f", {})
            with psycopg.connect(server.url(), autocommit=True) as conn:
                return int(conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0])  # type: ignore[index]

        before = flushes()
        for i in range(1, units + 1):
            assert store.mark_sending(route, [i], "w")
        marked = flushes()
        for i in range(1, units + 1):
            assert store.complete(route, {i: 100 + i}, "w") == 1
        completed = flushes()
        assert marked - before >= units  # each mark on disk before its send
        assert completed - marked <= units // 3  # completions ride on the WAL writer's and later commits' flushes
        assert hot.rows("SELECT current_setting('synchronous_commit') AS s", {}) == [{"s": "on"}]  # not left off
        assert store.report(failures=0).routes[0].counts["done"] == units
        store.close()
    finally:
        server.stop()
