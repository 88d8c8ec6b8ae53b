"""Scenario 2: one route, 1, 2 and 4 accounts, ordered and unordered, under a per-account send limit.

    .venv/bin/python -m bench.scaling [--messages 2000] [--per-minute 900] [--window 1] [--quick]

The source is a channel of ``--messages`` small messages (70 % text, 30 % photos of 1-8 KiB). The
sandbox answers FLOOD_WAIT like Telegram once an account exceeds ``--per-minute`` calls of one send
method (SendMessage, SendMedia, …) in a sliding window of ``--window`` seconds (``per-minute ×
window / 60`` calls per window). Each configuration clones into its own empty target with its own fresh
checkpoint, every session a separate ``python -m telepi run DIR`` process (``MODE=copy``,
``SEND_INTERVAL=0``, ``LIVE=false``); the time runs from the first start to the last exit. The runs
alternate unordered / ordered and grow 1 → 2 → 4 sessions; the 1-session run of each mode is its
baseline. After every run the target must hold exactly one copy of each source message (and, ordered,
in source order). Efficiency = throughput with k sessions ÷ (k × throughput with one), all times from the first start
to the last exit. For the reader, each run also records its start-up (first start → first copy
recorded in the checkpoint) and the efficiency of the copying phase alone (first → last copy).
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
    checkpoint_server,
    contents,
    copy_key,
    phases,
    print_table,
    run_sessions,
    self_cpu,
    send_rate_rules,
    session_dirs,
    verify_copies,
    world,
)

SESSIONS = (1, 2, 4)
TARGETS = {"unordered": 0.9, "ordered": 0.8}  # efficiency at 4 sessions


def target_name(sessions: int, ordered: bool) -> str:
    return f"t{sessions}{'o' if ordered else 'u'}"


async def _run(
    messages: int, per_minute: int, window: float, sessions: Sequence[int], timeout: float, server: Any = None
) -> dict[str, Any]:
    from telepi.checkpoint import open_checkpoint
    from telepi.sandbox.sandbox import Sandbox, shared_server_key

    configs = [(k, ordered) for k in sessions for ordered in (False, True)]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="telepi-bench-scaling-", dir=bench_tmp()) as tmp:
        spec = world(messages, [target_name(k, o) for k, o in configs])
        async with Sandbox(world=spec, state_dir=Path(tmp) / "sandbox", server_key=shared_server_key()) as sb:
            source_keys = [copy_key(m) for m in contents(sb, SOURCE)]
            for k, ordered in configs:
                target = target_name(k, ordered)
                root = Path(tmp) / target
                # --backend postgres: a fresh database of the bench's server, SHARED_DB_URL for the sessions
                checkpoint = server.new_database() if server is not None else root / "shared" / "checkpoint.db"
                directories = await session_dirs(
                    sb, root, k, target, checkpoint, MODE="copy", ORDERED="true" if ordered else "false"
                )
                sb.faults.calls.clear()
                sandbox_cpu = self_cpu()
                with send_rate_rules(sb.faults, per_minute, window):
                    done = await run_sessions(directories, timeout)
                sandbox_cpu = self_cpu() - sandbox_cpu
                check = verify_copies(sb, target, messages)
                if ordered:
                    check["in_order"] = [copy_key(m) for m in contents(sb, target)] == source_keys
                    check["ok"] = check["ok"] and check["in_order"]
                store = open_checkpoint(checkpoint, create=False)
                shares = {s.name: s.done_total for s in store.report(failures=0).sessions}
                store.close()
                sends = sum(sb.faults.calls[m] for m in SEND_METHODS)
                run = {
                    "sessions": k,
                    "ordered": ordered,
                    "messages": messages,
                    "seconds": done.seconds,
                    "messages_per_min": messages / done.seconds * 60,
                    "send_requests": sends,
                    "flood_waited_requests": sends - check["copies"],
                    **phases(done, checkpoint),
                    "sessions_cpu_seconds": done.cpu_seconds,
                    "sandbox_cpu_seconds": sandbox_cpu,
                    "done_per_session": shares,
                    "check": check,
                }
                runs.append(run)
                mode = "ordered" if ordered else "unordered"
                print(
                    f"  scaling: {k} session(s) {mode:<9} {done.seconds:6.1f} s  "
                    f"{run['messages_per_min']:6.0f} msg/min  (start-up {run['startup_seconds'] or 0:4.1f} s, "
                    f"tail {run['tail_seconds'] or 0:4.1f} s)  {run['flood_waited_requests']:4d} flood-waited  "
                    f"copies {'ok' if check['ok'] else check}",
                    flush=True,
                )
    summary = []
    for ordered in (False, True):
        first = next(r for r in runs if r["ordered"] == ordered and r["sessions"] == 1)
        base, copying_base = first["messages_per_min"], first["copying_per_min"]
        for run in (r for r in runs if r["ordered"] == ordered):
            run["efficiency"] = run["messages_per_min"] / (run["sessions"] * base)
            copying = run["copying_per_min"]
            run["copying_efficiency"] = copying / (run["sessions"] * copying_base) if copying and copying_base else None
            summary.append(
                {
                    "ordered": ordered,
                    "sessions": run["sessions"],
                    "messages_per_min": run["messages_per_min"],
                    "efficiency": run["efficiency"],
                    "copying_efficiency": run["copying_efficiency"],
                    "startup_seconds": run["startup_seconds"],
                    "ok": run["check"]["ok"],
                }
            )
    targets: dict[str, Any] = {}
    top = max(sessions)
    for mode, goal in TARGETS.items():
        found = next((s for s in summary if s["ordered"] == (mode == "ordered") and s["sessions"] == top), None)
        if found is not None and top == 4:
            targets[f"efficiency_{mode}_at_4"] = {
                "target": goal,
                "measured": found["efficiency"],
                "met": found["efficiency"] >= goal,
            }
    return {
        "scenario": "scaling",
        "settings": {
            "backend": "sqlite" if server is None else "postgres (a local server, durable defaults)",
            "messages": messages,
            "mix": "70% text, 30% photos (1-8 KiB), plain channel",
            "sessions": list(sessions),
            "rate_rule": {
                "methods": list(SEND_METHODS),
                "per_minute_per_account_per_method": per_minute,
                "window_seconds": window,
                "limit_per_window": max(1, round(per_minute * window / 60)),
                "answer": "FLOOD_WAIT_X, X = seconds until the window frees, rounded up, at least 1",
            },
            "env": {"MODE": "copy", "SEND_INTERVAL": "0", "LIVE": "false", "ORDERED": "true/false"},
            "order": "unordered then ordered, for 1, 2, 4 sessions",
        },
        "runs": runs,
        "summary": summary,
        "targets": targets,
        "ok": all(r["check"]["ok"] for r in runs),
    }


def run(
    *,
    messages: int = 2000,
    per_minute: int = 900,
    window: float = 1.0,
    quick: bool = False,
    timeout: float = 900,
    backend: str = "sqlite",
) -> dict[str, Any]:
    sessions = SESSIONS
    if quick:
        messages, per_minute = min(messages, 100), max(per_minute, 6000)
    with checkpoint_server(backend) as server:
        return asyncio.run(_run(messages, per_minute, window, sessions, timeout, server))


def table(report: dict[str, Any]) -> list[list[str]]:
    rows = [["mode", "sessions", "msg/min", "efficiency", "start-up s", "efficiency while copying", "copies"]]
    for s in report["summary"]:
        copying = s["copying_efficiency"]
        rows.append(
            [
                "ordered" if s["ordered"] else "unordered",
                str(s["sessions"]),
                f"{s['messages_per_min']:.0f}",
                f"{s['efficiency']:.2f}",
                f"{s['startup_seconds'] or 0:.1f}",
                "-" if copying is None else f"{copying:.2f}",
                "ok" if s["ok"] else "WRONG",
            ]
        )
    return rows


def chart(report: dict[str, Any], path: Path) -> Path | None:
    """Messages/min against sessions, with the ideal k × one session, per mode (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib is not installed: no chart; pip install matplotlib)")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for ordered, colour in ((False, "tab:blue"), (True, "tab:orange")):
        points = [s for s in report["summary"] if s["ordered"] == ordered]
        ks = [s["sessions"] for s in points]
        rates = [s["messages_per_min"] for s in points]
        label = "ordered" if ordered else "unordered"
        ax.plot(ks, rates, "o-", color=colour, label=f"{label} (measured)")
        ax.plot(ks, [k * rates[0] for k in ks], ":", color=colour, label=f"{label} (k × 1 session)")
        for k, rate, s in zip(ks, rates, points, strict=True):
            # Efficiency beside each point: unordered below the line, ordered above (they often coincide).
            offset = (4, 6) if ordered else (4, -12)
            ax.annotate(
                f"{s['efficiency']:.2f}", (k, rate), textcoords="offset points", xytext=offset, fontsize=8, color=colour
            )
    rule = report["settings"]["rate_rule"]
    ax.set_title(
        f"{report['settings']['messages']} messages, {rule['per_minute_per_account_per_method']}/min per account "
        "per send method",
        fontsize=10,
    )
    ax.set_xlabel("sessions (one account, one process each)")
    ax.set_ylabel("messages / min")
    ax.set_xticks([s["sessions"] for s in report["summary"] if not s["ordered"]])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--per-minute", type=int, default=900, help="sends per minute per account and method")
    parser.add_argument("--window", type=float, default=1.0, help="seconds of the sliding rate window")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite", help="the shared checkpoint")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--chart", type=Path)
    args = parser.parse_args(argv)
    report = run(
        messages=args.messages, per_minute=args.per_minute, window=args.window, quick=args.quick, backend=args.backend
    )
    print_table(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    if args.chart is not None:
        chart(report, args.chart)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
