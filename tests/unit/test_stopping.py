"""until_stopped: a stop ends work that waits for ever (a Telethon call while Telegram is gone)."""

from __future__ import annotations

import asyncio
import time

import pytest

from telepi.engine.stopping import until_stopped


async def forever() -> int:
    await asyncio.Event().wait()
    return 1


async def test_cut_off_the_work_is_cancelled_at_once() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    assert await until_stopped(forever(), stop, lambda: False, grace=10) is None
    assert time.monotonic() - started < 1


async def test_connected_the_work_gets_the_grace_then_is_cancelled() -> None:
    stop = asyncio.Event()
    stop.set()
    started = time.monotonic()
    assert await until_stopped(forever(), stop, lambda: True, grace=0.3) is None
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_work_that_ends_in_the_grace_gives_its_result_and_its_errors() -> None:
    async def finishing() -> int:
        await asyncio.sleep(0.1)
        return 7

    async def failing() -> int:
        raise ValueError("boom")

    stop = asyncio.Event()
    stop.set()
    assert await until_stopped(finishing(), stop, lambda: True, grace=5) == 7
    with pytest.raises(ValueError, match="boom"):
        await until_stopped(failing(), asyncio.Event(), lambda: True)
