"""Streaming reupload vs Telethon's download-then-upload, side by side on the sandbox's simulated links.

    .venv/bin/python -m bench.transfer [--size-mib 512 | --big] [--rss-sizes 128 512 2048] [--link-mib 8]
                                       [--account-mib 32] [--latency-ms 20] [--connections 4] [--sweep]
                                       [--json results.json]

A protected channel holds one video of ``--size-mib``; a cloner account copies it into a target channel
twice: with ``telepi.engine.transfer`` (streaming, parts in flight on several connections) and the way
most cloners do it with Telethon (``download_media`` to a file, then ``send_file``). Each cloner runs as
its own child process, so its wall time and peak RSS (``VmHWM``) are its own; the sandbox serves both
from this process. Both copies are checked byte for byte (SHA-256 from the sandbox's file store).
The streaming side alone also copies a file of each ``--rss-sizes`` (128 MiB, 512 MiB and 2 GiB by
default), to show that its peak memory does not grow with the file; ``--big`` compares with the baseline
on a 2 GiB file (about 4 minutes more). Above 2000 MiB the cloner account has Premium, as Telegram
requires. ``--sweep`` also times the streaming side with 1, 2, 4 and 8 connections each way.

Files live on data centres, as on Telegram: the compared video on DC 4, foreign to the cloner (whose
home is DC 2), the ``--rss-sizes`` files on DCs 1, 3 and 5, and a second video of ``--size-mib`` on DC 2:
the report puts foreign-DC and home-DC throughput side by side, with the ``auth.exportAuthorization``
calls each run made (counted by the sandbox; one per foreign DC per process is the target).

The scene (:func:`world`) and the child (:func:`run_cloner`) also serve ``tests/engine/test_transfer.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "cloner"
OWNER = "alice"
SOURCE = "source"
TARGET = "target"
MiB = 1024 * 1024
GiB_MIB = 2048
MEMORY_ROWS_MIB = (128, 512, GiB_MIB)  # peak memory is shown for each of these sizes
NON_PREMIUM_MAX_MIB = 2000
TARGET_SPEEDUP = 2.0  # at least twice as fast as download_media + send_file
TARGET_LINK_FRACTION = 0.8
TARGET_PEAK_MB = 150


def world(media: Sequence[dict[str, Any]], *, premium: bool = False) -> dict[str, Any]:
    """A protected source channel with one message per media spec (world-file format), an empty
    target channel, and the cloner: a member of the source and an admin who may post in the target."""
    return {
        "accounts": [
            {"name": OWNER, "phone": "+15550000001", "code": "11111"},
            {"name": ACCOUNT, "phone": "+15550000002", "code": "22222", "premium": premium},
        ],
        "chats": [
            {
                "name": SOURCE,
                "kind": "channel",
                "title": "Protected source",
                "owner": OWNER,
                "noforwards": True,
                "members": [ACCOUNT],
                "messages": [{"text": f"item {i}", "media": dict(spec)} for i, spec in enumerate(media)],
            },
            {
                "name": TARGET,
                "kind": "channel",
                "title": "Target",
                "owner": OWNER,
                "admins": {ACCOUNT: ["post_messages"]},
            },
        ],
    }


def vm_status(field: str, pid: int | str = "self") -> int:
    """A memory figure from /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


# ---- the cloner side (child process) --------------------------------------------------------------


def _emit(kind: str, value: Any) -> None:
    print(json.dumps({kind: value}), flush=True)


async def _clone(config: dict[str, Any]) -> None:
    from telethon import TelegramClient
    from telethon.crypto import rsa
    from telethon.sessions import SQLiteSession
    from telethon.tl import functions

    from telepi.engine.transfer import TransferOptions, TransferProgress, Transfers

    rsa.add_key(Path(config["pem"]).read_text(), old=False)
    client = TelegramClient(
        SQLiteSession(config["session"]),
        config["api_id"],
        config["api_hash"],
        receive_updates=False,
        flood_sleep_threshold=0,
    )
    await client.connect()
    try:
        source = await client.get_input_entity(config["source"])
        target = await client.get_input_entity(config["target"])
        messages = await client.get_messages(source, ids=config["ids"])
        idle = vm_status("VmRSS")
        options = TransferOptions(**config["options"])

        first_part: float | None = None

        def progress(p: TransferProgress) -> None:
            nonlocal first_part
            if first_part is None and p.downloaded > 0:
                first_part = time.perf_counter() - started
            _emit("progress", asdict(p))

        started = time.perf_counter()
        async with Transfers(client, options) as transfers:
            for message in messages:
                if config["mode"] == "stream":

                    async def refresh(message: Any = message) -> Any:
                        return await client.get_messages(source, ids=message.id)

                    media = await transfers.reupload(message, refresh=refresh, progress=progress)
                    request = functions.messages.SendMediaRequest(
                        peer=target, media=media, message=message.message or "", random_id=secrets.randbits(63)
                    )
                    await client(request)
                else:  # what most cloners do: the whole file to disk, then Telethon's one-part-at-a-time upload
                    path = await client.download_media(message, file=config["workdir"] + os.sep)
                    try:
                        document = message.document
                        await client.send_file(
                            target,
                            path,
                            caption=message.message or "",
                            attributes=document.attributes,
                            mime_type=document.mime_type,
                        )
                    finally:
                        os.unlink(path)
        elapsed = time.perf_counter() - started
        _emit(
            "result",
            {"elapsed": elapsed, "first_part": first_part, "vmhwm": vm_status("VmHWM"), "idle_rss": idle},
        )
    finally:
        await client.disconnect()


