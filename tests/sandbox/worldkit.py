"""Shared test material for the sandbox world and RPC tests: a small world and a handler harness."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telethon.tl import types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.centres import upload_owner
from telepi.sandbox.rpc.common import Env
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, serialize_result
from telepi.sandbox.rpc.registry import build_env, build_registry
from telepi.sandbox.world.files import FileStore
from telepi.sandbox.world.world import World
from telepi.sandbox.world.worldfile import load_world

_WORLD: dict[str, Any] = {
    "accounts": [
        {"name": "alice", "phone": "+15550000001", "code": "11111", "username": "alice"},
        {"name": "bob", "phone": "+15550000002", "code": "22222", "password": "correct horse"},
        {"name": "carol", "phone": "+15550000003", "code": "33333", "premium": True},
        {"name": "dave", "phone": "+15550000004", "code": "44444"},
    ],
    "users": [{"name": "eve", "first_name": "Eve"}],
    "chats": [
        {
            "name": "forum",
            "kind": "supergroup",
            "forum": True,
            "title": "Forum",
            "username": "the_forum",
            "owner": "alice",
            "members": ["bob", "dave", "eve"],
            "admins": {"carol": ["manage_topics", "post_messages"]},
            "topics": [{"title": "News", "ref": "news"}, {"title": "Talk", "ref": "talk"}],
            "messages": [
                {"ref": "hello", "text": "hello", "entities": [{"type": "bold", "offset": 0, "length": 5}]},
                {"ref": "n1", "topic": "news", "text": "news one", "from": "bob"},
                {"topic": "news", "reply_to": "n1", "text": "reply in news", "from": "eve"},
                {"topic": "talk", "media": {"kind": "photo", "size": 3000, "seed": "p1", "w": 640, "h": 480}},
                {
                    "topic": "talk",
                    "media": {"kind": "video", "size": 9000, "seed": "v1", "duration": 3.5, "w": 320, "h": 240},
                    "text": "a video",
                },
            ],
        },
        {
            "name": "chan",
            "kind": "channel",
            "title": "Channel",
            "username": "the_chan",
            "owner": "alice",
            "members": ["bob", "dave"],
            "admins": {"carol": ["post_messages"]},
            "messages": [
                {"text": "post one"},
                {"album": "a", "media": {"kind": "photo", "size": 2000, "seed": "a1"}, "text": "album"},
                {"album": "a", "media": {"kind": "photo", "size": 2100, "seed": "a2"}},
                {"media": {"kind": "document", "size": 5000, "seed": "d1", "filename": "r.pdf", "thumb": True}},
            ],
        },
        {
            "name": "vault",
            "kind": "supergroup",
            "title": "Protected",
            "owner": "alice",
            "noforwards": True,
            "members": ["bob"],
            "messages": [
                {"text": "secret"},
                {"media": {"kind": "document", "size": 4000, "seed": "s1", "filename": "s.bin"}},
            ],
        },
        {
            "name": "group",
            "kind": "group",
            "title": "Basic",
            "owner": "alice",
            "members": ["bob", "carol"],
            "messages": [{"ref": "g1", "text": "group hi"}, {"from": "bob", "text": "group reply", "reply_to": "g1"}],
        },
        {
            "name": "target",
            "kind": "supergroup",
            "forum": True,
            "title": "Target",
            "owner": "alice",
            "members": ["bob"],
            "admins": {"carol": ["manage_topics"]},
        },
    ],
}


def base_world() -> dict[str, Any]:
    """A fresh copy of the standard test world (tests may change it)."""
    return copy.deepcopy(_WORLD)


@dataclass
class RecordingSink:
    """Collects what the server would push: (user_id, Updates, except_session)."""

    pushed: list[tuple[int, TLObject, tuple[int, int] | None]] = field(default_factory=list)

    def push(self, user_id: int, updates: TLObject, *, except_session: tuple[int, int] | None = None) -> None:
        self.pushed.append((user_id, updates, except_session))

    def to(self, user_id: int) -> list[TLObject]:
        return [u for uid, batch, _ in self.pushed if uid == user_id for u in batch.updates]

    def clear(self) -> None:
        self.pushed.clear()


class Harness:
    """World + FileStore + the real registry, invoked directly with Telethon request objects."""

    def __init__(self, state_dir: Path, spec: dict[str, Any] | None = None) -> None:
        self.world = World(state_dir / "world.sqlite")
        self.files = FileStore(state_dir)
        if spec is not None:
            load_world(spec, self.world, self.files)
        self.env: Env = build_env(self.world, self.files)
        self.registry: Registry = build_registry(self.world, self.files, env=self.env)
        self.sink = RecordingSink()
        self.bound: dict[int, int | None] = {}

    def close(self) -> None:
        self.files.close()
        self.world.close()

    def uid(self, name: str) -> int:
        return self.world.account(name).id

    async def call(
        self, who: str | int | None, request: TLObject, *, key: int = 1, session: int = 1, dc: int = 2
    ) -> Any:
        """Invoke as account ``who`` (a name, an id or None for logged out) on DC ``dc``; serializes the
        result too."""
        user_id = self.uid(who) if isinstance(who, str) else who
        ctx = RpcContext(auth_key_id=key, session_id=session, user_id=user_id, sink=self.sink, dc_id=dc)
        ctx.bind_user = lambda value: self.bound.__setitem__(key, value)
        result = await self.registry.invoke(ctx, request)
        serialize_result(result)  # every answer must be valid TL
        return result

    def input_peer(self, chat_name: str) -> TLObject:
        chat = self.world.find_chat_ref(chat_name)
        if chat.is_channel:
            return types.InputPeerChannel(chat.raw_id, chat.access_hash)
        return types.InputPeerChat(chat.raw_id)

    def input_channel(self, chat_name: str) -> TLObject:
        chat = self.world.find_chat_ref(chat_name)
        return types.InputChannel(chat.raw_id, chat.access_hash)

    def input_user(self, name: str) -> TLObject:
        user = self.world.account(name)
        return types.InputPeerUser(user.id, user.access_hash)

    def upload(self, owner: str, data: bytes, *, name: str = "f.bin") -> TLObject:
        """Store ``data`` as an uploaded file of ``owner`` (as saveFilePart would) and name it."""
        import hashlib

        file_id = int.from_bytes(os.urandom(7), "big")
        part = 64 * 1024
        chunks = [data[i : i + part] for i in range(0, len(data), part)] or [b""]
        for index, chunk in enumerate(chunks):
            self.files.save_part(upload_owner(self.uid(owner), 2), file_id, index, chunk, big=False, total_parts=None)
        return types.InputFile(file_id, len(chunks), name, hashlib.md5(data).hexdigest())
