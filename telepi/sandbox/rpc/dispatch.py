"""The seam between the sandbox's MTProto server and its Telegram world.

The server (``wire/server.py``) owns connections, encryption and sessions; it unwraps
``invokeWithLayer``/``initConnection``/``invokeWithoutUpdates``/``invokeAfterMsg`` and hands every
real request (https://core.telegram.org/api/invoking) to a :class:`Registry` together with an :class:`RpcContext`.
Handlers (``rpc/*.py``)
return a TL object, a ``list`` (sent as a TL vector), a ``bool`` (boolTrue/boolFalse) or raise
:class:`RpcError`, which the server sends back as ``rpc_error``
(https://core.telegram.org/mtproto/service_messages).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from telethon.tl.tlobject import TLObject

VECTOR_ID = 0x1CB5C415
BOOL_TRUE_ID = 0x997275B5
BOOL_FALSE_ID = 0xBC799737


class RpcError(Exception):
    """An error answered to the client as ``rpc_error`` (e.g. ``RpcError(420, "FLOOD_WAIT_5")``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class UpdateSink(Protocol):
    """Delivers pushed updates to every live connection of an account."""

    def push(self, user_id: int, updates: TLObject, *, except_session: tuple[int, int] | None = None) -> None:
        """Push ``updates`` to all sessions of ``user_id`` but ``except_session`` (auth_key_id, session_id)."""

    def push_to_key(self, auth_key_id: int, updates: TLObject) -> None:
        """Push ``updates`` to one auth key, logged in or not (a QR login's ``updateLoginToken``)."""


class _NoSink:
    def push(self, user_id: int, updates: TLObject, *, except_session: tuple[int, int] | None = None) -> None:
        return None

    def push_to_key(self, auth_key_id: int, updates: TLObject) -> None:
        return None


@dataclass
class RpcContext:
    """Who is calling: the auth key, its MTProto session and the account bound to that key."""

    auth_key_id: int
    session_id: int
    user_id: int | None
    layer: int = 229
    dc_id: int = 2
    sink: UpdateSink = field(default_factory=_NoSink)
    # Persists which account this auth key is logged in as (None = logged out).
    bind_user: Callable[[int | None], None] = lambda _user_id: None

    @property
    def session_key(self) -> tuple[int, int]:
        return (self.auth_key_id, self.session_id)

    def require_user(self) -> int:
        if self.user_id is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        return self.user_id


Handler = Callable[[RpcContext, Any], Awaitable[object]]
# Refuses a request before it runs: (method, user id or None, auth key id) -> the error, or None to run it.
Gate = Callable[[str, "int | None", int], "RpcError | None"]


class Registry:
    """Maps TL request constructor ids to async handlers."""

    def __init__(self) -> None:
        self._handlers: dict[int, Handler] = {}

    def register(self, request_type: type[TLObject]) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self._handlers[request_type.CONSTRUCTOR_ID] = handler
            return handler

        return decorate

    def merge(self, other: Registry) -> None:
        self._handlers.update(other._handlers)

    def handles(self, request: TLObject) -> bool:
        return request.CONSTRUCTOR_ID in self._handlers

    async def invoke(self, ctx: RpcContext, request: TLObject) -> object:
        handler = self._handlers.get(request.CONSTRUCTOR_ID)
        if handler is None:
            raise RpcError(400, f"METHOD_NOT_SUPPORTED_{type(request).__name__.upper()}")
        return await handler(ctx, request)


def serialize_result(result: object) -> bytes:
    """TL bytes of a handler's result: objects as-is, lists as vectors, bools as boolTrue/boolFalse."""
    if isinstance(result, bool):
        return struct.pack("<I", BOOL_TRUE_ID if result else BOOL_FALSE_ID)
    if isinstance(result, TLObject):
        return bytes(result)
    if isinstance(result, bytes):
        return result
    if isinstance(result, list):
        parts = [struct.pack("<Ii", VECTOR_ID, len(result))]
        for item in result:
            if isinstance(item, bool):
                raise TypeError("vectors of bool are not used by the sandbox")
            if isinstance(item, int):
                parts.append(struct.pack("<q", item))  # Vector<long> (e.g. received message ids use int)
            else:
                parts.append(serialize_result(item))
        return b"".join(parts)
    raise TypeError(f"cannot serialize handler result of type {type(result).__name__}")
