"""The fault knobs' arithmetic, with a fake clock (the end-to-end behaviour is in test_server.py)."""

from __future__ import annotations

import pytest
from telethon.tl import functions, types

from telepi.sandbox.limits.faults import Faults, Link, RateRule, Throttle, TokenBucket, chat_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def send(channel_id: int) -> functions.messages.SendMessageRequest:
    return functions.messages.SendMessageRequest(
        peer=types.InputPeerChannel(channel_id=channel_id, access_hash=0), message="hi", random_id=1
    )


def check(faults: Faults, request: object, user_id: int | None = 1) -> str | None:
    error = faults.check(type(request).__name__, request, user_id=user_id, auth_key_id=99)
    return None if error is None else f"{error.code} {error.message}"


def test_flood_wait_tells_the_seconds_until_a_slot_frees() -> None:
    clock = FakeClock()
    faults = Faults(clock=clock)
    faults.add_rate_rule(RateRule(method="SendMessageRequest", limit=2, window=10))
    assert check(faults, send(1)) is None
    clock.now += 3
    assert check(faults, send(1)) is None
    clock.now += 1
    assert check(faults, send(1)) == "420 FLOOD_WAIT_6"  # the first call leaves the window at +10
    clock.now += 5.5
    assert check(faults, send(1)) == "420 FLOOD_WAIT_1"  # 0.5 s rounds up
    clock.now += 0.5
    assert check(faults, send(1)) is None  # rejected calls took no slot
    assert check(faults, send(1), user_id=2) is None  # another account has its own budget
    assert check(faults, functions.help.GetConfigRequest()) is None  # another method is not limited


def test_per_chat_rules_and_error_kinds() -> None:
    faults = Faults(clock=FakeClock())
    faults.add_rate_rule(RateRule(per="account+chat", limit=1, window=60, error="SLOWMODE_WAIT"))
    assert check(faults, send(1)) is None
    assert check(faults, send(2)) is None
    assert check(faults, send(1)) == "420 SLOWMODE_WAIT_60"
    faults.clear()
    rule = faults.add_rate_rule(RateRule(limit=1, window=60, error="PEER_FLOOD"))
    assert check(faults, send(1)) is None
    assert check(faults, send(2)) == "400 PEER_FLOOD"
    faults.remove_rate_rule(rule)
    assert check(faults, send(2)) is None


def test_chat_key_reads_peer_and_to_peer() -> None:
    assert chat_key(send(5)) == ("channel_id", 5)
    forward = functions.messages.ForwardMessagesRequest(
        from_peer=types.InputPeerChat(chat_id=3), id=[1], to_peer=types.InputPeerUser(user_id=4, access_hash=0)
    )
    assert chat_key(forward) == ("user_id", 4)
    assert chat_key(functions.help.GetConfigRequest()) is None


def test_injected_error_nth_times_and_user() -> None:
    faults = Faults()
    faults.inject_error("SendMessageRequest", "FLOOD_WAIT_2", 420, nth=3)
    faults.inject_error(functions.help.GetConfigRequest, "INTERNAL", 500, nth=2, times=2, user_id=7)
    results = [check(faults, send(1)) for _ in range(5)]
    assert results == [None, None, "420 FLOOD_WAIT_2", None, None]
    config = functions.help.GetConfigRequest()
    assert [check(faults, config, user_id=1) for _ in range(4)] == [None] * 4  # other account
    assert [check(faults, config, user_id=7) for _ in range(4)] == [None, "500 INTERNAL", "500 INTERNAL", None]


def test_injected_error_rate_is_seeded() -> None:
    def run(seed: int) -> list[bool]:
        faults = Faults(seed)
        rule = faults.inject_error("*", "INTERNAL", 500, rate=0.1)
        outcome = [check(faults, send(1)) is not None for _ in range(1000)]
        assert rule.fired == sum(outcome)
        return outcome

    first = run(1)
    assert first == run(1)
    assert 50 <= sum(first) <= 150
    with pytest.raises(ValueError):
        Faults().inject_error("*", "X", rate=2)


def test_drop_rules_fire_once_at_the_nth_call() -> None:
    faults = Faults()
    rule = faults.drop_on("SendMessageRequest", when="after", nth=2, user_id=5)
    assert not faults.should_drop("SendMessageRequest", 5, "before")
    assert not faults.should_drop("SendMessageRequest", 6, "after")
    assert [faults.should_drop("SendMessageRequest", 5, "after") for _ in range(3)] == [False, True, False]
    assert rule.fired


def test_token_bucket_overdraft_shares_the_rate() -> None:
    bucket = TokenBucket(rate=1024 * 1024, now=0.0)  # 1 MiB/s; the burst is 1/50 s of it
    burst = 1024 * 1024 / 50
    first = bucket.reserve(512 * 1024, 0.0)
    second = bucket.reserve(512 * 1024, 0.0)  # a concurrent user queues behind the first
    assert first == pytest.approx((512 * 1024 - burst) / 1024 / 1024)
    assert second == pytest.approx(first + 0.5)
    assert bucket.reserve(1, 10.0) == 0.0  # refilled (up to the burst only)


def test_throttle_applies_connection_and_account_limits_and_follows_link_changes() -> None:
    clock = FakeClock()
    faults = Faults(clock=clock)
    a, b = Throttle(faults), Throttle(faults)  # two connections
    assert a.delay(10**6, "out", 1) == 0.0 and a.latency == 0.0

    faults.link = Link(bandwidth_per_connection=1e6, latency=0.25)
    assert a.latency == 0.25
    assert a.delay(1_020_000, "out", 1) == pytest.approx(1.0)
    assert b.delay(1_020_000, "out", 1) == pytest.approx(1.0)  # own connection bucket
    assert a.delay(1_020_000, "in", 1) == pytest.approx(1.0)  # full duplex

    faults.link = Link(bandwidth_per_connection=1e6, bandwidth_per_account=1e6)
    assert a.delay(1_020_000, "out", 1) == pytest.approx(1.0)
    assert b.delay(1_000_000, "out", 1) == pytest.approx(2.0)  # shares account 1's bucket
    assert Throttle(faults).delay(1_020_000, "out", 2) == pytest.approx(1.0)  # account 2 has its own
