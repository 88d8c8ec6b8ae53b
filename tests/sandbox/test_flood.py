"""The quota-shaped flood model (flood.py): its arithmetic with a fake clock, then a real Telethon client against
the sandbox and against ``telepi sandbox serve --limits``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
from telethon import TelegramClient, errors, functions, types, utils
from telethon.crypto import rsa
from telethon.sessions import MemorySession

from telepi.sandbox.limits.faults import Faults, RateRule
from telepi.sandbox.limits.flood import PRESETS, Limits
from telepi.sandbox.sandbox import API_HASH, API_ID, Sandbox
from tests.cli import REPO
from tests.sandbox.worldkit import base_world

from .test_faults import FakeClock, check, send
from .test_sandbox_cli import CLI, read_until_ready, run


def call(faults: Faults, name: str, user_id: int = 1) -> str | None:
    """A call of method ``name`` (``"GetFile"``); only the method's name matters to the model."""
    error = faults.check(f"{name}Request", object(), user_id=user_id, auth_key_id=99)
    return None if error is None else f"{error.code} {error.message}"


def realistic(scale: float = 1.0) -> tuple[Faults, FakeClock]:
    clock = FakeClock()
    faults = Faults(clock=clock)
    faults.use_limits("realistic", scale=scale)
    return faults, clock


def test_a_burst_passes_then_a_penalty_unrelated_to_the_period() -> None:
    faults, clock = realistic()
    for _ in range(20):
        assert check(faults, send(1)) is None
        clock.now += 0.1
    assert check(faults, send(1)) == "420 FLOOD_WAIT_30"  # the burst quota's period is 10 s; the penalty 30 s
    clock.now += 30
    assert [check(faults, send(1)) for _ in range(20)] == [None] * 20  # a fresh quota once the penalty is over
    assert check(faults, send(1)) == "420 FLOOD_WAIT_30"
    assert faults.refused["SendMessageRequest"] == 2


def test_a_long_run_below_the_burst_quota_meets_the_long_penalty() -> None:
    # telegraf#1563: one a second for 2-3k messages, then a wait of tens of minutes.
    faults, clock = realistic()
    for _ in range(2000):
        assert check(faults, send(1)) is None
        clock.now += 1
    assert check(faults, send(1)) == "420 FLOOD_WAIT_3000"
    clock.now += 2999
    assert check(faults, send(1)) == "420 FLOOD_WAIT_1501"  # a second early: half the penalty more


def forward(count: int) -> functions.messages.ForwardMessagesRequest:
    peer = types.InputPeerChannel(channel_id=1, access_hash=0)
    ids = list(range(1, count + 1))
    return functions.messages.ForwardMessagesRequest(from_peer=peer, id=ids, to_peer=peer, random_id=ids)


def test_a_forward_counts_its_messages_against_the_long_run_and_one_request_against_a_burst() -> None:
    # tginfo/Telegram-Limits#289 counts 2,000-2,300 messages sent or forwarded in a row, not requests.
    faults, clock = realistic()
    for _ in range(19):  # 1,900 messages in 19 requests: within the burst of 20 requests
        assert check(faults, forward(100)) is None
        clock.now += 1
    assert check(faults, forward(101)) == "420 FLOOD_WAIT_3000"  # 2,001 messages: refused whole
    clock.now += 3000
    assert [check(faults, forward(10)) for _ in range(20)] == [None] * 20  # a fresh long run: 200 of 2,000
    assert check(faults, forward(1)) == "420 FLOOD_WAIT_30"  # the 21st request: the burst quota


def test_calls_during_a_penalty_lengthen_it() -> None:
    faults, clock = realistic()
    for _ in range(20):
        check(faults, send(1))
    assert check(faults, send(1)) == "420 FLOOD_WAIT_30"
    clock.now += 1
    assert check(faults, send(1)) == "420 FLOOD_WAIT_44"  # 29 s left + half the penalty
    clock.now += 1
    assert check(faults, send(1)) == "420 FLOOD_WAIT_58"
    clock.now += 57
    assert check(faults, send(1)) == "420 FLOOD_WAIT_16"  # one second early is a violation too
    clock.now += 16
    assert check(faults, send(1)) is None


def test_sustained_violation_answers_peer_flood_for_a_day() -> None:
    faults, clock = realistic()
    for _ in range(20):
        check(faults, send(1))
    answers = []
    for _ in range(11):  # the call that starts the penalty, then 10 that ignore it
        answers.append(check(faults, send(1)))
        clock.now += 1
    assert all(a is not None and a.startswith("420 FLOOD_WAIT_") for a in answers[:-1])
    assert answers[-1] == "400 PEER_FLOOD"
    clock.now += 23 * 3600
    assert check(faults, send(1)) == "400 PEER_FLOOD"
    assert call(faults, "ForwardMessages") is None  # its own group
    assert call(faults, "GetHistory") is None
    clock.now += 3600
    assert check(faults, send(1)) is None
    assert faults.flood is not None and faults.flood.refusals["sends PEER_FLOOD"] == 2


