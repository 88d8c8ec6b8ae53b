"""Scenario: one account against Telegram's quotas (the sandbox's ``realistic`` model), paced or not.

    .venv/bin/python -m bench.pacing [--messages 5000] [--scale 60] [--restart-messages 1500]
                                     [--restart-scale 20] [--rows ROW ...] [--quick] [--json FILE]

Each row is one run in a fresh sandbox whose flood model is the ``realistic`` preset played ``--scale``
times faster (``telepi/sandbox/limits/flood.py``): sends (SendMessage, SendMedia, SendMultiMedia) 20 requests per 10 s
and 2,000 messages per hour, forwards the same in their own group (a forward of 100 counts 100 messages),
penalties of 30 s and 3,000 s, each call during a penalty lengthening it, ten of those PEER_FLOOD; history reads
30 per 30 s. One account clones ``--messages`` small messages (text and photos) into an empty channel:

- ``telepi`` — ``python -m telepi run DIR`` with the default pacing (``SEND_INTERVAL`` 1.9 s of Telegram's time
  per message, so ``1.9 / scale`` real seconds, ``READ_INTERVAL`` 1.05 s), ``LIVE=false``, ``ORDERED=false``,
  ``MODE=copy`` or ``forward``;
- ``baseline`` — a plain Telethon client that sends until refused, then waits (``flood_sleep_threshold``
  above every wait: Telethon sleeps through each FLOOD_WAIT and sends again), one ``send_message`` per
  message, or one ``forward_messages`` per 100;
- ``restart`` — ``telepi run`` with a fast start (``SEND_INTERVAL=0``, ``READ_INTERVAL=0``) at
  ``--restart-scale`` (20: slow enough that the burst quota, 20 per 10 s, is within the engine's reach):
  refused once, it learns; SIGTERM 0.3 s after the lesson is in the checkpoint, started again: the refusals
  after the restart.

Measured at the sandbox: successful send calls, the messages ``N`` they published and the time ``T`` from
the first to the last (real seconds), refusals by kind, penalties started, PEER_FLOOD; and a timeline of every
call (per method: calls, refusals, first and last; forward sizes; the longest gaps between sends). The
quota-bound maximum over ``T``:

- *sustained* (the quotas' long-run rate): the first call's messages ``+ T · K · min(rate)`` over the group's
  quotas, in messages — for sends ``1 + T · K · 2000 / 3600``; ``fraction = N / that``;
- *exact* (bursts included): ``T_min``, the time an ideal client that knows the quotas needs for the same
  calls, sending each as soon as no quota refuses it (each quota a fixed window opened by its first call,
  as the model counts): for 5,000 sends ``(7200 + 490) / K`` s; ``fraction = T_min / T``.

``--quick`` runs small sizes (correctness only). Every run must leave exactly one copy of each message.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ACCOUNTS,
    SOURCE,
    bench_tmp,
    print_table,
    session_dirs,
    start_sessions,
    verify_copies,
    world,
)
from telepi.config import READ_INTERVAL_DEFAULT, SEND_INTERVAL_DEFAULT

TARGET_FRACTION = 0.9
GROUP_OF = {"copy": "sends", "forward": "forwards"}
SENDS = {"SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest", "ForwardMessagesRequest"}


def sustained_rate(group: str, per_call: int = 1) -> float:
    """Messages per model second the group's quotas allow in the long run, for calls of ``per_call``
    messages (a quota ``per_message`` counts messages, any other calls)."""
    from telepi.sandbox.limits.flood import preset

    [found] = [g for g in preset("realistic").groups if g.name == group]
    return min(q.calls / q.period * (1 if q.per_message else per_call) for q in found.quotas)


def ideal_seconds(group: str, calls: int | Sequence[int]) -> float:
    """Model seconds from an ideal client's first call to its last (``T_min``): ``calls`` calls of one message,
    or one call per item of that many messages (a forward of 100)."""
    from telepi.sandbox.limits.flood import preset

    [found] = [g for g in preset("realistic").groups if g.name == group]
    opened = [-math.inf] * len(found.quotas)
    used = [0] * len(found.quotas)
    now = 0.0
    for size in [1] * calls if isinstance(calls, int) else calls:
        weights = [size if q.per_message else 1 for q in found.quotas]
        for i, quota in enumerate(found.quotas):
            if now - opened[i] >= quota.period:
                opened[i], used[i] = now, 0
            elif used[i] + weights[i] > quota.calls:  # full: the next call waits for the window to close
                now = max(now, opened[i] + quota.period)
        for i, quota in enumerate(found.quotas):
            if now - opened[i] >= quota.period:
                opened[i], used[i] = now, 0
            used[i] += weights[i]
    return now


class _SendClock:
    """Records every call at the sandbox (real seconds): the sends' times, and a timeline of each executed or
    refused call with its method and, for a forward, its size — where a run's time went."""

    def __init__(self, faults: Any) -> None:
        self.times: list[float] = []
        self.sizes: list[int] = []  # messages per send call
        self.calls: list[tuple[float, str, int, bool]] = []  # (time, method, messages, refused)
        from telepi.sandbox.limits.flood import messages_in

        executed, check = faults.executed, faults.check

        def on_executed(method: str, request: object, *, user_id: int | None) -> None:
            now = time.monotonic()
            if method in SENDS:
                self.times.append(now)
                self.sizes.append(messages_in(request))
            self.calls.append((now, method, len(getattr(request, "id", ()) or ()), False))
            executed(method, request, user_id=user_id)

        def on_check(method: str, request: object, *, user_id: int | None, auth_key_id: int) -> Any:
            error = check(method, request, user_id=user_id, auth_key_id=auth_key_id)
            if error is not None:
                self.calls.append((time.monotonic(), method, 0, True))
            return error

        faults.executed, faults.check = on_executed, on_check

    def timeline(self, started: float | None = None) -> dict[str, Any]:
        """Per method: calls, refusals, first and last (from ``started``, else the first call), sizes of
        forwards; and the longest gaps between two sends, with what ran in them."""
        if not self.calls:
            return {}
        origin = started if started is not None else self.calls[0][0]
        methods: dict[str, dict[str, Any]] = {}
        for at, method, size, refused in self.calls:
            m = methods.setdefault(method.removesuffix("Request"), {"calls": 0, "refused": 0, "first": at - origin})
            m["refused" if refused else "calls"] += 1
            m["last"] = at - origin
            if size and method == "ForwardMessagesRequest" and not refused:
                m.setdefault("sizes", []).append(size)
        gaps = sorted(itertools.pairwise(self.times), key=lambda pair: pair[0] - pair[1])[:5]
        longest = [
            {
                "from": a - origin,
                "seconds": b - a,
                "between": sorted(
                    {c[1].removesuffix("Request") + (" refused" if c[3] else "") for c in self.calls if a < c[0] < b}
                ),
            }
            for a, b in gaps
        ]
        return {"methods": methods, "longest_send_gaps": longest}


