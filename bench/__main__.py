"""``python -m bench all``: every benchmark in one process run; a table each, one JSON, one chart.

    .venv/bin/python -m bench all [--quick] [--only scaling,forward,checkpoint,cost,transfer]
                                  [--json bench/results/latest.json] [--chart bench/results/scaling.png]
                                  [--transfer-args "--big"]
    .venv/bin/python -m bench scaling|forward|checkpoint|history|cost|transfer [--quick] …

Scenarios (each runs its own baseline in the same run, interleaved with the measured side, and
reports the ratio; see each module's docstring):

- ``transfer``   streaming reupload vs Telethon's download-then-upload (``bench/transfer.py``)
- ``scaling``    1, 2, 4 accounts on one route, ordered and unordered, under a per-account send limit
- ``forward``    ``MODE=forward`` vs ``MODE=copy``: send requests per 100 messages, messages/min
- ``checkpoint`` claim → complete cycles per second with 1, 4, 16 processes, on SQLite and on PostgreSQL
- ``history``    claim, head and status on a route of 1,000,000 done messages vs none, both backends
- ``cost``       CPU seconds per 1,000 copied text messages for the whole ``telepi run`` process

The JSON (default ``bench/results/latest.json``) holds every scenario's settings, runs, summary and
targets, plus the date, the command, the versions (telepi, Telethon, SQLite, Python, git commit) and
the machine (core count, load average before and after). ``--quick`` is a smoke run with small sizes
(correctness only: its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT, print_table

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("transfer", "scaling", "forward", "checkpoint", "history", "cost")
MINE = ("scaling", "forward", "checkpoint", "history", "cost")


# ---- scenario runners: each returns its report (a JSON-able dict) and prints its table ----------


def _scaling(args: argparse.Namespace) -> dict[str, Any]:
    from bench import scaling

    report = scaling.run(messages=args.messages, per_minute=args.per_minute, window=args.window, quick=args.quick)
    print_table(scaling.table(report))
    if args.chart is not None:
        path = scaling.chart(report, args.chart)
        report["chart"] = None if path is None else str(path)
        if path is not None:
            print(f"  chart: {path}")
    return report


def _forward(args: argparse.Namespace) -> dict[str, Any]:
    from bench import forward

    report = forward.run(
        messages=args.forward_messages,
        per_minute=args.per_minute,
        window=args.window,
        cap=args.forward_cap,
        quick=args.quick,
    )
    print_table(forward.table(report))
    return report


def _checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    from bench import checkpoint

    report = checkpoint.run(items=args.items, rounds=args.rounds, quick=args.quick, backend=args.backend)
    print_table(checkpoint.table(report))
    return report


def _history(args: argparse.Namespace) -> dict[str, Any]:
    from bench import history

    report = history.run(history=args.history_rows, backend=args.backend, quick=args.quick)
    print_table(history.table(report))
    return report


def _cost(args: argparse.Namespace) -> dict[str, Any]:
    from bench import cost

    report = cost.run(messages=args.cost_messages, quick=args.quick)
    print_table(cost.table(report))
    return report


def _transfer(args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 1 through ``bench/transfer.py``'s command line (``--transfer-args``), its JSON read back."""
    from bench import transfer

    argv = shlex.split(args.transfer_args or "")
    if args.quick and not args.transfer_args:
        argv = ["--size-mib", "8", "--rss-sizes", "4"]
    with tempfile.TemporaryDirectory(prefix="telepi-bench-transfer-") as tmp:
        out = Path(tmp) / "transfer.json"
        transfer.main([*argv, "--json", str(out)])
        report = dict(json.loads(out.read_text()))
    report.setdefault("scenario", "transfer")
    report["argv"] = argv
    return report


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "transfer": _transfer,
    "scaling": _scaling,
    "forward": _forward,
    "checkpoint": _checkpoint,
    "history": _history,
    "cost": _cost,
}


# ---- the run's context -----------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def context(argv: Sequence[str]) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in argv),
        "versions": {
            "telepi": _version("telepi"),
            "telethon": _version("telethon"),
            "cryptg": _version("cryptg"),
            "matplotlib": _version("matplotlib"),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "git": _git(),
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": list(os.getloadavg()),
        },
    }