def test_reading_history_escalates_but_never_answers_peer_flood() -> None:
    faults, _clock = realistic()
    assert [call(faults, "GetHistory") for _ in range(30)] == [None] * 30
    answers = [call(faults, "GetHistory") for _ in range(40)]
    assert all(a is not None and a.startswith("420 FLOOD_WAIT_") for a in answers)
    assert int(answers[-1].rsplit("_", 1)[1]) == 30 + 39 * 15  # every call after the first one lengthened it


def test_groups_and_accounts_have_their_own_quotas() -> None:
    faults, _clock = realistic()
    for _ in range(20):
        check(faults, send(1))
    assert check(faults, send(1)) == "420 FLOOD_WAIT_30"
    assert call(faults, "SendMedia") is not None  # the same group shares the penalty
    assert call(faults, "SendMultiMedia") is not None
    assert call(faults, "ForwardMessages") is None
    assert call(faults, "GetHistory") is None
    assert call(faults, "CreateForumTopic") is None
    assert call(faults, "GetFile") is None
    assert call(faults, "ResolveUsername") is None
    assert call(faults, "GetConfig") is None  # a method in no group is never limited
    assert check(faults, send(1), user_id=2) is None  # another account
    assert check(faults, send(1), user_id=None) is None  # a key without login counts as its own account


@pytest.mark.parametrize(
    ("method", "calls", "error"),
    [
        ("ForwardMessages", 20, "420 FLOOD_WAIT_30"),
        ("GetMessages", 30, "420 FLOOD_WAIT_30"),
        ("CreateForumTopic", 10, "420 FLOOD_WAIT_600"),
        ("UploadMedia", 20, "420 FLOOD_WAIT_30"),
        ("ResolveUsername", 100, "420 FLOOD_WAIT_28800"),
        ("ExportAuthorization", 5, "420 FLOOD_WAIT_849"),
        ("SendCode", 5, "420 FLOOD_WAIT_10800"),
        ("SaveBigFilePart", 20, "420 FLOOD_PREMIUM_WAIT_5"),
    ],
)
def test_every_group_has_a_quota(method: str, calls: int, error: str) -> None:
    faults, _clock = realistic()
    assert [call(faults, method) for _ in range(calls)] == [None] * calls
    assert call(faults, method) == error


def test_non_premium_transfers_get_flood_premium_wait() -> None:
    faults, clock = realistic()
    faults.premium = lambda user_id: user_id == 2
    assert [call(faults, "GetFile") for _ in range(20)] == [None] * 20
    assert call(faults, "GetFile") == "420 FLOOD_PREMIUM_WAIT_5"
    clock.now += 1
    assert call(faults, "GetFile") == "420 FLOOD_PREMIUM_WAIT_4"  # parts in flight do not lengthen it
    assert call(faults, "SaveFilePart") is None  # uploads are throttled apart from downloads
    assert [call(faults, "GetFile", user_id=2) for _ in range(500)] == [None] * 500  # premium: not throttled
    clock.now += 4
    assert call(faults, "GetFile") is None