def _measure(label: str, mode: str, scale: float, sb: Any, sends: _SendClock, extra: dict[str, Any]) -> dict[str, Any]:
    flood = sb.faults.flood
    group = GROUP_OF[mode]
    calls = len(sends.times)
    sent = sum(sends.sizes)  # messages: the long-run quota counts them
    span = sends.times[-1] - sends.times[0] if calls > 1 else 0.0
    sustained_max = (sends.sizes[0] if calls else 0) + span * scale * sustained_rate(group, max(sends.sizes, default=1))
    ideal = ideal_seconds(group, sends.sizes) / scale
    refusals = {k: v for k, v in flood.refusals.items()}
    return {
        "label": label,
        "mode": mode,
        "calls": calls,
        "sent": sent,
        "seconds": span,
        "sustained_max_messages": sustained_max,
        "fraction_sustained": sent / sustained_max if sustained_max else None,
        "ideal_seconds": ideal,
        "fraction_exact": ideal / span if span else None,
        "refusals": refusals,
        "refused": sum(refusals.values()),
        "penalties": [p for _, p in flood.penalties],
        "peer_flood": sum(v for k, v in refusals.items() if k.endswith("PEER_FLOOD")),
        **extra,
    }


async def _telepi_row(tmp: Path, messages: int, mode: str, scale: float, *, restart: bool) -> dict[str, Any]:
    from telepi.checkpoint import SqliteStore
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    spec = world(messages, ["target"], seed=5)
    async with Sandbox(world=spec, state_dir=tmp / "sandbox", server_key=shared_server_key()) as sb:
        sb.faults.use_limits("realistic", scale=scale)
        sends = _SendClock(sb.faults)
        checkpoint = tmp / "shared" / "checkpoint.db"
        interval = 0.0 if restart else SEND_INTERVAL_DEFAULT / scale
        reads = 0.0 if restart else READ_INTERVAL_DEFAULT / scale
        [directory] = await session_dirs(
            sb,
            tmp,
            1,
            "target",
            checkpoint,
            MODE=mode,
            ORDERED="false",
            SEND_INTERVAL=f"{interval:.6f}",
            READ_INTERVAL=f"{reads:.6f}",
        )
        extra: dict[str, Any] = {"send_interval_real": interval, "read_interval_real": reads}
        started = time.monotonic()
        [process] = await start_sessions([directory])
        if restart:
            store = SqliteStore(checkpoint)
            while not store.paces(sb.account(ACCOUNTS[0]).id) and process.returncode is None:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # sending on at the learned pace for a while
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()
            store.close()
            before = sum(sb.faults.flood.refusals.values())
            [process] = await start_sessions([directory])
            extra["refused_before_restart"] = before
        code = await process.wait()
        extra["wall_seconds"] = time.monotonic() - started
        if restart:
            extra["refused_after_restart"] = sum(sb.faults.flood.refusals.values()) - extra["refused_before_restart"]
        store = SqliteStore(checkpoint)
        extra["paces"] = [
            {"group": p.group, "per_minute_real": p.per_minute, "reason": p.reason}
            for p in store.paces(sb.account(ACCOUNTS[0]).id)
        ]
        store.close()
        extra["exit_code"] = code
        extra["check"] = verify_copies(sb, "target", messages)
        extra["timeline"] = sends.timeline(started)
        label = "telepi restart" if restart else "telepi"
        return _measure(label, mode, scale, sb, sends, extra)