def sandbox_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What the sandbox was told for the engine scenarios (scaling, forward, cost)."""
    return {
        "server": "telepi.sandbox in the bench process, real MTProto over TCP on 127.0.0.1",
        "link": "none for the engine scenarios (loopback, no added latency or bandwidth cap); "
        "the transfer scenario sets its own Link (see its report)",
        "rate_rule": {
            "scenarios": ["scaling", "forward"],
            "methods": ["SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest", "ForwardMessagesRequest"],
            "per_minute_per_account_per_method": args.per_minute,
            "window_seconds": args.window,
            "answer": "FLOOD_WAIT_X (X = seconds until the sliding window frees, rounded up, at least 1)",
        },
        "cost": "no rate rule",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("all", *SCENARIOS), help="all, or one scenario")
    parser.add_argument("--quick", action="store_true", help="a smoke run with small sizes (numbers mean nothing)")
    parser.add_argument("--only", help="comma-separated scenarios to run (with 'all')")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where the results go")
    parser.add_argument("--chart", type=Path, default=RESULTS / "scaling.png", help="the scaling chart (PNG)")
    parser.add_argument("--no-chart", action="store_true")
    group = parser.add_argument_group("engine scenarios")
    group.add_argument("--per-minute", type=int, default=900, help="rate rule: sends/min per account and method")
    group.add_argument("--window", type=float, default=1.0, help="rate rule: sliding window, seconds")
    group.add_argument("--messages", type=int, default=2000, help="scaling: messages on the route")
    group.add_argument("--forward-messages", type=int, default=10_000, help="forward: messages in the channel")
    group.add_argument("--forward-cap", type=float, default=30, help="forward: stop a run after this many seconds")
    group.add_argument("--items", type=int, default=10_000, help="checkpoint: items per run")
    group.add_argument("--rounds", type=int, default=2, help="checkpoint: rounds of 1, 4, 16 processes")
    group.add_argument(
        "--backend", choices=("sqlite", "postgres", "both"), default="both", help="checkpoint, history: the store"
    )
    group.add_argument("--history-rows", type=int, default=1_000_000, help="history: done rows on the long route")
    group.add_argument("--cost-messages", type=int, default=1500, help="cost: text messages")
    parser.add_argument(
        "--transfer-args", help='arguments for bench/transfer.py, e.g. "--big" to compare on a 2 GiB file'
    )
    return parser


def run(argv: Sequence[str]) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.no_chart:
        args.chart = None
    if args.what == "all":
        chosen = [s.strip() for s in args.only.split(",")] if args.only else list(SCENARIOS)
        unknown = sorted(set(chosen) - set(SCENARIOS))
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    else:
        chosen = [args.what]
    results: dict[str, Any] = {"bench": "telepi", "quick": args.quick, **context(argv)}
    results["sandbox"] = sandbox_settings(args)
    results["scenarios"] = {}
    started = time.perf_counter()
    for name in (s for s in SCENARIOS if s in chosen):
        print(f"\n== {name} ==", flush=True)
        began = time.perf_counter()
        try:
            report = RUNNERS[name](args)
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            report = {"scenario": name, "error": f"{type(exc).__name__}: {exc}", "ok": False}
            print(f"  {name} FAILED: {report['error']}", flush=True)
        report["wall_seconds"] = time.perf_counter() - began
        results["scenarios"][name] = report
    results["wall_seconds"] = time.perf_counter() - started
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    results["targets"] = {
        f"{name}.{key}": value
        for name, report in results["scenarios"].items()
        for key, value in report.get("targets", {}).items()
        if not args.quick
    }
    results["ok"] = all(report.get("ok", True) for report in results["scenarios"].values())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    _print_summary(results, args.json)
    return results


def _print_summary(results: dict[str, Any], path: Path | None) -> None:
    print(f"\n== summary ({results['wall_seconds']:.0f} s, {results['machine']['cpu_count']} cores) ==")
    if results["quick"]:
        print("  quick run: small sizes, the numbers mean nothing and no target is judged")
    rows = [["target", "goal", "measured", "met"]]
    for key, t in results["targets"].items():
        rows.append([key, f"{t['target']:g}", f"{t['measured']:.2f}", "yes" if t["met"] else "NO"])
    if len(rows) > 1:
        print_table(rows)
    for name, report in results["scenarios"].items():
        if "error" in report or "skipped" in report:
            print(f"  {name}: {report.get('error') or report.get('skipped')}")
        elif not report.get("ok", True):
            print(f"  {name}: a correctness check FAILED (see the JSON)")
    if path is not None:
        print(f"  results: {path}")


def main(argv: Sequence[str] | None = None) -> None:
    results = run(list(sys.argv[1:] if argv is None else argv))
    sys.exit(0 if results["ok"] else 1)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