@pytest.mark.parametrize("scale", [60.0, 7.0, 3600.0])
def test_the_scale_plays_periods_and_penalties_faster_and_tells_real_seconds(scale: float) -> None:
    faults, clock = realistic(scale)
    for _ in range(20):
        assert check(faults, send(1)) is None
    told = check(faults, send(1))
    seconds = max(1, -(-30 // scale))
    assert told == f"420 FLOOD_WAIT_{seconds:.0f}"
    clock.now += seconds  # a client that waits what it was told meets a model that agrees
    assert [check(faults, send(1)) for _ in range(20)] == [None] * 20
    clock.now += 10.1 / scale  # the burst quota's 10 s period, played faster
    assert [check(faults, send(1)) for _ in range(20)] == [None] * 20
    assert check(faults, send(1)) is not None


def test_a_client_that_waits_one_second_less_than_told_is_refused() -> None:
    faults, clock = realistic(7)  # 30 s / 7 = 4.3 s: told 5
    for _ in range(20):
        check(faults, send(1))
    assert check(faults, send(1)) == "420 FLOOD_WAIT_5"
    clock.now += 4
    assert check(faults, send(1)) is not None


def test_presets_load_by_name_and_replace_each_other() -> None:
    assert {"realistic", "sliding", "off"} <= set(PRESETS)
    clock = FakeClock()
    faults = Faults(clock=clock)
    for name in PRESETS:
        faults.use_limits(name, scale=2)
    with pytest.raises(ValueError, match="realistic"):
        faults.use_limits("nonsense")
    with pytest.raises(ValueError, match="scale"):
        faults.use_limits("realistic", scale=0)

    faults.use_limits("sliding")  # the old model: a sliding window of 20 a minute per send method
    assert faults.flood is None
    for _ in range(20):
        assert check(faults, send(1)) is None
        clock.now += 1
    assert check(faults, send(1)) == "420 FLOOD_WAIT_40"  # the first call leaves the window at +60
    assert call(faults, "GetHistory") is None

    faults.use_limits("sliding", scale=60)  # fresh windows of one second
    assert [check(faults, send(1)) for _ in range(20)] == [None] * 20
    assert check(faults, send(1)) == "420 FLOOD_WAIT_1"

    own = faults.add_rate_rule(RateRule(method="GetHistoryRequest", limit=1, window=60))
    faults.use_limits("off")  # the preset's windows go, a test's own rules stay
    assert [check(faults, send(1)) for _ in range(50)] == [None] * 50
    assert call(faults, "GetHistory") is None and call(faults, "GetHistory") == "420 FLOOD_WAIT_60"
    faults.remove_rate_rule(own)

    faults.use_limits(Limits(name="mine"))
    faults.use_limits("realistic")
    faults.clear()
    assert faults.flood is None and [check(faults, send(1)) for _ in range(50)] == [None] * 50


# --- a real Telethon client ----------------------------------------------------------------------------------


async def test_a_telethon_client_that_waits_what_it_is_told_goes_on() -> None:
    faults = Faults()
    faults.use_limits("realistic", scale=30)  # the 30 s burst penalty plays in one second
    async with Sandbox(base_world(), faults=faults) as sb:
        dave = await sb.client("dave", flood_sleep_threshold=0)
        chat = await dave.get_input_entity("the_forum")
        for n in range(20):
            await dave.send_message(chat, f"m{n}")
        with pytest.raises(errors.FloodWaitError) as refused:
            await dave.send_message(chat, "refused")
        assert refused.value.seconds == 1
        await asyncio.sleep(refused.value.seconds)
        await dave.send_message(chat, "after the wait")
        texts = [m["text"] for m in sb.messages("forum")]
        assert "refused" not in texts and texts[-1] == "after the wait"  # a refused call was not executed
        assert faults.flood is not None and faults.flood.refusals == {"sends FLOOD_WAIT": 1}

        # Non-premium downloads are throttled, premium ones are not (carol is premium in the world).
        faults.use_limits("realistic")  # unscaled: the 5 s penalty outlasts the calls
        carol = await sb.client("carol", flood_sleep_threshold=0)
        refusals: dict[str, list[type[Exception]]] = {}
        for name, client in (("dave", dave), ("carol", carol)):
            photo = next(m for m in await client.get_messages("the_forum", limit=50) if m.photo)
            sb.world.move_file(photo.photo.id, 2)  # on the home DC: this is about throttling, not DCs
            _dc, location = utils.get_input_location(photo.media)
            refusals[name] = []
            for _ in range(25):
                try:
                    await client(functions.upload.GetFileRequest(location=location, offset=0, limit=4096))
                except errors.FloodError as exc:
                    refusals[name].append(type(exc))
        # Telethon refuses the later calls itself, without sending them, until the wait is over.
        assert refusals == {"dave": [errors.FloodPremiumWaitError] + [errors.FloodWaitError] * 4, "carol": []}
        assert faults.flood is not None and faults.flood.refusals == {"downloads FLOOD_PREMIUM_WAIT": 1}


async def test_serve_limits_option_puts_the_model_in_front_of_every_call(tmp_path: Path) -> None:
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(base_world()))
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--world", str(world_file), "--state", str(state), "--limits", "realistic",
        "--limits-scale", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO, env={**os.environ},
    )  # fmt: skip
    try:
        banner = await read_until_ready(proc)
        assert "flood limits: realistic, 60x faster" in banner
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        rsa.add_key((state / "server_key.pem").read_text(), old=False)
        session = MemorySession()
        session.set_dc(2, "127.0.0.1", port)
        client = TelegramClient(session, API_ID, API_HASH, flood_sleep_threshold=0)
        await asyncio.wait_for(client.connect(), 20)
        try:
            code = functions.auth.SendCodeRequest("+15550000004", API_ID, API_HASH, types.CodeSettings())
            for _ in range(5):
                await asyncio.wait_for(client(code), 20)
            started = time.monotonic()
            with pytest.raises(errors.FloodWaitError) as refused:
                await asyncio.wait_for(client(code), 20)
            assert refused.value.seconds == 10800 / 60  # three hours for login codes, 60x faster
            assert time.monotonic() - started < 5
        finally:
            await client.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--limits", "nonsense"], "invalid choice"), (["--limits-scale", "0"], "not a positive number")],
)
def test_serve_refuses_an_unknown_preset_or_scale(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("serve", "--state", str(tmp_path / "s"), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
