"""Scenario: the live mirror's latency, post → copy in the target.

    .venv/bin/python -m bench.live [--posts 40] [--albums 8] [--gap 0.25] [--quick]

One ``python -m telepi run DIR`` process (``LIVE=true``, ``MODE=copy``, ``SEND_INTERVAL=0``) follows a channel
with an empty history; the sandbox then posts ``--posts`` texts and ``--albums`` albums of 3 photos, one every
``--gap`` seconds, and the target is looked at every 2 ms: the latency of a post is the time from the post to
its copy's appearance (of an album: from the album to its last copy). Baseline, in the same run and sandbox:
an echo client — a Telethon client of the same account that sends a copy from inside its NewMessage handler,
the fastest any cloner built on updates could be. Reported: median, p99, max of each, the ratio of telepi's
median to the echo's, and the CPU of the idle ``telepi run`` process over ``--idle`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, SOURCE, bench_tmp, contents, print_table, session_dirs, world

TARGETS = {"text_median": 0.05, "text_p99": 0.2, "album_last": 0.6, "idle_cpu_percent": 1.0}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p99": _p99(values), "max": max(values), "count": len(values)}


async def _copied(sb: Any, target: str, count: int, timeout: float = 30.0) -> float:
    """Wait until the target holds ``count`` messages; returns the perf_counter time it was first seen."""
    deadline = time.perf_counter() + timeout
    while len(contents(sb, target)) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{target}: {len(contents(sb, target))} of {count} copies after {timeout} s")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def _posts(sb: Any, target: str, posts: int, albums: int, gap: float) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"text": [], "album": []}
    have = len(contents(sb, target))
    kinds = ["text"] * posts + ["album"] * albums
    kinds = [kinds[i] for i in sorted(range(len(kinds)), key=lambda i: (i * 7919) % len(kinds))]  # interleaved
    for n, kind in enumerate(kinds):
        started = time.perf_counter()
        if kind == "text":
            await sb.post(SOURCE, f"live post {n}")
            have += 1
        else:
            await sb.post_album(SOURCE, [{"kind": "photo", "size": 2048}] * 3, caption=f"live album {n}")
            have += 3
        latencies[kind].append(await _copied(sb, target, have) - started)
        await asyncio.sleep(gap)
    return latencies


async def _echo(sb: Any, posts: int, albums: int, gap: float) -> dict[str, list[float]]:
    """The baseline: a client that copies each new message from its update handler, nothing else."""
    from telethon import events

    client = await sb.client("carol")
    await client.get_dialogs()  # the entity cache learns the chats
    target = await client.get_input_entity(sb.chat("echo").id)

    async def copy(event: Any) -> None:
        await client.send_message(target, event.message.message or "", file=event.message.media)

    client.add_event_handler(copy, events.NewMessage(chats=[sb.chat(SOURCE).id]))
    try:
        return await _posts(sb, "echo", posts, albums, gap)
    finally:
        client.remove_event_handler(copy)


async def _run(posts: int, albums: int, gap: float, idle: float) -> dict[str, Any]:
    from telepi.sandbox.sandbox import Sandbox

    spec = world(0, ["target", "echo"])
    with tempfile.TemporaryDirectory(prefix="telepi-bench-live-", dir=bench_tmp()) as tmp:
        async with Sandbox(world=spec, state_dir=Path(tmp) / "state") as sb:
            [directory] = await session_dirs(
                sb, Path(tmp), 1, "target", Path(tmp) / "checkpoint.db", LIVE="true", MODE="copy"
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "telepi",
                "run",
                str(directory),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=(directory / "bench-stderr.log").open("wb"),
            )
            try:
                await sb.post(SOURCE, "warm-up")  # the session is up once this is copied
                await _copied(sb, "target", 1, timeout=60)
                cpu_before = _cpu(process.pid)
                await asyncio.sleep(idle)
                idle_cpu = (_cpu(process.pid) - cpu_before) / idle * 100
                telepi = await _posts(sb, "target", posts, albums, gap)
            finally:
                process.terminate()
                await process.wait()
            echo = await _echo(sb, posts, albums, gap)
            copies = [m["text"] for m in contents(sb, "target") if m["text"].startswith("live")]
    result = {
        "settings": {"posts": posts, "albums": albums, "album_size": 3, "gap_seconds": gap, "idle_seconds": idle},
        "telepi": {kind: _summary(values) for kind, values in telepi.items() if values},
        "echo": {kind: _summary(values) for kind, values in echo.items() if values},
        "idle_cpu_percent": idle_cpu,
        "copies_once_in_order": copies == sorted(set(copies), key=copies.index) and len(copies) == posts + albums,
        "targets": TARGETS,
    }
    result["ratio_to_echo"] = {
        kind: result["telepi"][kind]["median"] / result["echo"][kind]["median"] for kind in result["telepi"]
    }
    return result


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(result: dict[str, Any]) -> None:
    rows = [["", "median s", "p99 s", "max s", "n", "÷ echo median"]]
    for who in ("telepi", "echo"):
        for kind, s in result[who].items():
            ratio = f"{result['ratio_to_echo'][kind]:.1f}" if who == "telepi" else ""
            rows.append(
                [f"{who} {kind}", f"{s['median']:.3f}", f"{s['p99']:.3f}", f"{s['max']:.3f}", str(s["count"]), ratio]
            )
    print_table(rows)
    print(
        f"  idle CPU of telepi run: {result['idle_cpu_percent']:.2f} %; copies once and in order: "
        f"{result['copies_once_in_order']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live")
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--albums", type=int, default=8)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two posts")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 posts, 2 albums, 2 s idle")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.posts, args.albums, args.idle = 5, 2, 2.0
    result = asyncio.run(_run(args.posts, args.albums, args.gap, args.idle))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["copies_once_in_order"] else 1


if __name__ == "__main__":
    sys.exit(main())
