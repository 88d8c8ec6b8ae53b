"""``telepi verify`` on a big chat against just reading both histories (issue 13: "on a 100,000-message chat
it finishes in the time the history reads take").

    .venv/bin/python -m bench.verify [--messages 100000] [--rounds 2] [--quick]

The sandbox's world is filled directly (no sends through Telethon): a channel of ``--messages`` text
messages, and in the target channel one copy of each posted by the cloning account, recorded in a new
checkpoint as done (``Store.adopt``, as ``telepi verify --adopt`` records them). Then, ``--rounds`` times
in turn in the same run: the baseline — one Telethon client of that account reading both histories with
``iter_messages(reverse=True)`` — and ``verify`` itself (connect, resolve both chats, read both
histories, reconcile with the checkpoint). Reported: seconds of each and verify ÷ baseline. The verify
must find nothing to fix (``ok``). ``--quick``: 2,000 messages, one round (a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import OWNER, SOURCE, bench_tmp, print_table, world

TARGET = "target"
ACCOUNT = "bob"


def fill(sb: Any, count: int) -> list[tuple[int, int]]:
    """``count`` source messages and their copies by ACCOUNT in the target, in one world transaction."""
    from telepi.sandbox.world.records import NewMessage

    w = sb.world
    source, target = sb.chat(SOURCE).id, sb.chat(TARGET).id
    owner, account = sb.account(OWNER).id, sb.account(ACCOUNT).id
    pairs: list[tuple[int, int]] = []
    with w.batch():
        for i in range(count):
            text = f"message {i}: " + "lorem ipsum " * (i % 7)
            posted = w.post(owner, source, NewMessage(text=text)).in_box(source).message.id
            copied = w.post(account, target, NewMessage(text=text)).in_box(target).message.id
            pairs.append((posted, copied))
    return pairs


async def _baseline(sb: Any, settings: Any) -> float:
    """What the history reads alone take: both chats read oldest first, as verify reads them (without
    Telethon's pause of 1 s per 100 messages, which verify does not make either)."""
    from telepi.telegram.client import make_client

    client = make_client(settings, receive_updates=False)
    await client.connect()
    try:
        source, target = await client.get_entity(sb.chat(SOURCE).id), await client.get_entity(sb.chat(TARGET).id)
        started = time.perf_counter()
        for peer in (source, target):
            async for _message in client.iter_messages(peer, reverse=True, wait_time=0):
                pass
        return time.perf_counter() - started
    finally:
        await client.disconnect()


async def _verify(settings: Any) -> tuple[float, Any]:
    from telepi.commands.verify import Options, verify

    started = time.perf_counter()
    outcome = await verify(settings, Options())
    return time.perf_counter() - started, outcome


async def _run(messages: int, rounds: int, tmp: Path) -> dict[str, Any]:
    from telepi.checkpoint import open_store
    from telepi.checkpoint.model import NewItem
    from telepi.config import load_settings
    from telepi.sandbox.sandbox import Sandbox

    async with Sandbox(world=world(0, [TARGET]), state_dir=tmp / "state") as sb:
        started = time.perf_counter()
        pairs = fill(sb, messages)
        filled = time.perf_counter() - started
        directory = await sb.session_dir(
            tmp / "sessions" / "session1",
            ACCOUNT,
            SOURCE_CHAT=str(sb.chat(SOURCE).id),
            TARGET_CHAT=str(sb.chat(TARGET).id),
            READ_INTERVAL="0",  # no quota in this sandbox: the bench measures the engine
        )
        settings = load_settings(directory, {})
        store = open_store(settings, create=True)
        try:
            route = store.route(str(sb.chat(SOURCE).id), str(sb.chat(TARGET).id))
            store.adopt(route.id, [(NewItem(s), t) for s, t in pairs], [], max(t for _, t in pairs))
        finally:
            store.close()
        runs: list[dict[str, Any]] = []
        ok = True
        for _ in range(rounds):  # interleaved: a machine that slows down slows both sides
            baseline = await _baseline(sb, settings)
            took, outcome = await _verify(settings)
            found = len(outcome.result.findings)
            ok = ok and found == 0 and outcome.source_count == outcome.target_count == messages
            runs.append({"baseline_seconds": round(baseline, 2), "verify_seconds": round(took, 2), "findings": found})
    baseline = statistics.median(r["baseline_seconds"] for r in runs)
    verify_seconds = statistics.median(r["verify_seconds"] for r in runs)
    return {
        "scenario": "verify",
        "settings": {"messages": messages, "rounds": rounds},
        "fill_seconds": round(filled, 1),
        "runs": runs,
        "summary": {
            "baseline_seconds": round(baseline, 2),
            "verify_seconds": round(verify_seconds, 2),
            "ratio": round(verify_seconds / baseline, 2),
        },
        "ok": ok,
    }


def run(*, messages: int = 100_000, rounds: int = 2, quick: bool = False) -> dict[str, Any]:
    if quick:
        messages, rounds = 2_000, 1
    with tempfile.TemporaryDirectory(prefix="telepi-bench-verify-", dir=bench_tmp()) as tmp:
        report = asyncio.run(_run(messages, rounds, Path(tmp)))
    report["quick"] = quick
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(messages=args.messages, rounds=args.rounds, quick=args.quick)
    rows = [["round", "baseline s", "verify s", "findings"]]
    rows += [
        [str(i), str(r["baseline_seconds"]), str(r["verify_seconds"]), str(r["findings"])]
        for i, r in enumerate(report["runs"], 1)
    ]
    print_table(rows)
    summary = report["summary"]
    print(
        f"{report['settings']['messages']} messages (filled in {report['fill_seconds']}s): verify "
        f"{summary['verify_seconds']}s, reading both histories {summary['baseline_seconds']}s, ratio {summary['ratio']}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