async def _baseline_row(tmp: Path, messages: int, mode: str, scale: float) -> dict[str, Any]:
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    spec = world(messages, ["target"], seed=5)
    async with Sandbox(world=spec, state_dir=tmp / "sandbox", server_key=shared_server_key()) as sb:
        sb.faults.use_limits("realistic", scale=scale)
        client = await sb.client(ACCOUNTS[0], flood_sleep_threshold=10**6)
        try:
            await client.get_dialogs()  # the entity cache learns the chats
            source = await client.get_input_entity(sb.chat(SOURCE).id)
            target = await client.get_input_entity(sb.chat("target").id)
            history = [m async for m in client.iter_messages(source, reverse=True) if m.action is None]
            sends = _SendClock(sb.faults)  # reading is not sending: counted from here
            started = time.monotonic()
            if mode == "copy":
                for message in history:
                    await client.send_message(target, message)
            else:
                for i in range(0, len(history), 100):
                    await client.forward_messages(target, history[i : i + 100], drop_author=True)
            wall = time.monotonic() - started
        finally:
            await client.disconnect()
        extra = {"wall_seconds": wall, "exit_code": 0, "check": verify_copies(sb, "target", messages)}
        return _measure("baseline", mode, scale, sb, sends, extra)


ROWS = ("telepi-copy", "baseline-copy", "telepi-forward", "baseline-forward", "restart-copy")