async def run_cloner(
    sb: Any,
    workdir: Path,
    ids: Sequence[int],
    *,
    mode: str = "stream",
    options: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    timeout: float = 600,
) -> dict[str, Any]:
    """Copy the source messages ``ids`` into the target from a child process; returns its result
    (``elapsed`` seconds, ``vmhwm`` peak RSS and ``idle_rss`` after login, in bytes)."""
    from telepi.sandbox.sandbox import API_HASH, API_ID

    workdir.mkdir(parents=True, exist_ok=True)
    session = await sb.session_dir(workdir / "session", ACCOUNT)
    exports_before = sb.exports(ACCOUNT)
    config = {
        "session": str(session / session.name),
        "pem": str(sb.public_key_path),
        "api_id": API_ID,
        "api_hash": API_HASH,
        "source": sb.chat(SOURCE).id,
        "target": sb.chat(TARGET).id,
        "ids": list(ids),
        "mode": mode,
        "options": options or {},
        "workdir": str(workdir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.transfer",
        "clone",
        json.dumps(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    assert proc.stdout is not None
    result: dict[str, Any] | None = None

    async def read() -> None:
        nonlocal result
        assert proc.stdout is not None
        async for line in proc.stdout:
            message = json.loads(line)
            if "progress" in message and on_progress is not None:
                on_progress(message["progress"])
            result = message.get("result", result)
        await proc.wait()

    try:
        await asyncio.wait_for(read(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"the cloner child failed with exit code {proc.returncode}")
    after = sb.exports(ACCOUNT)
    # auth.exportAuthorization calls this run made, per target DC
    result["exports"] = {dc: n - exports_before.get(dc, 0) for dc, n in after.items() if n > exports_before.get(dc, 0)}
    return result


# ---- the benchmark ----------------------------------------------------------------------------------


FOREIGN_DC = 4  # the cloner lives on DC 2
HOME_DC = 2
MEMORY_DCS = (1, 3, 5)  # --rss-sizes files, in turn
TARGET_DC_LINK_FRACTION = 0.9  # foreign and home DC each


def _media(size: int, dc: int = FOREIGN_DC) -> dict[str, Any]:
    spec = {"kind": "video", "size": size, "seed": f"bench-dc{dc}", "duration": 600.0, "w": 1920, "h": 1080}
    return {**spec, "dc": dc}


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from telepi.sandbox.limits.faults import Link
    from telepi.sandbox.sandbox import Sandbox

    size = args.size_mib * MiB
    link = Link(
        bandwidth_per_connection=args.link_mib * MiB,
        bandwidth_per_account=args.account_mib * MiB,
        latency=args.latency_ms / 1000,
    )
    print(
        f"sandbox link: {args.link_mib} MiB/s per connection each way, {args.account_mib} MiB/s per account "
        f"each way, {args.latency_ms} ms one-way latency; file: {args.size_mib} MiB video from a protected channel"
    )
    report: dict[str, Any] = {"link": asdict(link), "size": size, "runs": [], "memory": []}
    memory_sizes = sorted(set(args.rss_sizes) - {args.size_mib})
    sizes = (args.size_mib, *memory_sizes)
    # Telegram lets an account without Premium upload 4000 parts of 512 KiB (2000 MiB); 2 GiB needs Premium.
    premium = max(sizes) > NON_PREMIUM_MAX_MIB
    if premium:
        print(f"the cloner account has Premium (a file over {NON_PREMIUM_MAX_MIB} MiB needs it)")
    report["premium"] = premium
    with tempfile.TemporaryDirectory(prefix="telepi-bench-") as tmp:
        # The compared file on DC 4, the memory rows on the other foreign DCs, one file on the home DC.
        specs = [_media(m * MiB, FOREIGN_DC if i == 0 else MEMORY_DCS[(i - 1) % 3]) for i, m in enumerate(sizes)]
        specs.append(_media(size, HOME_DC))
        async with Sandbox(world(specs, premium=premium)) as sb:
            items = [m for m in sb.messages(SOURCE) if m["media"]]
            videos = {m["media"]["size"]: m for m in items[: len(sizes)]}
            source = videos[size]
            home_source = items[-1]
            sb.faults.link = link
            runs: list[tuple[str, str, dict[str, Any]]] = [
                ("telethon", "download_media + send_file", {}),
                (
                    "stream",
                    f"streaming, {args.connections}+{args.connections} connections",
                    _options(args.connections, args),
                ),
            ]
            if args.sweep:
                runs += [("stream", f"streaming, {c}+{c} connections", _options(c, args)) for c in (1, 2, 8)]
            results: dict[str, dict[str, Any]] = {}
            for mode, label, options in runs[0 if not args.skip_baseline else 1 :]:
                done = await run_cloner(
                    sb, Path(tmp) / label.replace(" ", "_"), [source["id"]], mode=mode, options=options
                )
                copy = sb.messages(TARGET)[-1]["media"]
                done["identical"] = copy["sha256"] == source["media"]["sha256"]
                done["label"] = label
                results[label] = done
                report["runs"].append(done)
                print(
                    f"  {label:<40} {done['elapsed']:7.1f} s  {size / MiB / done['elapsed']:6.1f} MiB/s  "
                    f"peak RSS {done['vmhwm'] / MiB:5.0f} MiB  byte-identical: {done['identical']}"
                )
            # The same file size from the cloner's own DC: no exported authorization, same links.
            streaming = _options(args.connections, args)
            home = await run_cloner(sb, Path(tmp) / "home_dc", [home_source["id"]], mode="stream", options=streaming)
            home["identical"] = sb.messages(TARGET)[-1]["media"]["sha256"] == home_source["media"]["sha256"]
            home["label"] = f"streaming from the home DC {HOME_DC}"
            report["home_run"] = home
            print(
                f"  {home['label']:<40} {home['elapsed']:7.1f} s  {size / MiB / home['elapsed']:6.1f} MiB/s  "
                f"peak RSS {home['vmhwm'] / MiB:5.0f} MiB  byte-identical: {home['identical']}"
            )
            # Peak memory must not grow with the file: the streaming side alone on the other sizes.
            for mib in memory_sizes:
                video = videos[mib * MiB]
                done = await run_cloner(
                    sb, Path(tmp) / f"memory_{mib}", [video["id"]], mode="stream", options=streaming
                )
                done["identical"] = sb.messages(TARGET)[-1]["media"]["sha256"] == video["media"]["sha256"]
                done["size"] = mib * MiB
                report["memory"].append(done)
                print(
                    f"  {f'streaming {mib} MiB':<40} {done['elapsed']:7.1f} s  {mib / done['elapsed']:6.1f} MiB/s  "
                    f"peak RSS {done['vmhwm'] / MiB:5.0f} MiB  byte-identical: {done['identical']}"
                )
    streamed = report["runs"][0 if args.skip_baseline else 1]
    # The physical limit: each direction is capped per connection and per account; the file crosses both.
    limit = min(args.account_mib, args.connections * args.link_mib)
    report["link_limit_mib_s"] = limit
    report["link_fraction"] = size / MiB / streamed["elapsed"] / limit
    print(f"streaming throughput: {report['link_fraction']:.0%} of the {limit:.0f} MiB/s link limit (target ≥ 80%)")
    home = report["home_run"]
    report["dcs"] = {
        "foreign": _dc_row(FOREIGN_DC, size, streamed, limit),
        "home": _dc_row(HOME_DC, size, home, limit),
    }
    for name, row in report["dcs"].items():
        print(
            f"{name} DC {row['dc']}: {row['mib_s']:.1f} MiB/s = {row['link_fraction']:.0%} of the link; "
            f"first part after {row['first_part_s']:.2f} s; exports this run: {row['exports'] or 'none'}"
        )
    if not args.skip_baseline:
        base = report["runs"][0]["elapsed"]
        ours = report["runs"][1]["elapsed"]
        report["ratio"] = ours / base
        report["speedup"] = base / ours
        print(f"streaming is {report['speedup']:.1f}x faster than the baseline (target ≥ {TARGET_SPEEDUP:.0f}x)")
    peaks = [run["vmhwm"] for run in (streamed, *report["memory"])]
    report["peak_rss_max_mib"] = max(peaks) / MiB
    print(f"streaming peak RSS, largest of {len(peaks)} sizes: {max(peaks) / MiB:.0f} MiB (target < 150 MB)")
    report["targets"] = {
        "link_fraction": {
            "target": TARGET_LINK_FRACTION,
            "measured": report["link_fraction"],
            "met": report["link_fraction"] >= TARGET_LINK_FRACTION,
        },
        "peak_rss_mb": {
            "target": TARGET_PEAK_MB,
            "measured": max(peaks) / 1e6,
            "met": max(peaks) < TARGET_PEAK_MB * 1e6,
        },
    }
    exports_per_dc = max((n for run in report["runs"] + report["memory"] for n in run["exports"].values()), default=0)
    report["exports_per_foreign_dc_max"] = exports_per_dc
    report["targets"]["exports_per_foreign_dc_per_run"] = {
        "target": 1,
        "measured": exports_per_dc,
        "met": exports_per_dc <= 1,
    }
    for name, row in report["dcs"].items():
        report["targets"][f"{name}_dc_link_fraction"] = {
            "target": TARGET_DC_LINK_FRACTION,
            "measured": row["link_fraction"],
            "met": row["link_fraction"] >= TARGET_DC_LINK_FRACTION,
        }
    if "speedup" in report:
        report["targets"]["speedup_over_baseline"] = {
            "target": TARGET_SPEEDUP,
            "measured": report["speedup"],
            "met": report["speedup"] >= TARGET_SPEEDUP,
        }
    report["settings"] = {
        "link": report["link"],
        "size_mib": args.size_mib,
        "rss_sizes_mib": memory_sizes,
        "connections_each_way": args.connections,
        "cloner_has_premium": premium,
        "baseline": "Telethon download_media to a file, then send_file",
    }
    report["summary"] = {
        "streaming_seconds": streamed["elapsed"],
        "baseline_seconds": None if args.skip_baseline else report["runs"][0]["elapsed"],
        "speedup_over_baseline": report.get("speedup"),
        "link_fraction": report["link_fraction"],
        "foreign_dc_mib_s": report["dcs"]["foreign"]["mib_s"],
        "home_dc_mib_s": report["dcs"]["home"]["mib_s"],
        "exports_per_foreign_dc_max": exports_per_dc,
        "peak_rss_mib_by_size": {
            str(run.get("size", size) // MiB): run["vmhwm"] / MiB for run in (streamed, *report["memory"])
        },
    }
    report["ok"] = all(run["identical"] for run in (*report["runs"], *report["memory"], home))
    return report


def _dc_row(dc: int, size: int, run: dict[str, Any], limit: float) -> dict[str, Any]:
    mib_s = size / MiB / run["elapsed"]
    first = run.get("first_part") or 0.0  # seconds from the start to the first downloaded bytes
    return {"dc": dc, "mib_s": mib_s, "link_fraction": mib_s / limit, "first_part_s": first, "exports": run["exports"]}


def _options(connections: int, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"download_connections": connections, "upload_connections": connections}
    if args.downloads_in_flight:
        options["downloads_in_flight"] = args.downloads_in_flight
    if args.uploads_in_flight:
        options["uploads_in_flight"] = args.uploads_in_flight
    return options


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["clone"]:
        asyncio.run(_clone(json.loads(argv[1])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="the file compared with the baseline")
    parser.add_argument("--big", action="store_true", help="compare with a 2 GiB file (--size-mib 2048)")
    parser.add_argument(
        "--rss-sizes",
        type=int,
        nargs="*",
        default=list(MEMORY_ROWS_MIB),
        help="MiB: also stream these, streaming side only (peak memory rows)",
    )
    parser.add_argument("--link-mib", type=float, default=8.0, help="bandwidth per connection, each way")
    parser.add_argument("--account-mib", type=float, default=32.0, help="bandwidth per account, each way")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="one-way latency per packet")
    parser.add_argument("--connections", type=int, default=4, help="streaming connections each way")
    parser.add_argument("--downloads-in-flight", type=int, help="default: TransferOptions'")
    parser.add_argument("--uploads-in-flight", type=int, help="default: TransferOptions'")
    parser.add_argument("--sweep", action="store_true", help="also time 1, 2 and 8 connections")
    parser.add_argument("--skip-baseline", action="store_true", help="time the streaming side only")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.big:
        args.size_mib = GiB_MIB
    report = asyncio.run(_bench(args))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
