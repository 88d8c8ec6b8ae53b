"""``python -m bench all --quick``: every scenario runs, every copy is exactly once, and the
JSON has its shape. Correctness only: a benchmark's numbers are never asserted in a test."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import run
from telepi.sandbox.pgserver import binaries


def start_server_possible() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return binaries() is not None


SCENARIOS = ("transfer", "scaling", "forward", "checkpoint", "history", "cost")


def test_quick_bench_runs_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    argv = ["all", "--quick", "--only", ",".join(SCENARIOS), "--json", str(out), "--no-chart"]
    results = run(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))

    assert results["quick"] is True
    assert results["machine"]["cpu_count"] >= 1
    assert {"telepi", "telethon", "sqlite", "python"} <= set(results["versions"])
    assert results["sandbox"]["rate_rule"]["per_minute_per_account_per_method"] > 0
    assert set(results["scenarios"]) == set(SCENARIOS)
    for name, report in results["scenarios"].items():
        assert "error" not in report, report.get("error")
        assert report["scenario"] == name
        assert report["ok"] is True, name  # exactly-once copies, no double lease
        assert "settings" in report and "summary" in report

    transfer = results["scenarios"]["transfer"]
    assert [r["label"] for r in transfer["runs"]] == ["download_media + send_file", "streaming, 4+4 connections"]
    assert [r["size"] for r in transfer["memory"]] == [4 * 1024 * 1024]  # byte-identical: report["ok"]
    assert transfer["premium"] is False and transfer["ratio"] > 0 and transfer["peak_rss_max_mib"] > 0

    scaling = results["scenarios"]["scaling"]
    assert {(s["sessions"], s["ordered"]) for s in scaling["summary"]} == {
        (k, o) for k in (1, 2, 4) for o in (False, True)
    }
    for run_ in scaling["runs"]:
        assert run_["check"]["copies"] == run_["messages"] and run_["check"]["duplicates"] == 0
        assert run_["messages_per_min"] > 0 and run_["efficiency"] > 0
    assert scaling["runs"][0]["send_requests"] >= scaling["runs"][0]["messages"]  # the sandbox counts sends

    forward = results["scenarios"]["forward"]
    assert [r["mode"] for r in forward["runs"]] == ["forward", "copy"]
    assert all(r["copied"] == r["messages"] and r["requests_per_100_messages"] > 0 for r in forward["runs"])
    assert {"forward_requests_per_100_messages"} == set(forward["targets"])

    checkpoint = results["scenarios"]["checkpoint"]
    backends = ("sqlite", "postgres") if start_server_possible() else ("sqlite",)  # as tests/conftest.py skips
    assert [(s["backend"], s["processes"]) for s in checkpoint["summary"]] == [
        (backend, k) for backend in backends for k in (1, 4, 16)
    ]
    assert all(r["checks"]["double_leases"] == 0 and r["ok"] for r in checkpoint["runs"])

    history = results["scenarios"]["history"]
    assert {(s["backend"], s["op"]) for s in history["summary"]} == {
        (backend, op) for backend in backends for op in ("claim", "head", "report")
    }
    assert all(r["ok"] for r in history["runs"]) and {r["history"] for r in history["runs"]} == {0, 5_000}

    cost = results["scenarios"]["cost"]
    assert cost["summary"]["telepi_cpu_seconds_per_1000"] > 0
    assert cost["summary"]["telethon_cpu_seconds_per_1000"] > 0
    assert {r["kind"] for r in cost["runs"]} == {"telepi", "telethon", "idle"}


def test_quick_live_bench_copies_once_in_order(tmp_path: Path) -> None:
    from bench import live

    out = tmp_path / "live.json"
    assert live.main(["--quick", "--sessions", "1", "--json", str(out)]) == 0  # 0: copies once and in order
    [one] = json.loads(out.read_text())["runs"]
    assert {"text", "album", "edit", "delete"} <= set(one["telepi"]) and one["echo"]


def test_quick_routes_bench_copies_once_on_both_routes() -> None:
    from bench import routes

    report = routes.run(messages=60, scale=60.0, quick=True)
    assert [(r["ordered"], r["send_interval"]) for r in report["rows"]] == [
        (False, "default"),
        (True, "default"),
        (False, "0"),
    ]
    for row in report["rows"]:
        assert row["exit_code"] == 0 and all(check["ok"] for check in row["check"].values())  # each copy once
        assert abs(sum(row["share"].values()) - 1.0) < 1e-9 and row["sends"] == 120


def test_quick_pacing_bench_copies_once_and_counts_refusals() -> None:
    from bench import pacing

    report = pacing.run(quick=True)
    assert report["ok"] is True  # every run: one copy of each message, exit 0
    assert [(r["label"], r["mode"]) for r in report["runs"]] == [
        ("telepi", "copy"),
        ("baseline", "copy"),
        ("telepi", "forward"),
        ("baseline", "forward"),
        ("telepi restart", "copy"),
    ]
    for run_ in report["runs"]:
        assert run_["calls"] > 0 and run_["seconds"] >= 0 and run_["refused"] >= 0
    restart = report["runs"][-1]
    assert restart["paces"] and "refused_after_restart" in restart  # it learned, and was started again
    assert pacing.ideal_seconds("sends", 5000) == 7200 + 490  # the docstring's T_min: 1,000 sends in 50 bursts


def test_quick_topics_bench_keeps_each_topic_in_order(tmp_path: Path) -> None:
    from bench.topics import run as topics

    report = topics(quick=True)
    assert report["ok"] is True  # every run: each topic exactly once and in order, route-wide in chat order too
    assert {(r["accounts"], r["ordered"]) for r in report["scaling"]} == {
        (k, o) for k in (1, 2, 4) for o in ("true", "topic")
    }
    assert [r["ordered"] for r in report["forward"]] == ["true", "topic"]
    assert all(r["forward_requests"] > 0 for r in report["forward"])