async def _run(
    messages: int, scale: float, restart_messages: int, restart_scale: float, rows: Sequence[str] = ROWS
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    plan = [
        ("telepi", "copy", messages),
        ("baseline", "copy", messages),
        ("telepi", "forward", messages),
        ("baseline", "forward", messages),
        ("restart", "copy", restart_messages),
    ]
    for kind, mode, count in [p for p in plan if f"{p[0]}-{p[1]}" in rows]:
        with tempfile.TemporaryDirectory(prefix="telepi-bench-pacing-", dir=bench_tmp()) as tmp:
            if kind == "baseline":
                row = await _baseline_row(Path(tmp), count, mode, scale)
            else:
                restart = kind == "restart"
                row = await _telepi_row(Path(tmp), count, mode, restart_scale if restart else scale, restart=restart)
            row["messages"] = count
            runs.append(row)
            print(f"  {kind} {mode}: {json.dumps({k: row[k] for k in ('calls', 'seconds', 'refused')})}", flush=True)
    return {"runs": runs}


def run(
    *,
    messages: int = 5000,
    scale: float = 60.0,
    restart_messages: int = 1500,
    restart_scale: float = 20.0,
    quick: bool = False,
    rows: Sequence[str] = ROWS,
) -> dict[str, Any]:
    if quick:
        messages, restart_messages = 150, 100
    result = asyncio.run(_run(messages, scale, restart_messages, restart_scale, rows))
    runs = result["runs"]
    ok = all(r["check"]["ok"] and r["exit_code"] == 0 for r in runs)
    telepi = [r for r in runs if r["label"] == "telepi"]
    return {
        "scenario": "pacing",
        "date": time.strftime("%Y-%m-%d"),
        "quick": quick,
        "ok": ok,
        "settings": {
            "messages": messages,
            "scale": scale,
            "restart_messages": restart_messages,
            "restart_scale": restart_scale,
            "preset": "realistic",
        },
        "runs": runs,
        "summary": {
            f"{r['label']} {r['mode']}": {
                "fraction_sustained": r["fraction_sustained"],
                "fraction_exact": r["fraction_exact"],
                "refused": r["refused"],
                "peer_flood": r["peer_flood"],
            }
            for r in runs
        },
        "targets": {
            "fraction_sustained": TARGET_FRACTION,
            "met": all((r["fraction_sustained"] or 0) >= TARGET_FRACTION for r in telepi),
        },
    }


def table(report: dict[str, Any]) -> list[list[str]]:
    rows = [
        [
            "run",
            "mode",
            "msgs",
            "calls",
            "sent",
            "T (s)",
            "of sustained max",
            "of exact max",
            "refused",
            "penalties",
            "PEER_FLOOD",
        ]
    ]
    for r in report["runs"]:
        label = r["label"] + (
            f" (after restart: {r['refused_after_restart']} refused)" if "refused_after_restart" in r else ""
        )
        rows.append(
            [
                label,
                r["mode"],
                str(r["messages"]),
                str(r["calls"]),
                str(r["sent"]),
                f"{r['seconds']:.1f}",
                f"{(r['fraction_sustained'] or 0):.0%}",
                f"{(r['fraction_exact'] or 0):.0%}",
                str(r["refused"]),
                ",".join(f"{p:g}" for p in r["penalties"]) or "-",
                str(r["peer_flood"]),
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--scale", type=float, default=60.0)
    parser.add_argument("--restart-messages", type=int, default=1500)
    parser.add_argument("--restart-scale", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), help="the runs to make (all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(
        messages=args.messages,
        scale=args.scale,
        restart_messages=args.restart_messages,
        restart_scale=args.restart_scale,
        quick=args.quick,
        rows=args.rows,
    )
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
