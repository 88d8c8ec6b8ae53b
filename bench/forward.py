"""Scenario 3: forward batching. ``MODE=forward`` against ``MODE=copy`` on one unprotected channel.

    .venv/bin/python -m bench.forward [--messages 10000] [--per-minute 900] [--window 1] [--cap 30] [--quick]

One session (``python -m telepi run DIR``, ``SEND_INTERVAL=0``, ``LIVE=false``, ``ORDERED=false``)
clones ``--messages`` small messages (text and photos) into an empty target, first with
``MODE=forward``, then with ``MODE=copy``, under the scaling scenario's rate rule (each send method
at most ``--per-minute`` calls per minute per account). The sandbox counts every send request it
receives (``Faults.calls``; flood-waited attempts included). A run still going after ``--cap``
seconds is stopped with SIGTERM (a clean stop) and measured on what it copied by then: copy mode is
rate-bound and would need many minutes for 10,000 messages, and so is an engine that does not batch
forwards. Reported: requests per 100 messages and messages/min for each mode, and forward ÷ copy.
After each run the target must hold exactly one copy of each message the checkpoint marks done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    SEND_METHODS,
    SOURCE,
    bench_tmp,
    contents,
    copy_key,
    phases,
    print_table,
    run_sessions,
    send_rate_rules,
    session_dirs,
    world,
)

MODES = ("forward", "copy")
TARGET_REQUESTS_PER_100 = 1.0


def _verify_partial(sb: Any, target: str, done: int) -> dict[str, Any]:
    """Every copy is of a distinct source message, and there are as many as the checkpoint marks done."""
    source = [copy_key(m) for m in contents(sb, SOURCE)]
    copies = [copy_key(m) for m in contents(sb, target)]
    remaining: dict[tuple[str, str], int] = {}
    for key in source:
        remaining[key] = remaining.get(key, 0) + 1
    extra = 0
    for key in copies:
        if remaining.get(key, 0) > 0:
            remaining[key] -= 1
        else:
            extra += 1
    return {
        "copies": len(copies),
        "done_in_checkpoint": done,
        "duplicates": extra,
        "ok": extra == 0 and len(copies) == done,
    }


async def _run(messages: int, per_minute: int, window: float, cap: float) -> dict[str, Any]:
    from telepi.checkpoint import SqliteStore
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="telepi-bench-forward-", dir=bench_tmp()) as tmp:
        spec = world(messages, list(MODES), seed=3)
        async with Sandbox(world=spec, state_dir=Path(tmp) / "sandbox", server_key=shared_server_key()) as sb:
            for mode in MODES:
                root = Path(tmp) / mode
                checkpoint = root / "shared" / "checkpoint.db"
                directories = await session_dirs(sb, root, 1, mode, checkpoint, MODE=mode, ORDERED="false")
                sb.faults.calls.clear()
                with send_rate_rules(sb.faults, per_minute, window):
                    done = await run_sessions(directories, cap + 120, stop_after=cap)
                store = SqliteStore(checkpoint, create=False)
                counts = store.report(failures=0).routes[0].counts
                store.close()
                copied = counts["done"]
                check = _verify_partial(sb, mode, copied)
                if not done.stopped:
                    check["all_copied"] = copied == messages
                    check["ok"] = check["ok"] and check["all_copied"]
                calls = {m: sb.faults.calls[m] for m in SEND_METHODS if sb.faults.calls[m]}
                sends = sum(calls.values())
                assert copied == 0 or sends > 0, "Faults.calls must count every send request the sandbox received"
                run = {
                    "mode": mode,
                    "messages": messages,
                    "copied": copied,
                    "stopped_at_cap": done.stopped,
                    "seconds": done.seconds,
                    "messages_per_min": copied / done.seconds * 60,
                    "send_requests": sends,
                    "send_requests_by_method": calls,
                    "requests_per_100_messages": 100 * sends / max(copied, 1),
                    "get_messages_requests": sb.faults.calls["GetMessagesRequest"],
                    **phases(done, checkpoint),
                    "sessions_cpu_seconds": done.cpu_seconds,
                    "check": check,
                }
                runs.append(run)
                print(
                    f"  forward: MODE={mode:<7} {copied:6d} copied in {done.seconds:6.1f} s"
                    f"{' (stopped at the cap)' if done.stopped else ''}  {run['messages_per_min']:7.0f} msg/min  "
                    f"{sends} send requests ({run['requests_per_100_messages']:.1f} per 100)  "
                    f"copies {'ok' if check['ok'] else check}",
                    flush=True,
                )
    forward, copy = runs
    per_100 = forward["requests_per_100_messages"]
    return {
        "scenario": "forward",
        "settings": {
            "messages": messages,
            "mix": "70% text, 30% photos (1-8 KiB), plain unprotected channel",
            "sessions": 1,
            "cap_seconds": cap,
            "rate_rule": {
                "methods": list(SEND_METHODS),
                "per_minute_per_account_per_method": per_minute,
                "window_seconds": window,
                "limit_per_window": max(1, round(per_minute * window / 60)),
            },
            "env": {"MODE": "forward / copy", "SEND_INTERVAL": "0", "LIVE": "false", "ORDERED": "false"},
            "order": "forward, then copy",
        },
        "runs": runs,
        "summary": {
            "forward_requests_per_100": per_100,
            "copy_requests_per_100": copy["requests_per_100_messages"],
            "forward_messages_per_min": forward["messages_per_min"],
            "copy_messages_per_min": copy["messages_per_min"],
            "speedup_forward_over_copy": forward["messages_per_min"] / max(copy["messages_per_min"], 1e-9),
        },
        "targets": {
            "forward_requests_per_100_messages": {
                "target": TARGET_REQUESTS_PER_100,
                "measured": per_100,
                "met": per_100 <= TARGET_REQUESTS_PER_100,
            }
        },
        "ok": all(r["check"]["ok"] for r in runs),
    }


def run(
    *, messages: int = 10_000, per_minute: int = 900, window: float = 1.0, cap: float = 30, quick: bool = False
) -> dict[str, Any]:
    if quick:
        messages, per_minute, cap = min(messages, 200), max(per_minute, 6000), min(cap, 30)
    return asyncio.run(_run(messages, per_minute, window, cap))


def table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["mode", "copied", "seconds", "msg/min", "send requests", "per 100 msgs", "copies"]]
    for r in report["runs"]:
        rows.append(
            [
                r["mode"] + (" (cap)" if r["stopped_at_cap"] else ""),
                str(r["copied"]),
                f"{r['seconds']:.1f}",
                f"{r['messages_per_min']:.0f}",
                str(r["send_requests"]),
                f"{r['requests_per_100_messages']:.1f}",
                "ok" if r["check"]["ok"] else "WRONG",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forward", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--per-minute", type=int, default=900, help="sends per minute per account and method")
    parser.add_argument("--window", type=float, default=1.0, help="seconds of the sliding rate window")
    parser.add_argument("--cap", type=float, default=30, help="stop a run after this many seconds")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(messages=args.messages, per_minute=args.per_minute, window=args.window, cap=args.cap, quick=args.quick)
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
