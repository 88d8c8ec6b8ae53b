"""Telegram refuses to edit a forwarded message (one with a forward header); a forward without its author is
the forwarder's own message and may be edited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from telethon.tl import functions, types

from telepi.sandbox.rpc.dispatch import RpcError
from tests.sandbox.worldkit import Harness, base_world


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, base_world())
    yield harness
    harness.close()


@pytest.mark.parametrize("drop_author", [False, True])
async def test_only_a_forward_without_its_header_can_be_edited(h: Harness, drop_author: bool) -> None:
    history = await h.call(
        "alice",
        functions.messages.GetHistoryRequest(h.input_peer("chan"), 0, None, 0, 1, 0, 0, 0),
    )
    request = functions.messages.ForwardMessagesRequest(
        h.input_peer("chan"),
        [history.messages[0].id],
        h.input_peer("target"),
        random_id=[77],
        drop_author=drop_author,
    )
    [copy] = [
        u.message for u in (await h.call("alice", request)).updates if isinstance(u, types.UpdateNewChannelMessage)
    ]
    edit = functions.messages.EditMessageRequest(h.input_peer("target"), copy.id, message="changed after forwarding")
    if drop_author:
        await h.call("alice", edit)
    else:
        with pytest.raises(RpcError) as refused:
            await h.call("alice", edit)
        assert refused.value.message == "MESSAGE_ID_INVALID"
