"""Several OS processes share one checkpoint while some are SIGKILLed at random moments.

Afterwards: every item is done, each was delivered exactly once (takeovers look before resending),
and no item was ever held by two live sessions at the same time.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telepi.checkpoint import NewItem, open_checkpoint
from tests.cli import REPO

SESSIONS = ("s1", "s2", "s3", "s4")
ITEMS = 1500


def make_sink(path: Path) -> None:
    sink = sqlite3.connect(path)
    sink.execute("PRAGMA journal_mode = WAL")
    sink.executescript(
        """
        CREATE TABLE deliveries (id INTEGER PRIMARY KEY, item INTEGER, session TEXT, random_id INTEGER);
        CREATE TABLE leases (id INTEGER PRIMARY KEY, item INTEGER, session TEXT, pid INTEGER, start REAL, end REAL);
        CREATE TABLE completes (session TEXT, count INTEGER);
        """
    )
    sink.close()


def spawn(db: Path | str, sink: Path, route_id: int, session: str, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.unit.checkpoint_worker", str(db), str(sink), str(route_id), session, str(seed)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )


def test_concurrent_workers_killed_at_random_points_lose_and_duplicate_nothing(
    tmp_path: Path, checkpoint_target: Path | str
) -> None:
    seed = int(os.environ.get("TELEPI_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    db, sink_path = checkpoint_target, tmp_path / "sink.db"
    make_sink(sink_path)
    store = open_checkpoint(db)
    route = store.route("-1001", "-1002")
    items = []
    for msg_id in range(1, ITEMS + 1):
        album = 10_000 + msg_id // 5 if msg_id % 7 == 0 or (msg_id - 1) % 7 == 0 else None
        items.append(NewItem(msg_id, grouped_id=album))
    store.enqueue(route.id, items)

    workers = {name: spawn(db, sink_path, route.id, name, rng.randrange(1 << 30)) for name in SESSIONS}
    killed_pids: set[int] = set()
    deadline = time.time() + 120
    kills = 0
    try:
        while time.time() < deadline:
            time.sleep(rng.uniform(0.02, 0.25))
            running = [n for n, p in workers.items() if p.poll() is None]
            if not running:
                break
            if kills < 15:
                victim = rng.choice(running)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                killed_pids.add(workers[victim].pid)
                kills += 1
                # systemd restarts the instance under the same session name
                workers[victim] = spawn(db, sink_path, route.id, victim, rng.randrange(1 << 30))
        for process in workers.values():
            process.wait(timeout=max(1, deadline - time.time()))
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
    for process in workers.values():
        assert process.returncode == 0, f"seed {seed}: {process.stderr.read().decode() if process.stderr else ''}"

    report = store.report()
    assert report.routes[0].counts["done"] == ITEMS, f"seed {seed}"
    assert kills >= 5, f"seed {seed}: only {kills} kills happened before the work ran out"
    print(f"crash test: seed {seed}, {kills} workers killed")

    sink = sqlite3.connect(sink_path)
    per_item = dict(sink.execute("SELECT item, COUNT(*) FROM deliveries GROUP BY item").fetchall())
    assert set(per_item) == set(range(1, ITEMS + 1)), f"seed {seed}: lost deliveries"
    doubled = {item: count for item, count in per_item.items() if count != 1}
    assert not doubled, f"seed {seed}: delivered more than once: {doubled}"
    delivered = dict(sink.execute("SELECT item, id FROM deliveries").fetchall())
    assert store.target_ids(route.id, list(range(1, ITEMS + 1))) == delivered, f"seed {seed}"

    # No item held by two live sessions at once: compare intervals of processes that were never killed.
    intervals: dict[int, list[tuple[float, float, str]]] = {}
    for item, session, pid, start, end in sink.execute("SELECT item, session, pid, start, end FROM leases"):
        if pid not in killed_pids and end is not None:
            intervals.setdefault(item, []).append((start, end, session))
    for item, spans in intervals.items():
        spans.sort()
        for (_, first_end, first), (second_start, _, second) in itertools.pairwise(spans):
            assert second_start >= first_end, f"seed {seed}: item {item} leased by {first} and {second} at once"


def test_sessions_creating_the_checkpoint_at_the_same_moment_all_succeed(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    code = (
        "import sys, time\nfrom telepi.checkpoint import open_checkpoint\n"
        "while time.time() < float(sys.argv[2]): pass\nopen_checkpoint(sys.argv[1]).close()"
    )
    failures = []
    for round_ in range(15):
        path: Path | str = tmp_path / f"r{round_}" / "checkpoint.db"
        if backend == "postgres":
            path = request.getfixturevalue("pg_server").new_database()
        start = str(time.time() + 0.4)
        processes = [
            subprocess.Popen([sys.executable, "-c", code, str(path), start], cwd=REPO, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        for process in processes:
            if process.wait(timeout=60) != 0:
                failures.append(process.stderr.read().decode() if process.stderr else "")
    assert not failures, failures[0]
