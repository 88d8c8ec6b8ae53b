"""Scenario: the live mirror's latency, post → copy in the target.

    .venv/bin/python -m bench.live [--sessions 1,3] [--posts 40] [--albums 8] [--gap 0.25] [--burst 200]
                                   [--send-interval 0] [--quick]

One ``python -m telepi run DIR`` process per session (``LIVE=true``, ``MODE=copy``, ``SEND_INTERVAL=0`` unless
``--send-interval``) follows a channel with an empty history; the sandbox then posts ``--posts`` texts and
``--albums`` albums of 3 photos, one every ``--gap`` seconds, and the target is looked at every 2 ms: the latency
of a post is the time from the post to its copy's appearance (of an album: from the album to its last copy);
then 10 of the posts are edited and deleted (``SYNC_DELETES=true``): source change -> copy changed / gone; then a
burst of ``--burst`` posts in 2 s: from the last post to its copy. One run per ``--sessions`` count (all on the
same route). Baseline, in the same run and sandbox: an echo client, a Telethon client of another cloner account
that sends a copy from inside its NewMessage handler, the fastest any cloner built on updates could be.
Reported: median, p99, max of each, the ratio of telepi's median to the echo's, and the CPU of the idle
``telepi run`` processes over ``--idle`` seconds.
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

from bench.common import SOURCE, bench_tmp, contents, print_table, session_dirs, start_sessions, world

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


async def _until(predicate: Any, timeout: float = 30.0) -> float:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError("not reached in time")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def _changes(sb: Any, target: str, count: int, gap: float) -> dict[str, list[float]]:
    """Edit then delete ``count`` of the copied live posts: source change → the copy changed or gone."""
    latencies: dict[str, list[float]] = {"edit": [], "delete": []}
    posted = [m for m in contents(sb, SOURCE) if m["text"].startswith("live post")][:count]
    for message in posted:
        text = message["text"] + " (edited)"
        started = time.perf_counter()
        await sb.edit(SOURCE, message["id"], text)
        latencies["edit"].append(
            await _until(lambda t=text: any(m["text"] == t for m in contents(sb, target))) - started
        )
        await asyncio.sleep(gap)
    for message in posted:
        text = message["text"] + " (edited)"
        started = time.perf_counter()
        await sb.delete(SOURCE, message["id"])
        gone = await _until(lambda t=text: all(m["text"] != t for m in contents(sb, target)))
        latencies["delete"].append(gone - started)
        await asyncio.sleep(gap)
    return latencies


async def _burst(sb: Any, target: str, count: int, seconds: float) -> float:
    """``count`` posts within ``seconds``: from the last post to the last copy."""
    have = len(contents(sb, target))
    for n in range(count):
        await sb.post(SOURCE, f"burst {n}")
        await asyncio.sleep(seconds / count)
    last = time.perf_counter()
    return await _copied(sb, target, have + count, timeout=120) - last


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


async def _session_run(
    sessions: int, posts: int, albums: int, gap: float, idle: float, burst: int, send_interval: float
) -> dict[str, Any]:
    from telepi.sandbox.sandbox import Sandbox

    spec = world(0, ["target", "echo"])
    with tempfile.TemporaryDirectory(prefix="telepi-bench-live-", dir=bench_tmp()) as tmp:
        async with Sandbox(world=spec, state_dir=Path(tmp) / "state") as sb:
            directories = await session_dirs(
                sb,
                Path(tmp),
                sessions,
                "target",
                Path(tmp) / "checkpoint.db",
                LIVE="true",
                MODE="copy",
                SYNC_DELETES="true",
                SEND_INTERVAL=str(send_interval),
            )
            processes = await start_sessions(directories)
            try:
                await sb.post(SOURCE, "warm-up")  # the sessions are up once this is copied
                await _copied(sb, "target", 1, timeout=60)
                await asyncio.sleep(2)  # every session connected and following
                cpu_before = sum(_cpu(p.pid) for p in processes)
                await asyncio.sleep(idle)
                idle_cpu = (sum(_cpu(p.pid) for p in processes) - cpu_before) / idle * 100 / sessions
                telepi = await _posts(sb, "target", posts, albums, gap)
                telepi.update(await _changes(sb, "target", min(10, posts), gap))
                burst_last = await _burst(sb, "target", burst, 2.0)
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    await process.wait()
            copied = [(m["text"], m["media"] is not None) for m in contents(sb, "target")][1:]  # after the warm-up
            source = [(m["text"], m["media"] is not None) for m in contents(sb, SOURCE)][1:]
            echo = await _echo(sb, posts, albums, gap) if sessions == 1 else {}  # posts more into the source
    result: dict[str, Any] = {
        "sessions": sessions,
        "telepi": {kind: _summary(values) for kind, values in telepi.items() if values},
        "echo": {kind: _summary(values) for kind, values in echo.items() if values},
        "burst_last_seconds": burst_last,
        "idle_cpu_percent_per_session": idle_cpu,
        "copies_once_in_order": copied == source,
    }
    if echo:
        result["ratio_to_echo"] = {
            kind: result["telepi"][kind]["median"] / result["echo"][kind]["median"] for kind in echo
        }
    return result


async def _run(
    sessions: list[int], posts: int, albums: int, gap: float, idle: float, burst: int, send_interval: float = 0.0
) -> dict[str, Any]:
    runs = [await _session_run(k, posts, albums, gap, idle, burst, send_interval) for k in sessions]
    return {
        "settings": {
            "posts": posts,
            "albums": albums,
            "album_size": 3,
            "gap_seconds": gap,
            "idle_seconds": idle,
            "burst": burst,
            "burst_seconds": 2.0,
            "send_interval": send_interval,
        },
        "runs": runs,
        "targets": TARGETS,
    }


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(result: dict[str, Any]) -> None:
    rows = [["", "median s", "p99 s", "max s", "n", "÷ echo median"]]
    for run in result["runs"]:
        for who in ("telepi", "echo"):
            for kind, s in run[who].items():
                ratio = (
                    f"{run['ratio_to_echo'][kind]:.1f}"
                    if who == "telepi" and kind in run.get("ratio_to_echo", {})
                    else ""
                )
                name = f"{who} {kind}" + (f" ({run['sessions']} sessions)" if who == "telepi" else "")
                rows.append([name, f"{s['median']:.3f}", f"{s['p99']:.3f}", f"{s['max']:.3f}", str(s["count"]), ratio])
    print_table(rows)
    for run in result["runs"]:
        print(
            f"  {run['sessions']} sessions: burst of {result['settings']['burst']} in 2 s copied "
            f"{run['burst_last_seconds']:.2f} s after the last post; "
            f"idle CPU {run['idle_cpu_percent_per_session']:.2f} % per session; "
            f"copies once and in order: {run['copies_once_in_order']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live")
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--albums", type=int, default=8)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two posts")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--sessions", default="1,3", help="session counts, one run each")
    parser.add_argument("--burst", type=int, default=200, help="posts in the 2-second burst")
    parser.add_argument("--send-interval", type=float, default=0.0, help="SEND_INTERVAL of the sessions")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 posts, 2 albums, 2 s idle, burst 20")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.posts, args.albums, args.idle, args.burst = 5, 2, 2.0, 20
    sessions = [int(k) for k in args.sessions.split(",")]
    result = asyncio.run(_run(sessions, args.posts, args.albums, args.gap, args.idle, args.burst, args.send_interval))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if all(run["copies_once_in_order"] for run in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
