"""Scenario: two routes on one account share its send quota fairly.

    .venv/bin/python -m bench.routes [--messages 600] [--scale 60] [--quick] [--json FILE]

One sandbox whose flood model is the ``realistic`` preset played ``--scale`` times faster
(``telepi/sandbox/limits/flood.py``: sends 20 requests per 10 s and 2,000 messages per hour per account, penalties
when exceeded). One account, one ``telepi run`` process, a routes file of two routes from one channel of
``--messages`` small messages (text and photos) into two empty channels, ``MODE=copy``, ``LIVE=false``,
default pacing (``SEND_INTERVAL`` 1.9 s of Telegram's time, ``1.9 / scale`` real seconds) with ``ORDERED=false``
and ``true``; and a third row without pacing (``SEND_INTERVAL=0``, unordered) under a rate rule that binds:
each send method at most 600 calls a minute per account in a sliding 10 s window, answered with FLOOD_WAIT
(``bench/common.py`` ``send_rate_rules``): the account's limiter learns its pace from the refusals and both
routes live with the same lesson.

Measured at the sandbox: every send executed, with the channel it went to. While both routes still have
work (from the first send to the last send of the route that finishes first), each route's *share* is
its sends over all sends; the target is >= 40 % each (an even split is 50 %). Each target must end with
exactly one copy of every message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
    send_rate_rules,
    start_sessions,
    verify_copies,
    world,
)
from telepi.config import SEND_INTERVAL_DEFAULT

TARGET_SHARE = 0.40
RULE_WINDOW = 10.0  # seconds of the sliding window of the third row's rate rule
TARGETS = ("target_a", "target_b")
# (ORDERED, paced, a rate rule's sends per minute): the default pacing under the quotas; and no SEND_INTERVAL
# under a sliding-window rule that binds (bench/common.py send_rate_rules: FLOOD_WAIT past it), so the
# account's limiter learns its pace from the refusals and both routes live with the same lesson.
ROWS: tuple[tuple[bool, bool, int | None], ...] = ((False, True, None), (True, True, None), (False, False, 600))
SENDS = {"SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest", "ForwardMessagesRequest"}


async def _row(
    tmp: Path, messages: int, scale: float, ordered: bool, paced: bool, per_minute: int | None
) -> dict[str, Any]:
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    spec = world(messages, TARGETS, seed=7)
    async with Sandbox(world=spec, state_dir=tmp / "sandbox", server_key=shared_server_key()) as sb:
        sb.faults.use_limits("realistic", scale=scale)
        channel_of = {abs(sb.chat(name).id) % 10**12: name for name in TARGETS}  # -100… id -> target
        sends: list[tuple[float, str]] = []
        executed = sb.faults.executed

        def on_executed(method: str, request: object, *, user_id: int | None) -> None:
            peer = getattr(request, "peer", None) or getattr(request, "to_peer", None)
            if method in SENDS and getattr(peer, "channel_id", None) in channel_of:
                sends.append((time.monotonic(), channel_of[peer.channel_id]))  # type: ignore[union-attr]
            executed(method, request, user_id=user_id)

        sb.faults.executed = on_executed
        shared = tmp / "shared"
        shared.mkdir(parents=True)
        (shared / "routes.toml").write_text(
            "".join(
                f'[[routes]]\nname = "{name}"\nsource = {sb.chat(SOURCE).id}\ntarget = {sb.chat(name).id}\n'
                for name in TARGETS
            )
        )
        directory = await sb.session_dir(
            tmp / "session1",
            ACCOUNTS[0],
            SHARED_DB_PATH=str(shared / "checkpoint.db"),
            MODE="copy",
            LIVE="false",
            ORDERED=str(ordered).lower(),
            SEND_INTERVAL=f"{SEND_INTERVAL_DEFAULT / scale:.6f}" if paced else "0",
            READ_INTERVAL=f"{1.05 / scale:.6f}",
            LOG_LEVEL="WARNING",
        )
        with contextlib.ExitStack() as rules:
            if per_minute is not None:
                rules.enter_context(send_rate_rules(sb.faults, per_minute, RULE_WINDOW))
            started = time.monotonic()
            [process] = await start_sessions([directory])
            code = await process.wait()
            wall = time.monotonic() - started
        last = {name: max((t for t, n in sends if n == name), default=0.0) for name in TARGETS}
        both_until = min(last.values())
        window = [n for t, n in sends if t <= both_until]
        share = {name: window.count(name) / len(window) if window else 0.0 for name in TARGETS}
        checks = {name: verify_copies(sb, name, messages) for name in TARGETS}
        refusals = {**sb.faults.flood.refusals, **{f"rule {m}": n for m, n in sb.faults.refused.items()}}
        return {
            "ordered": ordered,
            "send_interval": "default" if paced else "0",
            "rate_rule_per_minute": per_minute,
            "exit_code": code,
            "wall_seconds": wall,
            "sends": len(sends),
            "sends_while_both_had_work": len(window),
            "seconds_while_both_had_work": both_until - sends[0][0] if sends else 0.0,
            "share": share,
            "refused": sum(refusals.values()),
            "refusals": refusals,
            "check": checks,
            "ok": code == 0
            and all(c.get("ok", False) for c in checks.values())
            and min(share.values()) >= TARGET_SHARE,
        }


def run(*, messages: int, scale: float, quick: bool) -> dict[str, Any]:
    if quick:
        messages = min(messages, 60)

    async def both() -> list[dict[str, Any]]:
        rows = []
        for ordered, paced, per_minute in ROWS:
            with tempfile.TemporaryDirectory(prefix="bench-routes-", dir=bench_tmp()) as tmp:
                rows.append(await _row(Path(tmp), messages, scale, ordered, paced, per_minute))
        return rows

    rows = asyncio.run(both())
    return {
        "scenario": "routes",
        "settings": {"messages_per_route": messages, "scale": scale, "target_share": TARGET_SHARE},
        "rows": rows,
        "ok": all(row["ok"] for row in rows),
    }


def table(report: dict[str, Any]) -> list[list[str]]:
    rows = [
        [
            "ordered",
            "SEND_INTERVAL",
            "rate rule",
            "sends (both busy)",
            "seconds",
            "share A",
            "share B",
            "refused",
            "copies exact",
            "ok",
        ]
    ]
    for row in report["rows"]:
        rows.append(
            [
                str(row["ordered"]).lower(),
                row["send_interval"],
                f"{row['rate_rule_per_minute']}/min per method" if row["rate_rule_per_minute"] else "-",
                f"{row['sends_while_both_had_work']}",
                f"{row['seconds_while_both_had_work']:.1f}",
                f"{row['share']['target_a']:.1%}",
                f"{row['share']['target_b']:.1%}",
                str(row["refused"]),
                str(all(c.get("ok", False) for c in row["check"].values())),
                str(row["ok"]),
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--scale", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(messages=args.messages, scale=args.scale, quick=args.quick)
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
