"""``python -m bench.verify --quick``: the verify bench runs, finds a clean clone clean, and reports its
ratio. Correctness only: a benchmark's numbers are never asserted in a test."""

from __future__ import annotations

from bench.verify import run


def test_quick_verify_bench_finds_nothing_to_fix_and_reports_a_ratio() -> None:
    report = run(quick=True)
    assert report["ok"] is True, report
    assert report["settings"]["messages"] == 2000
    assert report["summary"]["ratio"] > 0 and report["summary"]["baseline_seconds"] > 0
