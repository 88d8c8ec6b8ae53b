"""A worker process for the crash test: claims, "sends" into a sink database, completes; may be SIGKILLed.

It follows the engine's protocol: mark_sending, deliver with the item's random_id, complete; and on a
takeover of an item whose send had started, it looks in the sink (the "target chat") before resending.
Run as: python -m tests.unit.checkpoint_worker DB_PATH_OR_URL SINK ROUTE_ID SESSION SEED
"""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import sys
import threading
import time

from telepi.checkpoint import open_checkpoint

LEASE_SECONDS = 3.0


def main() -> None:
    db_path, sink_path, route_id, session, seed = sys.argv[1:6]
    rng = random.Random(int(seed))
    route = int(route_id)
    store = open_checkpoint(db_path)  # a SQLite file or a PostgreSQL URL
    store.register_session(session, socket.gethostname(), os.getpid())
    sink = sqlite3.connect(sink_path, timeout=30, isolation_level=None)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.25):
            store.heartbeat(session, LEASE_SECONDS)

    threading.Thread(target=beat, daemon=True).start()
    pid = os.getpid()
    while True:
        items = store.claim(route, session, rng.randint(1, 4), LEASE_SECONDS)
        if not items:
            if store.low_water_mark(route) is None:
                break
            time.sleep(0.02)
            continue
        start = time.time()
        interval_ids = []
        for item in items:
            cursor = sink.execute(
                "INSERT INTO leases (item, session, pid, start) VALUES (?, ?, ?, ?)",
                (item.source_msg_id, session, pid, start),
            )
            interval_ids.append(cursor.lastrowid)
        units: dict[object, list[int]] = {}
        for item in items:
            units.setdefault(item.grouped_id or ("single", item.source_msg_id), []).append(item.source_msg_id)
        takeovers = {item.source_msg_id for item in items if item.takeover}
        for ids in units.values():
            marks = ",".join("?" * len(ids))
            if takeovers.intersection(ids):
                found = dict(sink.execute(f"SELECT item, id FROM deliveries WHERE item IN ({marks})", ids).fetchall())
                if len(found) == len(ids):
                    store.complete(route, found, session)
                    continue
            if not store.mark_sending(route, ids, session):
                continue
            time.sleep(rng.random() * 0.004)
            sink.execute("BEGIN IMMEDIATE")
            targets = {}
            for source_id in ids:
                cursor = sink.execute(
                    "INSERT INTO deliveries (item, session, random_id) VALUES (?, ?, ?)",
                    (source_id, session, next(i.random_id for i in items if i.source_msg_id == source_id)),
                )
                targets[source_id] = cursor.lastrowid
            sink.execute("COMMIT")
            time.sleep(rng.random() * 0.004)
            changed = store.complete(route, targets, session)
            sink.execute("INSERT INTO completes (session, count) VALUES (?, ?)", (session, changed))
        end = time.time()
        sink.executemany("UPDATE leases SET end = ? WHERE id = ?", [(end, i) for i in interval_ids])
    stop.set()
    store.set_session_state(session, "stopped")


if __name__ == "__main__":
    main()
