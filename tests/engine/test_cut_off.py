"""A session cut off from Telegram in the middle of a send, on an ordered route shared with another
session (issue 13, point 3). Its heartbeats go on (the checkpoint is local), so its leases would never
run out: before, the route waited for the whole outage. Now its send is withdrawn at the send timeout,
its unsent work goes to the other session at once, and the unit whose send was out is settled by the
takeover rules: adopted when it landed, sent again when it did not. When the link comes back, the cut-off
session sends nothing it no longer holds. Judged from the target: every message once, in order.

The outage is real: the session reaches the sandbox through a TCP proxy of the test's, whose port is
closed (every connection cut) while the other session's own link stays up."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from pathlib import Path

import pytest

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world

LEASE = 20.0
OUTAGE = 2 * LEASE  # before the fix the route waited this long
SENDS = ("SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest")
CUT_AT_SEND = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Link:
    """A TCP proxy in front of the sandbox for one client: ``cut()`` closes its port and every connection
    through it, as a lost route to Telegram does; ``restore()`` opens the same port again."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.parametrize("lost", ["request", "answer"])
async def test_a_session_cut_off_mid_send_holds_the_ordered_route_no_longer_than_a_lease(
    tmp_path: Path, lost: str
) -> None:
    async with Sandbox(world=forum_world(60), state_dir=tmp_path / "state") as sb:
        link = Link(sb.port)
        await link.restore()
        env = {
            "LIVE": "true",
            "MODE": "copy",
            "SEND_INTERVAL": "0.3",
            "READ_INTERVAL": "0",
            "LEASE_SECONDS": str(int(LEASE)),
        }
        chats = {"SOURCE_CHAT": str(sb.chat("source").id), "TARGET_CHAT": str(sb.chat("target").id)}
        cut_off = await sb.session_dir(
            tmp_path / "s" / "session1", "bob", TG_DC=f"127.0.0.1:{link.port}", **chats, **env
        )
        steady = await sb.session_dir(tmp_path / "s" / "session2", "carol", **chats, **env)
        cut_at: list[float] = []

        sends = itertools.count(1)

        def lose_the_link(_request: object) -> object:
            # bob's 4th send of any kind: which method it is depends on how the two sessions share the work
            if cut_at or next(sends) != CUT_AT_SEND:
                return None
            cut_at.append(time.monotonic())
            link.cut()  # the answer (or the request itself) is lost with the link
            return RpcError(500, "INTERNAL") if lost == "request" else None

        bob = sb.account("bob").id
        hook = sb.faults.before_call if lost == "request" else sb.faults.after_call
        for method, nth in itertools.product(SENDS, range(1, CUT_AT_SEND + 1)):
            hook(method, lose_the_link, nth=nth, user_id=bob)
        source = len(content(sb.messages("source")))
        stop = asyncio.Event()
        stores = [SqliteStore(load_settings(d, {}).shared_db_path) for d in (cut_off, steady)]
        runs = [
            asyncio.create_task(run_session(load_settings(d, {}), store, stop))
            for d, store in zip((cut_off, steady), stores, strict=True)
        ]
        moved: list[float] = []  # when the target grew
        try:
            deadline = time.monotonic() + 120
            while len(content(sb.messages("target"))) < source:
                assert time.monotonic() < deadline, f"{len(content(sb.messages('target')))} of {source} copied"
                assert not any(run.done() for run in runs), [run for run in runs if run.done()]
                count = len(content(sb.messages("target")))
                await asyncio.sleep(0.05)
                if len(content(sb.messages("target"))) > count:
                    moved.append(time.monotonic())
                if cut_at and time.monotonic() - cut_at[0] > OUTAGE and link._server is None:
                    await link.restore()
            assert cut_at, f"the cut-off session never made send {CUT_AT_SEND}"
            if link._server is None:  # copied before the outage was over: let the link come back
                await asyncio.sleep(max(0.0, cut_at[0] + OUTAGE - time.monotonic()))
                await link.restore()
            await asyncio.sleep(LEASE / 2)  # the cut-off session reconnects: anything it still sends lands now
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 60)
            for store in stores:
                store.close()
        after = [cut_at[0], *(t for t in moved if t > cut_at[0])]
        resumed = max(b - a for a, b in itertools.pairwise(after))  # longest standstill after the cut
        print(f"lost the {lost}: the route stood still at most {resumed:.1f}s after the cut (lease {LEASE:.0f}s)")
        assert resumed < LEASE, f"the route waited {resumed:.1f}s for the cut-off session"
        assert_clone_equal(sb, "source", "target")  # every message once, in order, nothing sent after the cut
