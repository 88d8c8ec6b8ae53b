"""Scenario 5: CPU cost per message of the whole cloning process, against plain Telethon doing the same sends.

    .venv/bin/python -m bench.cost [--messages 2000] [--rounds 2] [--quick]

A channel of ``--messages`` text messages (with entities) is cloned into an empty target by one
``python -m telepi run DIR`` (``MODE=copy``, ``SEND_INTERVAL=0``, ``LIVE=false``, no rate rule), and
its user + system CPU time is read with ``getrusage(RUSAGE_CHILDREN)`` around the child: start-up,
login, planning, checkpoint, sends and shut-down, everything the process does. The same child cost is
measured for an empty source (start-up and shut-down only), so the marginal cost per message shows
apart from the fixed one. The baseline is a plain Telethon script in its own process that does the
least a cloner must: read the history 100 at a time and ``send_message`` each text with its entities,
no checkpoint. Runs are interleaved over ``--rounds`` rounds (the median counts); the sandbox serves
them all from this process and counts every request (requests per message are reported too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    SOURCE,
    bench_tmp,
    contents,
    print_table,
    run_sessions,
    session_dirs,
    verify_copies,
    world,
)

TEXT_ONLY = {"text": 85, "reply": 15}
EMPTY = "empty"


# ---- the baseline child: plain Telethon ----------------------------------------------------------


async def _telethon_copy(config: dict[str, Any]) -> None:
    from telethon import TelegramClient
    from telethon.crypto import rsa
    from telethon.sessions import SQLiteSession

    rsa.add_key(Path(config["pem"]).read_text(), old=False)
    client = TelegramClient(
        SQLiteSession(config["session"]), config["api_id"], config["api_hash"], receive_updates=False
    )
    await client.connect()
    try:
        source = await client.get_input_entity(config["source"])
        target = await client.get_input_entity(config["target"])
        sent = 0
        async for message in client.iter_messages(source, reverse=True):
            if message.message:
                await client.send_message(
                    target, message.message, formatting_entities=message.entities, link_preview=False
                )
                sent += 1
        print(json.dumps({"sent": sent}), flush=True)
    finally:
        await client.disconnect()


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _run_telethon(sb: Any, directory: Path, source: str, target: str) -> tuple[float, float]:
    """Seconds and CPU seconds of the plain Telethon child copying ``source`` into ``target``."""
    import time

    from telepi.sandbox.sandbox import API_HASH, API_ID

    config = {
        "session": str(directory / directory.name),
        "pem": str(sb.public_key_path),
        "api_id": API_ID,
        "api_hash": API_HASH,
        "source": sb.chat(source).id,
        "target": sb.chat(target).id,
    }
    before, started = _cpu_children(), time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.cost", "telethon", json.dumps(config), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the Telethon baseline failed with exit code {proc.returncode}")
    return time.perf_counter() - started, _cpu_children() - before


# ---- the scenario --------------------------------------------------------------------------------


async def _run(messages: int, rounds: int) -> dict[str, Any]:
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="telepi-bench-cost-", dir=bench_tmp()) as tmp:
        targets = [f"{kind}{r}" for r in range(rounds) for kind in ("telepi", "telethon", "idle")]
        spec = world(messages, targets, seed=5, mix=TEXT_ONLY)
        spec["chats"].append({"name": EMPTY, "kind": "channel", "title": "Empty", "owner": "alice", "members": ["bob"]})
        async with Sandbox(world=spec, state_dir=Path(tmp) / "sandbox", server_key=shared_server_key()) as sb:
            texts = len([m for m in contents(sb, SOURCE) if m["text"]])
            for r in range(rounds):
                for kind in ("telepi", "telethon", "idle"):
                    target = f"{kind}{r}"
                    root = Path(tmp) / target
                    checkpoint = root / "shared" / "checkpoint.db"
                    # the idle run: the same process with nothing to copy (an empty source), its fixed cost
                    source = EMPTY if kind == "idle" else SOURCE
                    [directory] = await session_dirs(
                        sb, root, 1, target, checkpoint, source=source, MODE="copy", ORDERED="true"
                    )
                    sb.faults.calls.clear()
                    if kind == "telethon":
                        seconds, cpu = await _run_telethon(sb, directory, SOURCE, target)
                    else:
                        done = await run_sessions([directory], 600)
                        seconds, cpu = done.seconds, done.cpu_seconds
                    copied = 0 if kind == "idle" else texts
                    check = verify_copies(sb, target, copied) if kind != "idle" else {"ok": True}
                    requests = sum(sb.faults.calls.values())
                    run = {
                        "kind": kind,
                        "round": r,
                        "messages": copied,
                        "seconds": seconds,
                        "cpu_seconds": cpu,
                        "requests": requests,
                        "requests_per_message": requests / copied if copied else None,
                        "check": check,
                    }
                    runs.append(run)
                    print(
                        f"  cost round {r + 1}/{rounds}: {kind:<8} {copied:5d} messages  {seconds:6.1f} s  "
                        f"{cpu:6.2f} CPU s  {requests:5d} requests  copies {'ok' if check['ok'] else check}",
                        flush=True,
                    )

    def median(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["kind"] == kind))

    idle = median("idle", "cpu_seconds")
    telepi, telethon = median("telepi", "cpu_seconds"), median("telethon", "cpu_seconds")
    per_1000 = telepi / texts * 1000
    marginal = (telepi - idle) / texts * 1000
    baseline = telethon / texts * 1000
    return {
        "scenario": "cost",
        "settings": {
            "messages": texts,
            "mix": "text only (85% plain, 15% replies), entities included",
            "rounds": rounds,
            "env": {"MODE": "copy", "ORDERED": "true", "SEND_INTERVAL": "0", "LIVE": "false"},
            "measure": "getrusage(RUSAGE_CHILDREN) user+system around each child process",
            "baseline": "plain Telethon child: iter_messages + send_message per text, no checkpoint",
            "order": "telepi, telethon, idle telepi (empty source), per round",
        },
        "runs": runs,
        "summary": {
            "telepi_cpu_seconds_per_1000": per_1000,
            "telepi_marginal_cpu_seconds_per_1000": marginal,
            "telepi_fixed_cpu_seconds": idle,
            "telethon_cpu_seconds_per_1000": baseline,
            "ratio_telepi_to_telethon": per_1000 / baseline,
            "telepi_requests_per_message": median("telepi", "requests_per_message"),
            "telethon_requests_per_message": median("telethon", "requests_per_message"),
        },
        "ok": all(r["check"]["ok"] for r in runs),
    }


def run(*, messages: int = 2000, rounds: int = 2, quick: bool = False) -> dict[str, Any]:
    if quick:
        messages, rounds = min(messages, 100), 1
    return asyncio.run(_run(messages, rounds))


def table(report: dict[str, Any]) -> list[list[str]]:
    s = report["summary"]
    return [
        ["process", "CPU s / 1000 msgs", "requests / msg"],
        ["telepi run", f"{s['telepi_cpu_seconds_per_1000']:.2f}", f"{s['telepi_requests_per_message']:.2f}"],
        ["  of which per message (minus idle run)", f"{s['telepi_marginal_cpu_seconds_per_1000']:.2f}", ""],
        [
            "plain Telethon (baseline)",
            f"{s['telethon_cpu_seconds_per_1000']:.2f}",
            f"{s['telethon_requests_per_message']:.2f}",
        ],
        ["telepi ÷ Telethon", f"{s['ratio_telepi_to_telethon']:.2f}", ""],
    ]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["telethon"]:
        asyncio.run(_telethon_copy(json.loads(argv[1])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(messages=args.messages, rounds=args.rounds, quick=args.quick)
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
