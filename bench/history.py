"""Scenario 6: does the checkpoint slow down as the done history grows? claim, head and status on a route
of 1,000,000 done messages against the same route with no history, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.history [--backend sqlite|postgres|both] [--history 1000000] [--quick]

Two checkpoints per backend, each with one route, 4 registered sessions and 1,000 pending messages ahead
(ids after the history): "empty" has nothing else; "history" also holds ``--history`` done rows before them,
written with bulk inserts (``executemany`` / ``COPY``; not the engine), spread over the 4 sessions and
processed more than 5 minutes ago. PostgreSQL's tables are then vacuumed and analysed, as autovacuum would
have done long before on a real server; the SQLite file gets nothing, as telepi runs none there. Then
everything is written to disk (``CHECKPOINT``, ``sync``) before anything is timed.

Then, on each checkpoint, the operations the engine and the operator repeat (median of many calls):
``head`` (an ordered session's look at the route's next message, every 2-10 ms while waiting), ``claim``
of 10 (each followed, untimed, by ``mark_sending`` + ``complete``, so every claim finds fresh rows), and
``report`` (everything ``telepi status`` shows). The target: each costs at most 2x on the route with history.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common import bench_tmp, print_table

BACKENDS = ("sqlite", "postgres")
SESSIONS = ("s1", "s2", "s3", "s4")
OPEN = 1_000  # pending messages ahead of the history, in both checkpoints
TARGET_RATIO = 2.0


def _history_rows(route_id: int, count: int, now: float) -> Iterator[tuple[Any, ...]]:
    """``count`` done rows as the engine leaves them: a session, a target id, a random id, old times."""
    start = now - 86_400 * 30  # processed over the last month, none in the last 5 minutes
    step = (86_400 * 30 - 600) / max(count, 1)
    for msg_id in range(1, count + 1):
        at = start + msg_id * step
        yield (
            route_id, msg_id, None, 1, "done", SESSIONS[msg_id % len(SESSIONS)], at - 1, at + 60,
            SESSIONS[msg_id % len(SESSIONS)], at - 0.5, 1, None, None, None, msg_id * 7919, msg_id, at - 2, at,
        )  # fmt: skip


_COLUMNS = (
    "route_id", "source_msg_id", "grouped_id", "topic_id", "status", "session", "claimed_at", "lease_expires",
    "send_session", "send_started_at", "attempts", "not_before", "last_error", "skip_reason", "random_id",
    "target_msg_id", "enqueued_at", "processed_at",
)  # fmt: skip


def _bulk_history(target: Path | str, route_id: int, count: int) -> float:
    """Write the history straight into the tables; seconds it took."""
    began, now = time.perf_counter(), time.time()
    rows = _history_rows(route_id, count, now)
    if isinstance(target, Path):
        db = sqlite3.connect(target, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        marks = ", ".join("?" for _ in _COLUMNS)
        db.executemany(f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES ({marks})", rows)
        db.execute("COMMIT")
        db.close()
    else:
        import psycopg

        with psycopg.connect(target) as pg:
            # The done counters' trigger, row by row in PL/pgSQL, would take minutes: counted once at the end.
            pg.execute(b"ALTER TABLE messages DISABLE TRIGGER USER")
            with pg.cursor().copy(f"COPY messages ({', '.join(_COLUMNS)}) FROM STDIN".encode()) as copy:
                for row in rows:
                    copy.write_row(row)
            pg.execute(b"ALTER TABLE messages ENABLE TRIGGER USER")
            pg.execute(
                b"INSERT INTO done_counts (route_id, session, done) SELECT route_id, COALESCE(session, ''), COUNT(*) "
                b"FROM messages WHERE status = 'done' GROUP BY 1, 2 "
                b"ON CONFLICT (route_id, session) DO UPDATE SET done = done_counts.done + excluded.done"
            )
            pg.commit()
        with psycopg.connect(target, autocommit=True) as pg:
            pg.execute(b"VACUUM ANALYZE")
            pg.execute(b"CHECKPOINT")
    # A month-old history is on disk, not waiting in the page cache: without this the timed commits below
    # would pay for writing back the bulk insert (4-6 ms claims on SQLite instead of 0.4-0.8 ms, measured).
    os.sync()
    return time.perf_counter() - began


def _timed(call: Callable[[], Any], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        spent.append(time.perf_counter() - began)
    return spent


def _measure(target: Path | str, history: int, calls: int) -> dict[str, Any]:
    from telepi.checkpoint import NewItem, open_checkpoint

    store = open_checkpoint(target)
    route = store.route("-1001", "-1002")
    for name in SESSIONS:
        store.register_session(name, socket.gethostname(), os.getpid())
    built = _bulk_history(target, route.id, history) if history else 0.0
    store.enqueue(route.id, [NewItem(history + i) for i in range(1, OPEN + 1)])
    store.report()  # warm: the first read of a file or a database pays for its caches, on both sides alike
    head = _timed(lambda: store.head(route.id), calls)
    report = _timed(lambda: store.report(), max(3, calls // 20))
    claims: list[float] = []
    claimed = 0
    while claimed < OPEN:
        began = time.perf_counter()
        items = store.claim(route.id, "s1", 10, 600)
        claims.append(time.perf_counter() - began)
        if not items:
            break
        ids = [i.source_msg_id for i in items]
        store.mark_sending(route.id, ids, "s1")
        store.complete(route.id, {i: i for i in ids}, "s1")
        claimed += len(ids)
    counts = store.report().routes[0].counts
    store.close()
    return {
        "history": history,
        "bulk_insert_seconds": built,
        "head_ms": statistics.median(head) * 1000,
        "claim_ms": statistics.median(claims) * 1000,
        "report_ms": statistics.median(report) * 1000,
        "samples": {"head": len(head), "claim": len(claims), "report": len(report)},
        "ok": claimed == OPEN and counts["done"] == history + OPEN and counts["pending"] == 0,
    }


def run(*, history: int = 1_000_000, backend: str = "both", quick: bool = False) -> dict[str, Any]:
    from telepi.sandbox.pgserver import start_server

    calls = 200
    if quick:
        history, calls = min(history, 5_000), 20
    backends = list(BACKENDS) if backend == "both" else [backend]
    server = start_server(durable=True) if "postgres" in backends else None
    skipped = None
    if "postgres" in backends and server is None:
        backends.remove("postgres")
        skipped = "postgres: PostgreSQL is not installed here (scripts/setup.sh dev installs it)"
    runs = []
    try:
        with tempfile.TemporaryDirectory(prefix="telepi-bench-history-", dir=bench_tmp()) as tmp:
            for name in backends:
                for size in (0, history):
                    where: Path | str
                    where = server.new_database() if name == "postgres" and server else Path(tmp) / f"{name}{size}.db"
                    result = {"backend": name, **_measure(where, size, calls)}
                    runs.append(result)
                    print(
                        f"  history: {name:<8} {size:>9,} done  head {result['head_ms']:7.3f} ms  "
                        f"claim {result['claim_ms']:7.3f} ms  status {result['report_ms']:8.2f} ms  "
                        f"(bulk insert {result['bulk_insert_seconds']:.1f} s)  {'ok' if result['ok'] else 'WRONG'}",
                        flush=True,
                    )
    finally:
        if server is not None:
            server.stop()
    summary, targets = [], {}
    for name in backends:
        empty, full = (next(r for r in runs if r["backend"] == name and r["history"] == n) for n in (0, history))
        for op in ("claim", "head", "report"):
            ratio = full[f"{op}_ms"] / empty[f"{op}_ms"]
            before, after = empty[f"{op}_ms"], full[f"{op}_ms"]
            summary.append({"backend": name, "op": op, "empty_ms": before, "history_ms": after, "ratio": ratio})
            targets[f"{name}_{op}_ratio"] = {"target": TARGET_RATIO, "measured": ratio, "met": ratio <= TARGET_RATIO}
    return {
        "scenario": "history",
        "settings": {
            "history_done_rows": history,
            "open_rows": OPEN,
            "sessions": len(SESSIONS),
            "calls": calls,
            "claim_limit": 10,
            "postgres": "a throwaway local server, PostgreSQL's durable defaults, VACUUM ANALYZE after the bulk insert",
        },
        "skipped_backends": skipped,
        "runs": runs,
        "summary": summary,
        "targets": targets,
        "ok": all(r["ok"] for r in runs),
    }


def table(report: dict[str, Any]) -> list[list[str]]:
    history = report["settings"]["history_done_rows"]
    rows = [["backend", "operation", "empty route ms", f"{history:,} done ms", "ratio"]]
    for s in report["summary"]:
        op = "status (report)" if s["op"] == "report" else s["op"]
        rows.append([s["backend"], op, f"{s['empty_ms']:.3f}", f"{s['history_ms']:.3f}", f"{s['ratio']:.2f}"])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1_000_000, help="done rows on the route with history")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(history=args.history, backend=args.backend, quick=args.quick)
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
