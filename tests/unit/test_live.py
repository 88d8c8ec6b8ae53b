"""The watcher's rate and ETA (commands/live.py), with a fake clock: the clock is what they measure."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from telepi.cli import main
from telepi.commands.live import MIN_SPAN_SECONDS, AccountLine, RateWindow, blocked_for, clock, eta_seconds
from telepi.commands.watch import watch
from telepi.engine.session import stop_detail
from telepi.errors import PassingError, UserFixableError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_unknown_until_the_samples_span_long_enough_then_done_per_minute() -> None:
    fake = FakeClock()
    window = RateWindow(span=300, clock=fake)
    window.add(1, 100)
    assert window.per_minute(1) is None and window.per_minute(2) is None
    fake.now += MIN_SPAN_SECONDS - 1
    window.add(1, 105)
    assert window.per_minute(1) is None  # 9 s say too little
    fake.now += 21  # 30 s after the first sample, 20 more messages
    window.add(1, 120)
    assert window.per_minute(1) == 40.0


def test_rate_forgets_what_is_older_than_its_span() -> None:
    fake = FakeClock()
    window = RateWindow(span=60, clock=fake)
    window.add(1, 0)
    for _ in range(10):  # a fast first minute: 60/min
        fake.now += 6
        window.add(1, window._samples[1][-1][1] + 6)
    for _ in range(20):  # then a flood wait: nothing for two minutes
        fake.now += 6
        window.add(1, 60)
    assert window.per_minute(1) == 0.0


def test_eta_is_remaining_over_rate_and_unknown_without_a_rate() -> None:
    assert eta_seconds(120, 40.0) == 180.0
    assert eta_seconds(120, None) is None and eta_seconds(120, 0.0) is None
    assert eta_seconds(0, None) == 0.0
    assert (clock(180), clock(724), clock(7500), clock(45)) == ("3m 00s", "12m 04s", "2h 05m", "45s")


def test_eta_starts_after_the_flood_wait_every_working_account_sits_out() -> None:
    def waiting(left: float, method: str = "SendMessage") -> AccountLine:
        return AccountLine("s", "flood-wait", "", 0, "FLOOD_WAIT", method, 0.0, left)

    running, stopped = AccountLine("r", "running", "", 0), AccountLine("x", "stopped", "", 0)
    assert blocked_for([waiting(840), waiting(300), stopped]) == 300  # the first to send again
    assert blocked_for([waiting(840), running]) == 0  # one can send now: the rate says it
    assert blocked_for([waiting(840, "GetHistory")]) == 0  # a read's wait holds no send back
    assert blocked_for([stopped]) == 0 and blocked_for([]) == 0


def test_account_lines() -> None:
    waiting = AccountLine(
        "s1", "flood-wait", "", 2, wait_error="FLOOD_WAIT", wait_method="SendMessage", wait_until=0.0, wait_left=724
    )
    assert waiting.line().startswith("waiting on FLOOD_WAIT for SendMessage until ")
    assert waiting.line().endswith(" (12m 04s left)")
    assert AccountLine("s1", "running", "running", 0).line() == "sending"
    stopped = AccountLine("s1", "stopped", "stopped", 0, stop_reason="Telegram unreachable", exit_code=75)
    assert stopped.line() == "stopped (exit 75: Telegram unreachable)"


def test_stop_detail_names_the_exit_code_the_user_saw() -> None:
    assert stop_detail(None) == "exit 0" and stop_detail(asyncio.CancelledError()) == "exit 0"
    assert stop_detail(PassingError("Telegram unreachable")) == "exit 75: Telegram unreachable"
    assert stop_detail(UserFixableError("run telepi login")) == "exit 78: run telepi login"
    assert stop_detail(RuntimeError("boom")) == "exit 1: RuntimeError"


def test_watch_refuses_metrics_and_ends_on_ctrl_c_with_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path), "--watch", "1", "--prometheus"]) == 2
    assert "--watch shows the status or its --json" in capsys.readouterr().err
    assert main(["status", str(tmp_path), "--watch", "0"]) == 2
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # the second nap is interrupted, as Ctrl-C does
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    out = io.StringIO()
    assert watch(tmp_path / "checkpoint.db", "here", 3.0, out=out, sleep=sleep) == 0
    assert out.getvalue().splitlines() == ["no checkpoint yet at here"] * 2 and naps == [3.0, 3.0]
    naps.clear()
    out = io.StringIO()
    assert watch(tmp_path / "checkpoint.db", "here", 1.0, as_json=True, out=out, sleep=sleep) == 0
    assert [json.loads(line)["exists"] for line in out.getvalue().splitlines()] == [False, False]


def test_watch_takes_path_before_or_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import telepi.commands.watch

    seen: list[tuple[Path, float]] = []
    monkeypatch.setattr(telepi.commands.watch, "watch", lambda db, shown, seconds, **_: seen.append((db, seconds)) or 0)
    assert main(["status", "--watch", str(tmp_path)]) == 0
    assert main(["status", str(tmp_path), "--watch"]) == 0
    assert main(["status", "--watch", "5", str(tmp_path)]) == 0
    db = tmp_path / "shared" / "checkpoint.db"  # a sessions root
    assert seen == [(db, 2.0), (db, 2.0), (db, 5.0)]
    assert main(["status", str(tmp_path), "--watch", "soon"]) == 2  # PATH given: the word was meant as SECONDS
