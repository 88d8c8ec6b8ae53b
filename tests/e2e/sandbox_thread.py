"""The sandbox served from a thread of its own, for the synchronous e2e tests: the units in the container
reach it on the host's loopback (the container shares the host's network)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from telepi.sandbox.sandbox import Sandbox, shared_server_key
from telepi.sandbox.wire.handshake import ServerKey

T = TypeVar("T")


class SandboxThread:
    def __init__(self, world: dict[str, Any], state_dir: Path, key_file: Path | None = None) -> None:
        """``key_file``: keep the server's RSA key there between runs (generating one takes seconds)."""
        self._key_file = key_file
        self._world = world
        self._state_dir = state_dir
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sandbox: Sandbox | None = None
        self._thread = threading.Thread(target=self._main, name="sandbox", daemon=True)

    def __enter__(self) -> SandboxThread:
        self._thread.start()
        self._ready.wait(120)
        if self._failure is not None:
            raise RuntimeError("the sandbox did not start") from self._failure
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def call(self, function: Callable[[Sandbox], Awaitable[T] | T], timeout: float = 120) -> T:
        """Run ``function(sandbox)`` on the sandbox's loop (awaiting it if it is a coroutine)."""
        assert self._loop is not None and self._sandbox is not None
        sandbox = self._sandbox

        async def run() -> T:
            result = function(sandbox)
            return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by __enter__
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with Sandbox(world=self._world, state_dir=self._state_dir, server_key=self._server_key()) as sandbox:
            self._sandbox = sandbox
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def _server_key(self) -> ServerKey:
        if self._key_file is None:
            return shared_server_key()
        if self._key_file.exists():
            return ServerKey.from_pem(self._key_file.read_bytes())
        key = shared_server_key()
        self._key_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self._key_file.with_suffix(".partial")
        partial.write_bytes(key.private_pem())
        partial.chmod(0o600)
        partial.rename(self._key_file)
        return key
