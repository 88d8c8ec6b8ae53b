"""Order within each topic (``ORDERED=topic``) against order across the chat (``ORDERED=true``), under
Telegram's quotas (the sandbox's ``realistic`` flood model, its clock ``--scale`` times faster).

    .venv/bin/python -m bench.topics [--messages 400] [--scale 5] [--forward-messages 400]
                                     [--pacing default|none] [--backend sqlite|postgres] [--quick]

The source is a forum whose 3 topics and General interleave at random (70 % text, 30 % photos of 1-8 KiB,
no replies); each run clones it into its own empty forum target with its own fresh checkpoint, every
session a separate ``python -m telepi run DIR`` process (``LIVE=false``), sharing a fresh SQLite file or,
with ``--backend postgres``, a fresh database of a local durable PostgreSQL server (``SHARED_DB_URL``).
``--pacing default`` (the default) runs the scaling rows at telepi's default pacing, what a user runs
(``SEND_INTERVAL`` 1.9 s and ``READ_INTERVAL`` 1.05 s of Telegram's time, so divided by ``--scale``);
``--pacing none`` sets both to 0, so each account bursts into its quota and learns from the refusal. The
forward rows always run with 0: they measure how full a batch is.

- *Scaling under quotas*: ``MODE=copy``, 1, 2 and 4 accounts, ``ORDERED=true`` then ``ORDERED=topic``
  for each count. Efficiency = throughput with k accounts ÷ (k × throughput with one, same order), all
  times from the first start to the last exit; the 1-account run of each order is its baseline.
- *Forward batches*: ``MODE=forward``, one account, ``ORDERED=true`` (the baseline) then
  ``ORDERED=topic``: messages per ``forwardMessages`` request the sandbox received (refused ones
  included).

After every run each target topic must hold its source topic's messages exactly once and in order
(``ORDERED=true``: the whole target in source order).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ACCOUNTS,
    OWNER,
    SEND_METHODS,
    SMALL_MIX,
    SOURCE,
    bench_tmp,
    checkpoint_server,
    print_table,
    run_sessions,
    session_dirs,
)
from telepi.sandbox.world.photos import media_key

ORDERS = ("true", "topic")
SESSIONS = (1, 2, 4)
TOPICS = ("News", "Chat", "Files")  # and General: four interleaved topics
TARGET_EFFICIENCY = 0.9  # at 4 accounts, both orders
TARGET_PER_REQUEST = 20.0  # messages per forward request, per-topic order


def forum_world(count: int, targets: Sequence[str], *, seed: int = 5) -> dict[str, Any]:
    from telepi.sandbox.world.worldfile import generate_history

    source: dict[str, Any] = {
        "name": SOURCE,
        "kind": "supergroup",
        "forum": True,
        "title": "Bench forum",
        "owner": OWNER,
        "members": list(ACCOUNTS),
        "topics": [{"title": title, "ref": title.lower()} for title in TOPICS],
    }
    source["messages"] = generate_history(source, count, seed=seed, mix=dict(SMALL_MIX), max_size=8 * 1024)
    chats = [source] + [
        {
            "name": name,
            "kind": "supergroup",
            "forum": True,
            "title": f"Bench target {name}",
            "owner": OWNER,
            "admins": {account: ["post_messages", "manage_topics"] for account in ACCOUNTS},
        }
        for name in targets
    ]
    people = (OWNER, *ACCOUNTS)
    return {
        "accounts": [{"name": n, "phone": f"+1555020000{i}", "code": "12345"} for i, n in enumerate(people)],
        "chats": chats,
    }


def _key(message: dict[str, Any]) -> tuple[str, str]:
    media = message["media"]
    return (message["text"] or "", media_key(media))  # a photo by its sizes: Telegram re-encodes it


def check_clone(sb: Any, target: str, order: str, upto: int | None = None) -> dict[str, Any]:
    """Each topic exactly once and in order (``true``: the whole chat in order), read from the target;
    the source up to id ``upto`` when given."""

    def by_topic(chat: str) -> dict[str, list[tuple[str, str]]]:
        titles = {t["id"]: t["title"] for t in sb.topics(chat)}
        grouped: dict[str, list[tuple[str, str]]] = {}
        for m in sb.messages(chat):
            if not m["service"] and (chat != SOURCE or upto is None or m["id"] <= upto):
                grouped.setdefault(titles.get(m["topic"], "General"), []).append(_key(m))
        return grouped

    source, copies = by_topic(SOURCE), by_topic(target)
    topics_ok = source == copies
    whole = [_key(m) for m in sb.messages(target) if not m["service"]]
    check = {
        "copies": len(whole),
        "topics_in_order_exactly_once": topics_ok,
        "ok": topics_ok,
    }
    if order == "true":
        wanted = [m for m in sb.messages(SOURCE) if not m["service"] and (upto is None or m["id"] <= upto)]
        check["chat_in_order"] = whole == [_key(m) for m in wanted]
        check["ok"] = topics_ok and check["chat_in_order"]
    return check


async def _clone(
    sb: Any, tmp: Path, name: str, accounts: int, timeout: float, server: Any = None, **env: str
) -> tuple[Any, dict[str, int], dict[str, Any]]:
    root = tmp / name
    # --backend postgres: a fresh database of the bench's server, SHARED_DB_URL for the sessions
    checkpoint = server.new_database() if server is not None else root / "shared" / "checkpoint.db"
    directories = await session_dirs(sb, root, accounts, name, checkpoint, **env)
    sb.faults.calls.clear()
    before = dict(sb.faults.flood.refusals) if sb.faults.flood is not None else {}
    done = await run_sessions(directories, timeout)
    after = dict(sb.faults.flood.refusals) if sb.faults.flood is not None else {}
    refused = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    upto = int(env["TO_ID"]) if "TO_ID" in env else None
    return done, refused, check_clone(sb, name, env["ORDERED"], upto)


def pacing_env(pacing: str, scale: float) -> dict[str, str]:
    """``SEND_INTERVAL``/``READ_INTERVAL`` of the scaling rows (see the module doc)."""
    from telepi.config import READ_INTERVAL_DEFAULT, SEND_INTERVAL_DEFAULT

    if pacing == "none":
        return {"SEND_INTERVAL": "0", "READ_INTERVAL": "0"}
    return {
        "SEND_INTERVAL": f"{SEND_INTERVAL_DEFAULT / scale:.6f}",
        "READ_INTERVAL": f"{READ_INTERVAL_DEFAULT / scale:.6f}",
    }


async def _run(
    messages: int, forward_messages: int, scale: float, sessions: Sequence[int], pacing: str, server: Any
) -> dict[str, Any]:
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    scaling_runs: list[dict[str, Any]] = []
    forward_runs: list[dict[str, Any]] = []
    configs = [(k, order) for k in sessions for order in ORDERS]
    names = [f"s{k}{order}" for k, order in configs] + [f"f{order}" for order in ORDERS]
    with tempfile.TemporaryDirectory(prefix="telepi-bench-topics-", dir=bench_tmp()) as tmp_name:
        tmp = Path(tmp_name)
        # Two sources would need two worlds: one forum of the larger size, the scaling runs copy a prefix of it.
        spec = forum_world(max(messages, forward_messages), names)
        async with Sandbox(world=spec, state_dir=tmp / "sandbox", server_key=shared_server_key()) as sb:
            source_ids = [m["id"] for m in sb.messages(SOURCE) if not m["service"]]
            last_scaling = source_ids[min(messages, len(source_ids)) - 1]
            sb.faults.use_limits("realistic", scale=scale)
            for k, order in configs:
                done, refused, check = await _clone(
                    sb,
                    tmp,
                    f"s{k}{order}",
                    k,
                    1800,
                    server,
                    MODE="copy",
                    ORDERED=order,
                    TO_ID=str(last_scaling),
                    **pacing_env(pacing, scale),
                )
                sends = sum(sb.faults.calls[m] for m in SEND_METHODS)
                run = {
                    "accounts": k,
                    "ordered": order,
                    "messages": check["copies"],
                    "seconds": done.seconds,
                    "messages_per_min": check["copies"] / done.seconds * 60,
                    "send_requests": sends,
                    "refused": refused,
                    "sessions_cpu_seconds": done.cpu_seconds,
                    "check": check,
                }
                scaling_runs.append(run)
                print(
                    f"  topics scaling: {k} account(s) ORDERED={order:<5} {done.seconds:6.1f} s "
                    f"{run['messages_per_min']:6.0f} msg/min  refused {refused}  "
                    f"copies {'ok' if check['ok'] else check}",
                    flush=True,
                )
            for order in ORDERS:
                sb.faults.use_limits("realistic", scale=scale)  # fresh quotas for the forward runs
                done, refused, check = await _clone(
                    sb, tmp, f"f{order}", 1, 1800, server, MODE="forward", ORDERED=order
                )
                forwards = sb.faults.calls["ForwardMessagesRequest"]
                run = {
                    "ordered": order,
                    "messages": check["copies"],
                    "seconds": done.seconds,
                    "forward_requests": forwards,
                    "messages_per_request": check["copies"] / max(forwards, 1),
                    "refused": refused,
                    "check": check,
                }
                forward_runs.append(run)
                print(
                    f"  topics forward: ORDERED={order:<5} {check['copies']} messages in {forwards} forwardMessages "
                    f"({run['messages_per_request']:.1f} per request), {done.seconds:.1f} s  refused {refused}  "
                    f"copies {'ok' if check['ok'] else check}",
                    flush=True,
                )
    for order in ORDERS:
        base = next(r for r in scaling_runs if r["ordered"] == order and r["accounts"] == 1)["messages_per_min"]
        for run in (r for r in scaling_runs if r["ordered"] == order):
            run["efficiency"] = run["messages_per_min"] / (run["accounts"] * base)
    top = max(sessions)
    targets: dict[str, Any] = {}
    if top == 4:
        for order in ORDERS:
            found = next(r for r in scaling_runs if r["ordered"] == order and r["accounts"] == top)
            targets[f"efficiency_ordered_{order}_at_4"] = {
                "target": TARGET_EFFICIENCY,
                "measured": found["efficiency"],
                "met": found["efficiency"] >= TARGET_EFFICIENCY,
            }
    per_topic = next(r for r in forward_runs if r["ordered"] == "topic")["messages_per_request"]
    targets["forward_messages_per_request_topic"] = {
        "target": TARGET_PER_REQUEST,
        "measured": per_topic,
        "met": per_topic >= TARGET_PER_REQUEST,
    }
    return {
        "scenario": "topics",
        "date": dt.date.today().isoformat(),
        "settings": {
            "messages": messages,
            "forward_messages": forward_messages,
            "source": "forum, 3 topics and General interleaved at random; 70% text, 30% photos; no replies",
            "flood_model": {"limits": "realistic", "scale": scale},
            "pacing": pacing,
            "backend": "sqlite" if server is None else "postgres (a local server, durable defaults)",
            "env": {**pacing_env(pacing, scale), "LIVE": "false"},
            "forward_env": {"SEND_INTERVAL": "0", "READ_INTERVAL": "0", "LIVE": "false"},
        },
        "scaling": scaling_runs,
        "forward": forward_runs,
        "summary": {
            "efficiency": {f"{r['ordered']}@{r['accounts']}": r["efficiency"] for r in scaling_runs},
            "forward_messages_per_request": {r["ordered"]: r["messages_per_request"] for r in forward_runs},
        },
        "targets": targets,
        "ok": all(r["check"]["ok"] for r in (*scaling_runs, *forward_runs)),
    }


def run(
    *,
    messages: int = 400,
    forward_messages: int = 400,
    scale: float = 5,
    pacing: str = "default",
    quick: bool = False,
    backend: str = "sqlite",
) -> dict[str, Any]:
    if quick:
        messages, forward_messages, scale = min(messages, 60), min(forward_messages, 150), max(scale, 60)
    with checkpoint_server(backend) as server:
        return asyncio.run(_run(messages, forward_messages, scale, SESSIONS, pacing, server))


def table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["run", "messages", "seconds", "msg/min", "efficiency", "msgs per forward", "clone"]]
    for r in report["scaling"]:
        rows.append(
            [
                f"copy, {r['accounts']} account(s), ORDERED={r['ordered']}",
                str(r["messages"]),
                f"{r['seconds']:.1f}",
                f"{r['messages_per_min']:.0f}",
                f"{r['efficiency']:.2f}",
                "",
                "ok" if r["check"]["ok"] else "WRONG",
            ]
        )
    for r in report["forward"]:
        rows.append(
            [
                f"forward, 1 account, ORDERED={r['ordered']}",
                str(r["messages"]),
                f"{r['seconds']:.1f}",
                "",
                "",
                f"{r['messages_per_request']:.1f}",
                "ok" if r["check"]["ok"] else "WRONG",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.topics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="scaling: messages copied per run")
    parser.add_argument("--forward-messages", type=int, default=400, help="forward: messages in the forum")
    parser.add_argument("--scale", type=float, default=5, help="the flood model's clock runs this many times faster")
    parser.add_argument(
        "--pacing", choices=("default", "none"), default="default", help="the scaling rows' SEND/READ_INTERVAL"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite", help="the shared checkpoint")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(
        messages=args.messages,
        forward_messages=args.forward_messages,
        scale=args.scale,
        pacing=args.pacing,
        quick=args.quick,
        backend=args.backend,
    )
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
