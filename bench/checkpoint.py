"""Scenario 4: the shared checkpoint under several processes: claim → mark_sending → complete per unit.

    .venv/bin/python -m bench.checkpoint [--backend sqlite|postgres|both] [--items 20000] [--rounds 3]
                                         [--claim 10] [--quick]

Each worker process runs the engine's transactions for unordered copy mode through the store ``telepi run``
opens: on one SQLite file (WAL, ``synchronous=FULL``) or on one PostgreSQL database (a throwaway server
started like the tests' own, ``telepi/sandbox/pgserver.py``, on loopback, but durable: fsync and
synchronous_commit on, PostgreSQL's defaults). It claims up to
``--claim`` items (an album is always claimed whole), then for each unit ``mark_sending`` and ``complete``.
No Telegram, no sleeps: this is the checkpoint's own ceiling. 1, 4 and 16 processes work a fresh checkpoint
each, interleaved over ``--rounds`` rounds (the median counts); the 1-process run is the baseline. On a
2-core machine 16 processes (and the PostgreSQL server beside them) share 2 cores: CPU-bound.

Verified after every run, so a fast but wrong checkpoint cannot score: every item was claimed exactly
once in total (leases are long enough never to expire, so a second claim would be a double lease),
every ``mark_sending`` succeeded, every ``complete`` changed exactly its unit's rows, and the store
reports every item done.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, bench_tmp, print_table

PROCESSES = (1, 4, 16)
BACKENDS = ("sqlite", "postgres")
LEASE_SECONDS = 600.0  # never expires during a run: any second claim of an item is a double lease


def new_items(count: int) -> list[Any]:
    """``count`` items, about two in seven in albums (the crash test's pattern: albums of 2)."""
    from telepi.checkpoint import NewItem

    items = []
    for msg_id in range(1, count + 1):
        album = 1_000_000 + msg_id // 5 if msg_id % 7 == 0 or (msg_id - 1) % 7 == 0 else None
        items.append(NewItem(msg_id, grouped_id=album))
    return items


# ---- the worker process --------------------------------------------------------------------------


def worker(db_path: str, route_id: int, session: str, claim: int) -> None:
    """Claim → mark_sending → complete until the route is finished; reports on stdout as JSON."""
    from telepi.checkpoint import open_checkpoint

    store = open_checkpoint(db_path, create=False)
    store.register_session(session, socket.gethostname(), os.getpid())
    store.head(route_id)  # opens the store's connections, as a session does before its first claim: not timed
    print("ready", flush=True)
    sys.stdin.readline()  # the go signal: process start-up is not timed
    started = time.time()
    cpu = time.process_time()
    kernel = os.times().system
    claimed: list[int] = []
    bad_marks = bad_completes = units = idle = 0
    while True:
        items = store.claim(route_id, session, claim, LEASE_SECONDS)
        if not items:
            if store.head(route_id) is None:
                break
            idle += 1
            time.sleep(0.001)  # the last units are held by others
            continue
        claimed.extend(item.source_msg_id for item in items)
        groups: dict[object, list[int]] = {}
        for item in items:
            groups.setdefault(item.grouped_id or ("single", item.source_msg_id), []).append(item.source_msg_id)
        for ids in groups.values():
            units += 1
            if not store.mark_sending(route_id, ids, session):
                bad_marks += 1
                continue
            changed = store.complete(route_id, {i: 1_000_000 + i for i in ids}, session)
            if changed != len(ids):
                bad_completes += 1
    ended = time.time()
    cpu = time.process_time() - cpu
    kernel = os.times().system - kernel
    store.close()
    result = {
        "claimed": claimed,
        "units": units,
        "idle_claims": idle,
        "bad_marks": bad_marks,
        "bad_completes": bad_completes,
        "started": started,
        "ended": ended,
        "cpu": cpu,
        "kernel_cpu": kernel,
    }
    print(json.dumps(result), flush=True)


# ---- one run ---------------------------------------------------------------------------------------


def run_once(workdir: Path, processes: int, items: int, claim: int, server: Any = None) -> dict[str, Any]:
    """``processes`` workers on a fresh checkpoint of ``items`` items (a new database of ``server``, else a
    new SQLite file); their rate and the checks."""
    from telepi.checkpoint import open_checkpoint

    db: Path | str = (
        server.new_database() if server is not None else workdir / f"checkpoint-{processes}-{time.monotonic_ns()}.db"
    )
    store = open_checkpoint(db)
    route = store.route("-1001", "-1002")
    store.enqueue(route.id, new_items(items))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.checkpoint", "worker", str(db), str(route.id), f"w{i}", str(claim)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a checkpoint worker did not start")
        server_cpu = server.cpu_seconds() if server is not None else 0.0
        began = time.time()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, _ = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"a checkpoint worker failed with exit code {child.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    elapsed = max(r["ended"] for r in results) - began
    # The server's share is read once its backends have gone (the workers closed their pools): it also
    # holds the verification's reads below, which are not counted, and the workers' disconnects, which are.
    server_cpu = server.cpu_seconds() - server_cpu if server is not None else 0.0
    client_cpu = sum(r["cpu"] for r in results)
    claimed = [i for r in results for i in r["claimed"]]
    counts = store.report(failures=0).routes[0].counts
    store.close()
    if isinstance(db, Path):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    double_leases = len(claimed) - len(set(claimed))
    checks = {
        "double_leases": double_leases,
        "never_claimed": items - len(set(claimed)),
        "failed_mark_sending": sum(r["bad_marks"] for r in results),
        "complete_rowcount_mismatches": sum(r["bad_completes"] for r in results),
        "done": counts["done"],
    }
    ok = checks["done"] == items and not any(v for k, v in checks.items() if k != "done")
    units = sum(r["units"] for r in results)
    return {
        "idle_claims": sum(r["idle_claims"] for r in results),
        "backend": "sqlite" if server is None else "postgres",
        "processes": processes,
        "items": items,
        "units": units,
        "seconds": elapsed,
        "items_per_s": items / elapsed,
        "units_per_s": units / elapsed,
        "per_process_items": [len(r["claimed"]) for r in results],
        # CPU per item, clients (the timed loops) and server: what the 2 shared cores must give each item,
        # whatever else runs on them; cores / this is the rate that CPU alone allows.
        "client_cpu_us_per_item": 1e6 * client_cpu / items,
        # the kernel's part of it (sockets, waking up): grows with the processes sharing the cores
        "client_kernel_cpu_us_per_item": 1e6 * sum(r["kernel_cpu"] for r in results) / items,
        "server_cpu_us_per_item": 1e6 * server_cpu / items,
        "checks": checks,
        "ok": ok,
    }


