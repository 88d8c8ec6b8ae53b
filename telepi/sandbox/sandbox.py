"""``Sandbox``: a running local Telegram for tests, benchmarks and ``telepi demo``.

    async with Sandbox(world={...}) as sb:          # or a path to a world file, or a World
        client = await sb.client("alice")           # a logged-in, unmodified TelegramClient
        await sb.post("source", "hello", topic=2)   # mutate the world and push live updates
        assert sb.messages("target")[-1]["text"] == "hello"

It runs Telegram's five data centres (``dcs/centres.py``) and a CDN DC (``dcs/cdn.py``), each on its own loopback
port with its own auth keys, over one world and one file store; ``port`` is the home DC's (2), where accounts log in.

The state directory (a temporary one by default) holds ``world.sqlite``, the file store, the
home DC's keys (the other DCs' in ``dc1/``, ``dc3/``...) and ``server_key.pem`` (the public key clients register with
``telethon.crypto.rsa.add_key(pem, old=False)``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from telethon import TelegramClient, errors
from telethon.client.telegrambaseclient import TelegramBaseClient
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import MemorySession, SQLiteSession

from telepi.sandbox.dcs.cdn import CDN_DC
from telepi.sandbox.dcs.centres import DC_IDS, HomeSink, dc_gate
from telepi.sandbox.limits.faults import Faults
from telepi.sandbox.private import private_dir
from telepi.sandbox.rpc.common import Env
from telepi.sandbox.rpc.deliver import deliver_delete, deliver_edit, deliver_new
from telepi.sandbox.rpc.registry import build_env, build_registry
from telepi.sandbox.wire.handshake import ServerKey
from telepi.sandbox.wire.server import SandboxServer
from telepi.sandbox.world.files import FileStore
from telepi.sandbox.world.peers import is_channel
from telepi.sandbox.world.photos import downloadable
from telepi.sandbox.world.records import GENERAL_TOPIC, Chat, Message, NewMessage, Posted, User
from telepi.sandbox.world.standing import AccountStanding, Standing
from telepi.sandbox.world.world import World
from telepi.sandbox.world.worldfile import build_media, load_world

API_ID = 94575  # any id works: the sandbox does not check it
API_HASH = "a3406de8d171bb422bb6ddf3bbd800e2"
PUBLIC_KEY_FILE = "server_key.pem"

_shared_key: ServerKey | None = None


def shared_server_key() -> ServerKey:
    """One RSA key for every throw-away sandbox of this process (generating one takes ~2 s)."""
    global _shared_key
    if _shared_key is None:
        _shared_key = ServerKey.generate()
    return _shared_key


class Sandbox:
    """A world plus a running MTProto server on a free loopback port.

    ``world`` is a world-file dict, a path to one, or a :class:`World` (whose directory becomes the
    state dir). An existing ``state_dir`` with a world in it is reused as is (the world file is only
    loaded into an empty world), so session files written by :meth:`session_dir` stay valid.
    """

    def __init__(
        self,
        world: Mapping[str, Any] | str | Path | World | None = None,
        state_dir: str | Path | None = None,
        faults: Faults | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        server_key: ServerKey | None = None,
        dc_id: int = 2,
    ) -> None:
        self._spec = None if isinstance(world, World) else world
        self._given_world = world if isinstance(world, World) else None
        if self._given_world is not None and state_dir is None:
            state_dir = self._given_world.path.parent
        self._temp = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="telepi-sandbox-")) if state_dir is None else Path(state_dir)
        self._faults = faults if faults is not None else Faults()
        self._host = host
        self._port = port
        self._server_key = server_key if server_key is not None or not self._temp else shared_server_key()
        self.dc_id = dc_id
        self._clients: list[TelegramClient] = []
        self._servers: dict[int, SandboxServer] = {}
        self._world: World | None = None
        self._files: FileStore | None = None
        self._env: Env | None = None
        self._standing: AccountStanding | None = None

    # ---- lifecycle

    async def start(self) -> Sandbox:
        private_dir(self.state_dir)
        self._world = self._given_world or World(self.state_dir / "world.sqlite")
        self._files = FileStore(self.state_dir)
        if self._spec is not None and self._world.is_empty():
            load_world(self._spec, self._world, self._files)
        self._env = build_env(self._world, self._files, dc_id=self.dc_id)
        world = self._world
        self._faults.premium = lambda user_id: (user := world.find_user(user_id)) is not None and user.premium
        registry = build_registry(self._world, self._files, endpoint=self._endpoints, env=self._env)
        key = self._server_key
        for dc in (*DC_IDS, CDN_DC):
            server = SandboxServer(
                registry,
                self.state_dir if dc == self.dc_id else self.state_dir / f"dc{dc}",
                host=self._host,
                port=self._port if dc == self.dc_id else 0,
                faults=self._faults,
                dc_id=dc,
                server_key=key,
            )
            key = key or server.server_key  # one RSA key for every DC: clients register one
            self._servers[dc] = server
        self._standing = AccountStanding(self._world, [s.store for s in self._servers.values()])
        fanout = HomeSink(self._servers, lambda user_id: world.user(user_id).dc)
        for dc, server in self._servers.items():
            server.gate = dc_gate(dc, lambda user_id: world.user(user_id).dc, self._standing.check)
            server.fanout = fanout
            await server.start()
        self.server.write_public_key(self.public_key_path)
        assert self.env.cdn is not None
        self.env.cdn.public_key_pem = self.server.public_key_pem  # one key for every DC, the CDN's too
        telethon_rsa.add_key(self.server.public_key_pem, old=False)
        forget_cached_config()
        return self

    async def stop(self) -> None:
        for client in self._clients:
            if client.is_connected():
                await asyncio.wait_for(client.disconnect(), 10)
        self._clients.clear()
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await server.stop()
        if self._files is not None:
            self._files.close()
            self._files = None
        if self._world is not None and self._world is not self._given_world:
            self._world.close()  # a World handed in stays its owner's to close
        self._world = None
        if self._temp:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _endpoints(self) -> dict[int, tuple[str, int]]:
        return {dc: (self._host, server.port) for dc, server in self._servers.items()}

    # ---- parts

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host(self) -> str:
        return self._host

    @property
    def server(self) -> SandboxServer:
        """The home DC's server."""
        return self.dc(self.dc_id)

    def dc(self, dc_id: int) -> SandboxServer:
        """The server of one data centre."""
        if not self._servers:
            raise RuntimeError("the sandbox is not running")
        return self._servers[dc_id]

    @property
    def servers(self) -> dict[int, SandboxServer]:
        return dict(self._servers)

    def file_dcs(self, chat: str | int) -> dict[int, int]:
        """How many of ``chat``'s files (documents and photos) live on each DC."""
        found = self.chat(chat)
        counts: dict[int, int] = {}
        for message in self.world.all_messages(self._box(found, None), found.id):
            media = message.media or {}
            if "document_id" in media:
                dc = self.world.document(media["document_id"]).dc
            elif "photo_id" in media:
                dc = self.world.photo(media["photo_id"]).dc
            else:
                continue
            counts[dc] = counts.get(dc, 0) + 1
        return dict(sorted(counts.items()))

    def exports(self, account: str | int) -> dict[int, int]:
        """``auth.exportAuthorization`` calls of an account so far, per target DC."""
        return self.env.dcs.exports_of(self.account(account).id)

    @property
    def world(self) -> World:
        if self._world is None:
            raise RuntimeError("the sandbox is not running")
        return self._world

    @property
    def files(self) -> FileStore:
        if self._files is None:
            raise RuntimeError("the sandbox is not running")
        return self._files

    @property
    def env(self) -> Env:
        if self._env is None:
            raise RuntimeError("the sandbox is not running")
        return self._env

    @property
    def faults(self) -> Faults:
        return self._faults

    @property
    def public_key_path(self) -> Path:
        return self.state_dir / PUBLIC_KEY_FILE

    @property
    def file_reference_max_age(self) -> float:
        return self.world.file_reference_max_age

    @file_reference_max_age.setter
    def file_reference_max_age(self, seconds: float) -> None:
        self.world.file_reference_max_age = seconds

    def set_noforwards(self, chat: str | int, enabled: bool = True) -> None:
        """Protect a chat's content (no forwards, no re-sending its media by reference)."""
        self.world.set_chat_flags(self.chat(chat).id, noforwards=enabled)

    def account(self, ref: str | int) -> User:
        """An account or user by name, phone, username or id."""
        return self.world.account(ref)

    # ---- what Telegram does to an account from outside (see standing.py)

    @property
    def standing(self) -> AccountStanding:
        if self._standing is None:
            raise RuntimeError("the sandbox is not running")
        return self._standing

    def revoke(self, account: str | int, error: str = "SESSION_REVOKED") -> int:
        """Log every session of ``account`` out, as "terminate other sessions" does; returns how many."""
        user_id = self.account(account).id
        return self.standing.revoke(user_id, error)

    def forget_auth_keys(self, account: str | int) -> int:
        """Make the server forget ``account``'s auth keys (the transport's -404 from then on)."""
        user_id = self.account(account).id
        return self.standing.forget(user_id)

    def set_standing(self, account: str | int, standing: Standing) -> None:
        """Ban (``banned``), delete, freeze or restore (``active``) an account; every later call sees it."""
        self.standing.set_standing(self.account(account).id, standing)

    def chat(self, ref: str | int) -> Chat:
        """A chat by world name, username, marked id or raw id."""
        return self.world.find_chat_ref(ref)

    # ---- clients and session directories

    async def client(
        self,
        account: str | int,
        *,
        flood_sleep_threshold: int = 60,
        session: Any = None,
        receive_updates: bool = True,
        **kwargs: Any,
    ) -> TelegramClient:
        """A connected TelegramClient logged in as ``account`` through the real RPC flow (code, 2FA)."""
        user = self.account(account)
        session = MemorySession() if session is None else session
        session.set_dc(self.dc_id, self._host, self.port)
        client = TelegramClient(
            session,
            API_ID,
            API_HASH,
            flood_sleep_threshold=flood_sleep_threshold,
            receive_updates=receive_updates,
            **kwargs,
        )
        self._clients.append(client)
        await client.connect()
        if not await client.is_user_authorized():
            await login(client, user)
        return client

    async def session_dir(self, path: str | Path, account: str | int, **env: str | int) -> Path:
        """Write a session directory: ``.env`` (TG_API_ID, TG_API_HASH, TG_DC, TG_SERVER_KEY and
        ``env``) and a logged-in ``<SESSION_NAME>.session`` (SESSION_NAME defaults to the directory's name).

        The session's entity cache knows every dialog of the account, so chats can be named by id.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        name = str(env.get("SESSION_NAME", path.name))
        client = await self.client(account, session=SQLiteSession(str(path / name)), receive_updates=False)
        try:
            await client.get_dialogs()
        finally:
            await client.disconnect()
            self._clients.remove(client)
        lines = {
            "TG_API_ID": str(API_ID),
            "TG_API_HASH": API_HASH,
            "TG_DC": f"{self._host}:{self.port}",
            "TG_SERVER_KEY": str(self.public_key_path.resolve()),
            **{key: str(value) for key, value in env.items()},
        }
        (path / ".env").write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        return path

    # ---- inspecting the world

    def _box(self, chat: Chat, as_account: str | int | None) -> int:
        if chat.is_channel:
            return chat.id
        return self.account(as_account).id if as_account is not None else chat.creator_id

    def messages(self, chat: str | int, *, as_account: str | int | None = None) -> list[dict[str, Any]]:
        """Every message of ``chat``, oldest first, as plain data (see :func:`message_data`)."""
        found = self.chat(chat)
        msgs = self.world.all_messages(self._box(found, as_account), found.id)
        names = {u.id: u.name for u in self.world.users({m.from_id for m in msgs if m.from_id is not None})}
        return [message_data(self.world, self.files, found, m, names) for m in msgs]

    def topics(self, chat: str | int) -> list[dict[str, Any]]:
        """The forum's topics (General first) as plain data."""
        found = self.chat(chat)
        tops = self.world.topic_top_ids(found.id)
        names = {u.id: u.name for u in self.world.users(t.creator_id for t in self.world.topics(found.id))}
        return [
            {
                "id": t.id,
                "title": t.title,
                "icon_color": t.icon_color,
                "icon_emoji_id": t.icon_emoji_id,
                "closed": t.closed,
                "hidden": t.hidden,
                "creator": names.get(t.creator_id),
                "date": t.date,
                "top_message": tops.get(t.id, t.id),
            }
            for t in self.world.topics(found.id)
        ]

    # ---- acting like a client (mutates the world and pushes live updates)

    def _sender(self, chat: Chat, as_account: str | int | None) -> int:
        sender = self.account(as_account).id if as_account is not None else chat.creator_id
        if self.world.member(chat.id, sender) is None:
            raise ValueError(f"{as_account!r} is not a member of {chat.name!r}")
        return sender

    async def post(
        self,
        chat: str | int,
        text: str = "",
        *,
        as_account: str | int | None = None,
        topic: int | None = None,
        reply_to: int | None = None,
        media: Mapping[str, Any] | None = None,
        entities: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Post a message (media: a world-file media spec) and push it live; returns its id."""
        found = self.chat(chat)
        sender = self._sender(found, as_account)
        built = (
            build_media(self.world, self.files, media, default_seed=f"post:{self.world.random_long()}")
            if media
            else None
        )
        new = NewMessage(
            text=text,
            entities=[dict(e) for e in entities],
            reply_to=reply_to,
            topic=None if topic in (None, GENERAL_TOPIC) else topic,
            media=built,
        )
        posted = self.world.post(sender, found.id, new)
        deliver_new(self.env, [posted], actor=None, sink=self.server.sink)
        return _own_id(posted, found, sender)

    async def post_album(
        self,
        chat: str | int,
        media: Sequence[Mapping[str, Any]],
        *,
        caption: str = "",
        as_account: str | int | None = None,
        topic: int | None = None,
    ) -> list[int]:
        """Post an album (2-10 media sharing a grouped_id, caption on the first); returns the ids."""
        found = self.chat(chat)
        sender = self._sender(found, as_account)
        grouped_id = self.world.random_long()
        posts: list[Posted] = []
        with self.world.batch():
            for index, spec in enumerate(media):
                built = build_media(self.world, self.files, spec, default_seed=f"post:{self.world.random_long()}")
                new = NewMessage(
                    text=caption if index == 0 else "",
                    topic=None if topic in (None, GENERAL_TOPIC) else topic,
                    media=built,
                    grouped_id=grouped_id,
                )
                posts.append(self.world.post(sender, found.id, new))
        deliver_new(self.env, posts, actor=None, sink=self.server.sink)
        return [_own_id(p, found, sender) for p in posts]

    async def edit(
        self,
        chat: str | int,
        msg_id: int,
        text: str,
        *,
        entities: Sequence[Mapping[str, Any]] = (),
        as_account: str | int | None = None,
    ) -> None:
        """Edit a message's text and push the edit live."""
        found = self.chat(chat)
        copies = self.world.edit(self._box(found, as_account), msg_id, text=text, entities=[dict(e) for e in entities])
        deliver_edit(self.env, copies, actor=None, sink=self.server.sink)

    async def delete(self, chat: str | int, ids: int | Sequence[int], *, as_account: str | int | None = None) -> None:
        """Delete messages (for everyone) and push the deletion live."""
        self.delete_now(chat, ids, as_account=as_account)

    def delete_now(self, chat: str | int, ids: int | Sequence[int], *, as_account: str | int | None = None) -> None:
        """:meth:`delete` without awaiting, for hooks that run inside a call (``Faults.before_call``)."""
        found = self.chat(chat)
        wanted = [ids] if isinstance(ids, int) else list(ids)
        deletions = self.world.delete(self._box(found, as_account), wanted)
        deliver_delete(self.env, deletions, actor=None, sink=self.server.sink)

    async def create_topic(self, chat: str | int, title: str, *, as_account: str | int | None = None) -> int:
        """Create a forum topic (as the owner by default) and push its service message; returns its id."""
        found = self.chat(chat)
        topic, posted = self.world.create_topic(found.id, title, creator_id=self._sender(found, as_account))
        deliver_new(self.env, [posted], actor=None, sink=self.server.sink)
        return topic.id


def forget_cached_config() -> None:
    """Telethon caches help.getConfig per process, on the client's class (``_get_dc`` sets
    ``cls._config``), and finds other DCs there; a process that starts several sandboxes (the tests)
    must not reach an earlier one's ports."""
    pending: list[type] = [TelegramBaseClient]
    while pending:
        cls = pending.pop()
        if "_config" in vars(cls):
            cls._config = None  # type: ignore[attr-defined]
        pending.extend(cls.__subclasses__())


def _own_id(posted: Posted, chat: Chat, sender: int) -> int:
    return posted.in_box(chat.id if chat.is_channel else sender).message.id


async def login(client: TelegramClient, user: User) -> None:
    """Sign ``client`` in as ``user`` the way a person would: code, then the 2FA password if any."""
    if user.phone is None or user.code is None:
        raise ValueError(f"{user.name!r} is not an account (no phone/code): it cannot log in")
    await client.send_code_request(user.phone)
    try:
        await client.sign_in(user.phone, user.code)
    except errors.SessionPasswordNeededError:
        await client.sign_in(password=user.password)


def message_data(world: World, files: FileStore, chat: Chat, msg: Message, names: Mapping[int, str]) -> dict[str, Any]:
    """A message as plain data: what tests and ``telepi sandbox dump`` compare."""
    topic: int | None = None
    if chat.forum:
        topic = msg.topic if msg.topic is not None else GENERAL_TOPIC
    return {
        "id": msg.id,
        "date": msg.date,
        "edit_date": msg.edit_date,
        "sender": names.get(msg.from_id) if msg.from_id is not None else None,
        "sender_id": msg.from_id,
        "text": msg.text,
        "entities": msg.entities,
        "reply_to": msg.reply_to,
        "topic": topic,
        "grouped_id": msg.grouped_id,
        "service": msg.action["type"] if msg.action else None,
        "action": msg.action,
        "fwd": msg.fwd,
        "noforwards": msg.noforwards,
        "pinned": msg.pinned,
        "media": media_data(world, files, msg.media) if msg.media else None,
        "channel_post": is_channel(msg.box) and chat.broadcast,
    }


def media_data(world: World, files: FileStore, media: Mapping[str, Any]) -> dict[str, Any]:
    """Plain data of a media descriptor; file-backed kinds carry size, mime, sha256, attributes, thumbs."""
    kind = media["kind"]
    if kind == "photo":
        photo = world.photo(media["photo_id"])
        largest = max((s for s in photo.sizes if downloadable(s)), key=lambda s: s["size"])
        return {
            "kind": "photo",
            "size": largest["size"],
            "w": largest["w"],
            "h": largest["h"],
            "sha256": files.sha256(largest["file_id"]),
            "spoiler": bool(media.get("spoiler")),
            "sizes": [{k: v for k, v in s.items() if k not in ("file_id", "stripped")} for s in photo.sizes],
        }
    if "document_id" in media:
        doc = world.document(media["document_id"])
        return {
            "kind": kind,
            "size": doc.size,
            "mime": doc.mime,
            "sha256": files.sha256(doc.file_id),
            "attributes": doc.attributes,
            "spoiler": bool(media.get("spoiler")),
            "thumbs": [
                {**{k: v for k, v in t.items() if k != "file_id"}, "sha256": files.sha256(t["file_id"])}
                for t in doc.thumbs
            ],
        }
    return {k: v for k, v in media.items() if k not in ("poll_id", "webpage_id")}
