"""``telepi status`` on a fresh tree and on a populated checkpoint: the numbers match the rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from telepi.checkpoint import NewItem, SqliteStore


def status(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telepi", "status", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_fresh_sessions_tree_prints_an_empty_sensible_report(tmp_path: Path) -> None:
    (tmp_path / "sessions" / "shared").mkdir(parents=True)
    result = status(cwd=tmp_path)
    assert result.returncode == 0
    assert f"No checkpoint yet at {tmp_path / 'sessions' / 'shared' / 'checkpoint.db'}" in result.stdout
    assert "telepi run sessions/session1" in result.stdout
    assert not (tmp_path / "sessions" / "shared" / "checkpoint.db").exists()  # a report never creates state
    data = json.loads(status("--json", cwd=tmp_path).stdout)
    assert data == {
        "path": str(tmp_path / "sessions" / "shared" / "checkpoint.db"),
        "exists": False,
        "routes": [],
        "sessions": [],
        "failures": [],
    }


def test_populated_checkpoint_numbers_match_rows(tmp_path: Path) -> None:
    db = tmp_path / "sessions" / "shared" / "checkpoint.db"
    store = SqliteStore(db)
    route = store.route("-1001111", "-1002222", "@source -> @target")
    store.register_session("session1", "other-host", 4242)
    store.register_session("session2", "other-host", 4243)
    store.enqueue(route.id, [NewItem(i) for i in range(1, 21)])
    store.claim(route.id, "session1", 5, 600)
    store.complete(route.id, {1: 101, 2: 102, 3: 103}, "session1")
    store.fail(route.id, [4], "FLOOD_WAIT_30 on SendMediaRequest", "session1", retryable=False, max_attempts=5)
    store.claim(route.id, "session2", 2, 600)
    store.skip(route.id, [6], "service_message", "session2")
    store.set_session_state("session2", "flood_wait", "on SendMessageRequest", wait_until=9e12)
    store.close()

    data = json.loads(status(str(db), "--json", cwd=tmp_path).stdout)
    [route_data] = data["routes"]
    assert route_data["counts"] == {"pending": 13, "processing": 2, "done": 3, "failed": 1, "skipped": 1}
    assert (route_data["known"], route_data["finished"], route_data["low_water"]) == (20, 4, 4)
    assert sorted((lease["source_msg_id"], lease["session"]) for lease in route_data["leases"]) == [
        (5, "session1"),
        (7, "session2"),
    ]
    sessions = {s["name"]: s for s in data["sessions"]}
    assert sessions["session1"]["done_total"] == 3
    assert sessions["session2"]["state"] == "flood_wait"
    assert data["failures"][0]["error"] == "FLOOD_WAIT_30 on SendMediaRequest"

    # the same report, for people, from the sessions root
    text = status("sessions", cwd=tmp_path).stdout
    assert "@source -> @target" in text
    assert "4/20 20.0%" in text
    assert "FLOOD_WAIT_30 on SendMediaRequest" in text
    assert "flood-wait" in text


def test_status_of_a_session_directory_reads_its_shared_db_path(tmp_path: Path) -> None:
    session = tmp_path / "sessions" / "session1"
    session.mkdir(parents=True)
    (session / ".env").write_text("SHARED_DB_PATH=../elsewhere/cp.db\n")
    store = SqliteStore(tmp_path / "sessions" / "elsewhere" / "cp.db")
    store.route("a", "b", "a -> b")
    store.close()
    data = json.loads(status(str(session), "--json", cwd=tmp_path).stdout)
    assert data["path"] == str(tmp_path / "sessions" / "elsewhere" / "cp.db")
    assert data["routes"][0]["route"]["label"] == "a -> b"


def test_status_on_a_broken_checkpoint_exits_78_and_names_the_file(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    db.write_text("garbage " * 1000)
    result = status(str(db), cwd=tmp_path)
    assert result.returncode == 78
    assert f"{db} is not a usable telepi checkpoint" in result.stderr
    assert db.read_text() == "garbage " * 1000


def test_retry_requeues_failed_messages(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    store = SqliteStore(db)
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in (1, 2, 3)])
    store.claim(route.id, "s1", 3, 60)
    store.fail(route.id, [1, 2, 3], "INTERNAL", "s1", retryable=False, max_attempts=5)
    result = subprocess.run(
        [sys.executable, "-m", "telepi", "retry", str(db), "--ids", "1,3"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "requeued 2 failed messages" in result.stdout
    assert store.report().routes[0].counts == {"pending": 2, "processing": 0, "done": 0, "failed": 1, "skipped": 0}
    bad = subprocess.run(
        [sys.executable, "-m", "telepi", "retry", str(db), "--ids", "x"], capture_output=True, text=True
    )
    assert bad.returncode == 78 and "--ids='x' is not a list of ids" in bad.stderr
