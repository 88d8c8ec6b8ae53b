"""``telepi status`` on a fresh tree and on a populated checkpoint: the numbers match the rows."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telepi.checkpoint import NewItem, SqliteStore
from telepi.checkpoint.model import Pulse
from tests.cli import telepi


def status(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return telepi("status", *args, timeout=60, env={**os.environ, "COLUMNS": "200"}, cwd=cwd)


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
    result = telepi("retry", db, "--ids", "1,3", timeout=60, cwd=None)
    assert result.returncode == 0 and "requeued 2 failed messages" in result.stdout
    assert store.report().routes[0].counts == {"pending": 2, "processing": 0, "done": 0, "failed": 1, "skipped": 0}
    bad = telepi("retry", db, "--ids", "x", timeout=None, cwd=None)
    assert bad.returncode == 78 and "--ids='x' is not a list of ids" in bad.stderr


def skipped_checkpoint(db: Path) -> SqliteStore:
    """A route with skips of four reasons: 3 service messages, 7 too_large, 1 MEDIA_INVALID, 1 deleted."""
    store = SqliteStore(db)
    route = store.route("-1001111", "-1002222", "@source -> @target")
    store.register_session("session1", "other-host", 4242)
    store.enqueue(route.id, [NewItem(i, skip_reason="service_message") for i in (1, 2, 3)])
    store.enqueue(route.id, [NewItem(i) for i in range(4, 31)])
    store.claim(route.id, "session1", 27, 600)
    store.mark_sending(route.id, [20], "session1")
    for msg_id in range(10, 17):
        store.skip(route.id, [msg_id], "too_large", "session1")
    store.skip(route.id, [20], "MEDIA_INVALID", "session1")
    store.skip(route.id, [21], "deleted", "session1")
    store.complete(route.id, {i: 100 + i for i in range(4, 10)}, "session1")
    return store


def test_status_shows_skipped_counts_and_latest_ids_by_reason(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    skipped_checkpoint(db).close()
    data = json.loads(status(str(db), "--json", cwd=tmp_path).stdout)
    [route] = data["routes"]
    assert route["counts"]["skipped"] == 12
    assert route["skipped"] == [
        {"reason": "too_large", "count": 7, "latest": [16, 15, 14, 13, 12]},  # newest first, 5 at most
        {"reason": "service_message", "count": 3, "latest": [3, 2, 1]},
        {"reason": "MEDIA_INVALID", "count": 1, "latest": [20]},
        {"reason": "deleted", "count": 1, "latest": [21]},
    ]
    text = status(str(db), cwd=tmp_path).stdout
    assert "Skipped by reason" in text
    assert "too_large" in text and "16, 15, 14, 13, 12" in text
    assert "MEDIA_INVALID" in text


def test_status_reads_skips_from_their_own_index(tmp_path: Path) -> None:
    store = skipped_checkpoint(tmp_path / "checkpoint.db")
    plans = [
        " ".join(row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}", (1,)))
        for query in (
            "SELECT skip_reason, COUNT(*) FROM messages WHERE route_id = ? AND status = 'skipped' GROUP BY skip_reason",
            "SELECT source_msg_id FROM messages WHERE route_id = ? AND status = 'skipped' AND skip_reason IS 'x' "
            "ORDER BY processed_at DESC, source_msg_id DESC LIMIT 5",
        )
    ]
    store.close()
    assert all("USING INDEX messages_skipped" in plan for plan in plans), plans
    assert all("TEMP B-TREE" not in plan for plan in plans), plans  # no sort of the skipped rows either


@pytest.mark.parametrize(
    ("state", "fix"),
    [
        ("revoked", "the login was revoked (SESSION_REVOKED): run telepi login sessions/session2 again."),
        ("banned", "Telegram deactivated this account (USER_DEACTIVATED_BAN): use another account."),
        ("frozen", "the account is frozen (FROZEN_METHOD_INVALID): appeal via @SpamBot."),
        ("limited", "Telegram limits this account (PEER_FLOOD): check @SpamBot, start again later."),
        ("blocked", "the account may not post in the target (CHAT_WRITE_FORBIDDEN): grant post_messages."),
    ],
)
def test_status_marks_sessions_stopped_by_a_problem_with_the_fix(tmp_path: Path, state: str, fix: str) -> None:
    db = tmp_path / "checkpoint.db"
    store = SqliteStore(db)
    store.route("a", "b", "a -> b")
    store.register_session("session1", "other-host", 4242)
    store.register_session("session2", "other-host", 4243)
    store.set_session_state("session2", state, fix)  # type: ignore[arg-type]
    store.close()
    sessions = {s["name"]: s for s in json.loads(status(str(db), "--json", cwd=tmp_path).stdout)["sessions"]}
    assert sessions["session2"]["state"] == state
    assert sessions["session2"]["needs_action"] is True
    assert sessions["session2"]["fix"] == fix
    assert sessions["session2"]["health"] == f"{state.upper()}: {fix}"
    assert sessions["session1"]["needs_action"] is False and sessions["session1"]["fix"] is None
    text = status(str(db), cwd=tmp_path).stdout
    assert f"session2 needs you: {fix}" in " ".join(text.split())
    assert "session1 needs you" not in text


def retry_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return telepi("retry", *args, timeout=60, cwd=None)


def test_retry_skipped_requeues_by_reason_and_leaves_never_copyable_ones(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    store = skipped_checkpoint(db)
    before = store._db.execute("SELECT random_id FROM messages WHERE source_msg_id = 20").fetchone()[0]

    result = retry_cli(str(db), "--skipped", "too_large", "--ids", "10,11,12")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "requeued 3 skipped messages (too_large 3); running sessions pick them up"

    result = retry_cli(str(db), "--skipped")  # every reason but service_message and deleted
    assert result.stdout.strip() == (
        "requeued 5 skipped messages (MEDIA_INVALID 1, too_large 4); running sessions pick them up"
    )
    [route] = store.report().routes
    assert [(s.reason, s.count) for s in route.skipped] == [("service_message", 3), ("deleted", 1)]
    assert route.counts["pending"] == 3 + 5 + 0
    row = store._db.execute("SELECT * FROM messages WHERE source_msg_id = 20").fetchone()
    assert (row["status"], row["attempts"], row["send_session"], row["send_started_at"], row["skip_reason"]) == (
        "pending",
        0,
        None,
        None,
        None,
    )
    assert row["random_id"] == before  # the fixed random_id stays: a resend still deduplicates
    [item] = store.claim(route.route.id, "session1", 1, 60, after=19)
    assert (item.source_msg_id, item.takeover) == (20, False)  # nothing was sent: no search in the target

    nothing = retry_cli(str(db), "--skipped", "too_larg")
    assert nothing.returncode == 0
    assert "no skipped messages with reason too_larg to requeue" in nothing.stdout
    assert "deleted 1, service_message 3" in nothing.stdout
    named = retry_cli(str(db), "--skipped", "service_message,deleted", "--route", str(route.route.id))
    assert "requeued 4 skipped messages (deleted 1, service_message 3)" in named.stdout
    store.close()


def health_checkpoint(db: Path) -> None:
    """Six sessions whose written state and facts disagree in every way `telepi status` must see through."""
    now = time.time()

    def store_at(when: float) -> SqliteStore:
        return SqliteStore(db, clock=lambda: when)

    old = store_at(now - 600)  # ten minutes ago
    route = old.route("-1001111", "-1002222", "@source -> @target")
    for name in ("frozen-vm", "legacy", "waited-out"):
        old.register_session(name, "other-host", 4242)
    old.heartbeat("frozen-vm", 120, Pulse(every=30))
    old.set_session_state("frozen-vm", "flood_wait", "3600s on SendMessage", wait_until=now + 3000)  # wrote, then froze
    old.close()
    fresh = store_at(now - 5)
    for name in ("outage", "waiting", "revoked"):
        fresh.register_session(name, "other-host", 4300)
    fresh.heartbeat("outage", 120, Pulse(every=30, link_down_since=now - 200))
    fresh.set_session_state("waiting", "flood_wait", "42s on SendMessage", wait_until=now + 40)
    fresh.heartbeat("waiting", 120, Pulse(every=30, bytes_down=1000, bytes_up=900))
    fresh.record_flood_wait("waiting", "SendMessage", 42)
    fresh.record_flood_wait("waiting", "SendMessage", 8)
    fresh.record_flood_wait("waiting", "GetHistory", 3)
    fresh.set_session_state("revoked", "revoked", "the login was revoked (SESSION_REVOKED): run telepi login x again.")
    fresh.enqueue(route.id, [NewItem(i) for i in range(1, 11)])
    fresh.claim(route.id, "waiting", 3, 600)
    fresh.complete(route.id, {1: 101}, "waiting")
    fresh.close()
    late = store_at(now - 60)
    late.set_session_state("waited-out", "flood_wait", "30s on SendMessage", wait_until=now - 30)  # then ran on
    late.heartbeat("waited-out", 120, Pulse(every=30))
    late.heartbeat("legacy", 120)  # a telepi from before the pulse: no interval known
    late.close()


def test_status_judges_sessions_by_their_facts_not_their_last_written_state(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    written = time.time()
    health_checkpoint(db)
    data = json.loads(status(str(db), "--json", cwd=tmp_path).stdout)
    took = time.time() - written  # the wait of 40 s has run on by the time status read it
    sessions = {s["name"]: s for s in data["sessions"]}
    judged = {name: s["health_state"] for name, s in sessions.items()}
    assert judged == {
        "frozen-vm": "stalled",  # wrote flood_wait, then no heartbeat for 3 intervals
        "legacy": "running",  # 60 s without a heartbeat: within the old 180 s limit
        "outage": "reconnecting",
        "revoked": "revoked",
        "waited-out": "running",  # its flood wait ended; the state it wrote is history
        "waiting": "flood-wait",
    }
    assert sessions["frozen-vm"]["health"] == "stalled (no heartbeat for 10m, expected every 30s)"
    assert sessions["outage"]["health"].startswith("reconnecting since ")
    assert sessions["outage"]["health"].endswith("(3m): Telegram unreachable")  # 200 s
    left = re.fullmatch(r"flood-wait (\d+)s on SendMessage", sessions["waiting"]["health"])
    assert left is not None and 40 - took - 1 <= int(left[1]) <= 40, sessions["waiting"]["health"]
    assert sessions["revoked"]["fix"] and sessions["revoked"]["needs_action"]
    text = status(str(db), cwd=tmp_path).stdout
    assert "stalled (no heartbeat for 10m" in text and "reconnecting since" in text and "REVOKED: the login" in text


def test_a_dead_process_on_this_host_is_dead_whatever_it_wrote(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    store = SqliteStore(db)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.register_session("session1", socket.gethostname(), int(gone.stdout))
    store.heartbeat("session1", 120, Pulse(every=30))
    store.close()
    [session] = json.loads(status(str(db), "--json", cwd=tmp_path).stdout)["sessions"]
    assert session["state"] == "running" and session["health_state"] == "dead"


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_output_parses_and_says_what_the_checkpoint_says(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    health_checkpoint(db)
    result = status(str(db), "--prometheus", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = metrics(result.stdout)
    route = (("route", "1"), ("title", "@source -> @target"))

    def at(name: str, *labels: tuple[str, str]) -> float:
        return found[(name, tuple(sorted(labels)))]

    assert at("telepi_checkpoint_exists") == 1
    assert {s: at("telepi_route_messages", *route, ("status", s)) for s in ("pending", "processing", "done")} == {
        "pending": 7,
        "processing": 2,
        "done": 1,
    }
    assert 4 <= at("telepi_route_lag_seconds", *route) <= 60  # planned 5 s ago, still open
    assert at("telepi_route_copied_per_minute", *route) == 0.2
    assert at("telepi_route_leases_held", *route, ("session", "waiting")) == 2
    for name, state in [("frozen-vm", "stalled"), ("outage", "reconnecting"), ("revoked", "revoked")]:
        assert at("telepi_session_state", ("session", name), ("telepi_session_state", state)) == 1
    assert 199 <= at("telepi_session_reconnecting_seconds", ("session", "outage")) <= 260
    assert at("telepi_session_reconnecting_seconds", ("session", "waiting")) == 0
    assert at("telepi_flood_wait_seconds_total", ("session", "waiting"), ("method", "SendMessage")) == 50
    assert at("telepi_flood_waits_total", ("session", "waiting"), ("method", "SendMessage")) == 2
    assert at("telepi_flood_waits_total", ("session", "waiting"), ("method", "GetHistory")) == 1
    assert 30 <= at("telepi_session_flood_wait_remaining_seconds", ("session", "waiting")) <= 40
    assert at("telepi_session_flood_wait_remaining_seconds", ("session", "frozen-vm")) == 0  # stalled, not waiting
    assert at("telepi_transfer_bytes_total", ("session", "waiting"), ("direction", "down")) == 1000
    assert at("telepi_transfer_bytes_total", ("session", "waiting"), ("direction", "up")) == 900
    assert at("telepi_session_heartbeat_age_seconds", ("session", "frozen-vm")) >= 599

    # the same for node_exporter's textfile collector, and nothing at all before any run
    textfile = tmp_path / "textfile" / "telepi.prom"
    textfile.parent.mkdir()
    assert status(str(db), "--textfile", str(textfile), cwd=tmp_path).returncode == 0
    assert metrics(textfile.read_text()).keys() == found.keys()
    empty = status(str(tmp_path / "nothing.db"), "--prometheus", cwd=tmp_path)
    assert metrics(empty.stdout) == {("telepi_checkpoint_exists", ()): 0}
    refused = status(str(db), "--textfile", str(tmp_path / "absent" / "telepi.prom"), cwd=tmp_path)
    assert refused.returncode == 78 and "cannot write the metrics to" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_what_an_account_learned_is_one_line_per_group_in_text_and_json(tmp_path: Path) -> None:
    from telepi.checkpoint.model import Pace

    db = tmp_path / "sessions" / "shared" / "checkpoint.db"
    store = SqliteStore(db)
    store.register_session("bob-a", "h1", 1, user_id=42)
    store.register_session("bob-b", "h2", 2, user_id=42)
    learned_at = time.mktime((2026, 12, 1, 14, 2, 0, 0, 0, -1))  # local time, as status prints it
    store.save_pace(42, Pace("send", 2000, 3158.0, learned_at, "FLOOD_WAIT 2983 s", "bob-a"))
    store.close()

    text = status("sessions", cwd=tmp_path).stdout
    line = "bob-a, bob-b: paced to 38/min on SendMessage/SendMedia/SendMultiMedia, learned from FLOOD_WAIT 2983 s at"
    assert line in text and "2026-12-01 14:02" in text
    assert text.count("paced to") == 1  # the account's lesson once, not once per session
    sessions = {s["name"]: s for s in json.loads(status(str(db), "--json", cwd=tmp_path).stdout)["sessions"]}
    [pace] = sessions["bob-b"]["paces"]
    assert (pace["group"], pace["calls"], pace["period"], pace["session"]) == ("send", 2000, 3158.0, "bob-a")
    assert pace["per_minute"] == pytest.approx(38.0, abs=0.01) and pace["line"].startswith("paced to 38/min")