def run(
    *, items: int = 20_000, rounds: int = 3, claim: int = 10, quick: bool = False, backend: str = "both"
) -> dict[str, Any]:
    """The scenario: rounds of 1, 4 and 16 processes per backend, interleaved; medians and ratios to 1 process."""
    from telepi.sandbox.pgserver import start_server

    if quick:
        items, rounds = min(items, 1_000), 1
    backends = list(BACKENDS) if backend == "both" else [backend]
    server = start_server(durable=True) if "postgres" in backends else None
    skipped = None
    if "postgres" in backends and server is None:
        backends.remove("postgres")
        skipped = "postgres: PostgreSQL is not installed here (scripts/setup.sh dev installs it)"
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="telepi-bench-checkpoint-", dir=bench_tmp()) as tmp:
            for round_no in range(rounds):
                for name in backends:
                    for processes in PROCESSES:
                        result = run_once(Path(tmp), processes, items, claim, server if name == "postgres" else None)
                        result["round"] = round_no
                        runs.append(result)
                        checks = "ok" if result["ok"] else result["checks"]
                        print(
                            f"  checkpoint round {round_no + 1}/{rounds}: {name:<8} {processes:2d} process(es) "
                            f"{result['items_per_s']:8.0f} items/s  CPU/item client "
                            f"{result['client_cpu_us_per_item']:4.0f} µs "
                            f"(kernel {result['client_kernel_cpu_us_per_item']:3.0f}) server "
                            f"{result['server_cpu_us_per_item']:4.0f} µs"
                            f"  load {os.getloadavg()[0]:.1f}  checks {checks}",
                            flush=True,
                        )
    finally:
        if server is not None:
            server.stop()
    summary = []
    for name in backends:
        mine = [r for r in runs if r["backend"] == name]
        base = statistics.median(r["items_per_s"] for r in mine if r["processes"] == 1)
        for processes in PROCESSES:
            rates = [r["items_per_s"] for r in mine if r["processes"] == processes]
            median = statistics.median(rates)
            summary.append(
                {
                    "backend": name,
                    "processes": processes,
                    "items_per_s": median,
                    "items_per_s_all": rates,
                    "ratio_to_1": median / base,
                    "ok": all(r["ok"] for r in mine if r["processes"] == processes),
                }
            )
    targets: dict[str, Any] = {
        "double_leases": {
            "target": 0,
            "measured": sum(r["checks"]["double_leases"] for r in runs),
            "met": all(r["ok"] for r in runs),
        }
    }
    for s in summary:
        if s["backend"] == "postgres" and s["processes"] == 16:
            targets["postgres_items_per_s_at_16"] = {
                "target": 2000,
                "measured": s["items_per_s"],
                "met": s["items_per_s"] >= 2000,
            }
    return {
        "scenario": "checkpoint",
        "settings": {
            "backends": backends,
            "processes": list(PROCESSES),
            "items": items,
            "rounds": rounds,
            "claim_limit": claim,
            "albums": "about 2 in 7 items, in albums of 2",
            "transactions_per_unit": "claim (per batch) + mark_sending + complete",
            "sqlite": "WAL, synchronous=FULL, busy_timeout 30 s (SqliteStore)",
            "postgres": "PostgresStore (pool of 4 per process), a throwaway local server on loopback with "
            "PostgreSQL's durable defaults: fsync, synchronous_commit, full_page_writes on "
            "(telepi/sandbox/pgserver.py)",
            "db_dir": str(bench_tmp() or tempfile.gettempdir()),
        },
        "skipped_backends": skipped,
        "runs": runs,
        "summary": summary,
        "targets": targets,
        "ok": all(r["ok"] for r in runs),
    }


def table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["backend", "processes", "items/s (median)", "× 1 process", "checks"]]
    for s in report["summary"]:
        rows.append(
            [
                s["backend"],
                str(s["processes"]),
                f"{s['items_per_s']:.0f}",
                f"{s['ratio_to_1']:.2f}",
                "ok" if s["ok"] else "FAILED",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        worker(argv[1], int(argv[2]), argv[3], int(argv[4]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--claim", type=int, default=10, help="claim limit (the engine: 10 unordered, 1 ordered)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(items=args.items, rounds=args.rounds, claim=args.claim, quick=args.quick, backend=args.backend)
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
