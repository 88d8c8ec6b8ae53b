"""A control socket for a running sandbox: other processes post, edit and delete like a client would.

``telepi sandbox serve`` listens on ``<state>/control.sock`` (a Unix socket, owner-only). A request
is one JSON line, the answer one JSON line::

    {"op": "post", "chat": "source", "text": "hi", "topic": 2, "as": "alice"}  -> {"ok": true, "id": 42}
    {"op": "edit", "chat": "source", "id": 42, "text": "hi!"}                  -> {"ok": true}
    {"op": "delete", "chat": "source", "ids": [42]}                           -> {"ok": true}
    {"op": "topic", "chat": "source", "title": "News"}                        -> {"ok": true, "id": 7}
    {"op": "account", "as": "alice", "standing": "revoked"}                   -> {"ok": true}
      (standing: revoked, forgotten, banned, deleted, frozen or active; see standing.py)

Why a socket and not a Telethon login: the change then goes through the same code as
``Sandbox.post`` (world + live updates to every connected member) without creating auth keys,
and it works for any account, including ones with 2FA.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telepi.sandbox.world.standing import STANDINGS

if TYPE_CHECKING:
    from telepi.sandbox.sandbox import Sandbox

SOCKET_NAME = "control.sock"
MAX_REQUEST = 1024 * 1024


class ControlServer:
    """Serves control requests for ``sandbox`` on ``<state_dir>/control.sock``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.path = sandbox.state_dir / SOCKET_NAME
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                answer = await self.handle(json.loads(line))
            except (KeyError, ValueError, TypeError) as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        sb = self.sandbox
        op = request.get("op")
        account = request.get("as")
        if op == "account":
            return self._account(str(account), str(request["standing"]))
        chat = request["chat"]
        if op == "post":
            msg_id = await sb.post(
                chat,
                str(request.get("text", "")),
                as_account=account,
                topic=request.get("topic"),
                reply_to=request.get("reply_to"),
                media=request.get("media"),
                entities=request.get("entities", ()),
            )
            return {"ok": True, "id": msg_id}
        if op == "edit":
            await sb.edit(chat, int(request["id"]), str(request["text"]), as_account=account)
            return {"ok": True}
        if op == "delete":
            await sb.delete(chat, [int(i) for i in request["ids"]], as_account=account)
            return {"ok": True}
        if op == "topic":
            return {"ok": True, "id": await sb.create_topic(chat, str(request["title"]), as_account=account)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _account(self, account: str, standing: str) -> dict[str, Any]:
        sb = self.sandbox
        if standing == "revoked":
            sb.revoke(account)
        elif standing == "forgotten":
            sb.forget_auth_keys(account)
        elif standing in STANDINGS:
            sb.set_standing(account, standing)
        else:
            return {"ok": False, "error": f"unknown standing {standing!r}"}
        return {"ok": True}


class ControlError(RuntimeError):
    """The control request failed, or no sandbox is serving the state directory."""


async def control_request(state_dir: Path, request: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the sandbox serving ``state_dir``; raises ControlError on failure."""
    path = Path(state_dir) / SOCKET_NAME
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(
            f"no sandbox is serving {state_dir}: start one with `telepi sandbox serve --state {state_dir}`"
        ) from None
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    answer: dict[str, Any] = json.loads(line)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "the sandbox refused the request")))
    return answer
