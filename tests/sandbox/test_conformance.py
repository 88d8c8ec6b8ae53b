"""An independent client family against the local Telegram: kurigram (a Pyrogram fork, TL layer 229).

The sandbox reuses Telethon's TL classes; a client written from the spec by other people shows whether
it speaks MTProto as Telegram does rather than as Telethon expects: 256-byte auth keys, salts, msg_ids,
containers, SRP, updates. The client's code is unmodified; only where it connects is changed (below).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pyrogram import Client, filters, raw
from pyrogram import client as pyrogram_client
from pyrogram.crypto import rsa as pyrogram_rsa
from pyrogram.errors import BadRequest, Forbidden
from pyrogram.handlers import MessageHandler
from pyrogram.raw.core import TLObject
from pyrogram.session import auth as pyrogram_auth
from pyrogram.storage import SQLiteStorage
from telethon.network import authenticator as telethon_authenticator

from telepi.sandbox.sandbox import API_HASH, API_ID, Sandbox
from tests.sandbox import dhkit
from tests.sandbox.worldkit import base_world

T = TypeVar("T")
TIMEOUT = 30.0
PASSWORDS = {"bob": "correct horse"}  # worldkit's 2FA account


async def wait(awaitable: Awaitable[T], timeout: float = TIMEOUT) -> T:
    return await asyncio.wait_for(awaitable, timeout)


class SandboxStorage(SQLiteStorage):
    """test-only: point an unmodified client at the local Telegram. Pyrogram writes Telegram's DC 2
    address (149.154.167.51:443) into a new session; this storage keeps the sandbox's instead. Later
    DC addresses come from the sandbox's help.getConfig, as on Telegram."""

    def __init__(self, name: str, address: tuple[str, int]) -> None:
        super().__init__(name, workdir=None, in_memory=True)  # type: ignore[arg-type]
        self._address = address

    async def server_address(self, value: Any = object) -> Any:
        return await super().server_address(value if value is object else self._address[0])

    async def port(self, value: Any = object) -> Any:
        return await super().port(value if value is object else self._address[1])


Start = Callable[..., Awaitable[Client]]


async def _drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


@pytest.fixture
async def sb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Sandbox]:
    monkeypatch.chdir(tmp_path)  # Pyrogram appends errors it does not know to ./unknown_errors.txt
    async with Sandbox(base_world()) as sandbox:
        key = sandbox.server.server_key
        # test-only: point an unmodified client at the local Telegram (its server keys are a fixed dict).
        monkeypatch.setitem(
            pyrogram_rsa.server_public_keys, key.fingerprint, pyrogram_rsa.PublicKey(key.private.n, key.private.e)
        )
        yield sandbox


@pytest.fixture
async def start(sb: Sandbox) -> AsyncIterator[Start]:
    clients: list[Client] = []

    async def make(account: str, **kwargs: Any) -> Client:
        user = sb.account(account)
        client = Client(
            f"kuri-{account}-{len(clients)}",
            api_id=API_ID,
            api_hash=API_HASH,
            phone_number=user.phone,
            phone_code=user.code,
            password=PASSWORDS.get(account),
            storage_engine=SandboxStorage(account, (sb.host, sb.port)),
            **kwargs,
        )
        clients.append(client)
        await wait(client.start())
        # Like a real first run: the dialogs give the chats' access hashes (a bare id is CHANNEL_INVALID).
        await wait(_drain(client.get_dialogs()))
        return client

    try:
        yield make
    finally:
        for client in clients:
            if client.is_connected:
                await wait(client.stop())


async def test_login_without_and_with_2fa(sb: Sandbox, start: Start) -> None:
    alice = await start("alice")
    bob = await start("bob")  # code, then the SRP password check
    assert (await wait(alice.get_me())).id == sb.account("alice").id
    assert (await wait(bob.get_me())).id == sb.account("bob").id
    assert len(await alice.storage.auth_key()) == 256


async def test_forum_history_and_download(sb: Sandbox, start: Start) -> None:
    bob = await start("bob")
    forum = sb.chat("forum")
    chat_id = forum.id
    topics = [t async for t in bob.get_forum_topics(chat_id)]
    assert {t.title for t in topics} == {t["title"] for t in sb.topics("forum")}

    expected = sb.messages("forum")
    history = [m async for m in bob.get_chat_history(chat_id)]
    assert [m.id for m in reversed(history)] == [m["id"] for m in expected]
    assert [m.text or m.caption for m in reversed(history)] == [m["text"] or None for m in expected]

    talk = next(t for t in sb.topics("forum") if t["title"] == "Talk")
    in_topic = [m async for m in bob.get_discussion_replies(chat_id, talk["id"])]
    assert sorted(m.id for m in in_topic) == [m["id"] for m in expected if m["topic"] == talk["id"]]

    video = next(m for m in history if m.video is not None)
    data = await wait(bob.download_media(video, in_memory=True))
    assert isinstance(data, io.BytesIO)
    source = next(m for m in expected if m["id"] == video.id)["media"]
    assert hashlib.sha256(data.getvalue()).hexdigest() == source["sha256"]


async def test_send_forward_and_live_updates(sb: Sandbox, start: Start) -> None:
    alice = await start("alice")
    bob = await start("bob")
    forum, chan = sb.chat("forum"), sb.chat("chan")
    forum_id, chan_id = forum.id, chan.id
    news = next(t["id"] for t in sb.topics("forum") if t["title"] == "News")

    seen: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(_client: Client, message: Any) -> None:
        seen.put_nowait(message)

    bob.add_handler(MessageHandler(on_message, filters.chat(forum_id)))
    sent = await wait(alice.send_message(forum_id, "from kurigram", message_thread_id=news))
    last = sb.messages("forum")[-1]
    assert (last["id"], last["text"], last["topic"], last["sender"]) == (sent.id, "from kurigram", news, "alice")
    live = await wait(seen.get())  # pushed to the other member
    assert (live.id, live.text) == (sent.id, "from kurigram")

    posted = await sb.post("forum", "posted in the sandbox", as_account="dave", topic=news)
    live = await wait(seen.get())
    assert (live.id, live.text) == (posted, "posted in the sandbox")

    forwarded = await wait(alice.forward_messages(chan_id, forum_id, [sent.id, posted]))
    copies = sb.messages("chan")[-2:]
    assert [m["id"] for m in copies] == [m.id for m in forwarded]
    assert [m["text"] for m in copies] == ["from kurigram", "posted in the sandbox"]
    assert all(m["fwd"] for m in copies)


class _Unknown(TLObject):  # a constructor id no layer has: b"test"
    ID = 0x74736574

    def write(self, *args: Any) -> bytes:
        return b"test"


async def test_unknown_method_and_unserved_layer_are_refused_as_telegram_does(sb: Sandbox, start: Start) -> None:
    alice = await start("alice")
    with pytest.raises(BadRequest, match="INPUT_METHOD_INVALID_1953719668_"):
        await wait(alice.invoke(_Unknown()))
    with pytest.raises(BadRequest, match="INPUT_LAYER_INVALID"):
        await wait(alice.invoke(raw.functions.InvokeWithLayer(layer=228, query=raw.functions.help.GetConfig())))
    assert (await wait(alice.get_me())).id == sb.account("alice").id  # the session goes on


@pytest.mark.parametrize("zero", ["g_a", "g_b", "auth_key"])
async def test_exchange_with_a_leading_zero_byte(
    sb: Sandbox, start: Start, monkeypatch: pytest.MonkeyPatch, zero: str
) -> None:
    a = dhkit.SERVER_G_A_ZERO(0) if zero == "g_a" else dhkit.plain_server_exponent(0)
    b = dhkit.client_exponent(a, key_zero=zero == "auth_key", g_b_zero=zero == "g_b")
    sb.faults.dh_exponents.append(a)
    # test-only: the client's own DH secret, chosen (its code is unmodified).
    monkeypatch.setattr(pyrogram_auth, "urandom", dhkit.urandom_once(b))
    handshakes = sb.server.handshakes
    alice = await start("alice")
    assert await alice.storage.auth_key() == dhkit.auth_key(a, b)
    assert sb.server.handshakes == handshakes + 1  # the first exchange held: no retry
    assert (await wait(alice.get_me())).id == sb.account("alice").id


@pytest.mark.parametrize("zero", ["g_a", "g_b", "auth_key"])
async def test_telethon_through_the_same_exchanges(sb: Sandbox, monkeypatch: pytest.MonkeyPatch, zero: str) -> None:
    a = dhkit.SERVER_G_A_ZERO(0) if zero == "g_a" else dhkit.plain_server_exponent(0)
    b = dhkit.client_exponent(a, key_zero=zero == "auth_key", g_b_zero=zero == "g_b")
    sb.faults.dh_exponents.append(a)
    # test-only: the client's own DH secret, chosen once (its code is unmodified).
    monkeypatch.setattr(telethon_authenticator, "os", dhkit.os_with_urandom(dhkit.urandom_once(b)))
    handshakes = sb.server.handshakes
    client = await wait(sb.client("alice"))
    assert (await wait(client.get_me())).id == sb.account("alice").id
    if zero == "auth_key":
        # Telethon 1.45 derives a 255-byte key, fails dh_gen_ok's hash and starts again (as on Telegram).
        assert sb.server.handshakes == handshakes + 2
        assert client.session.auth_key.key != dhkit.auth_key(a, b)
    else:
        assert sb.server.handshakes == handshakes + 1
        assert client.session.auth_key.key == dhkit.auth_key(a, b)


class _SkewedTime:
    """test-only: the client machine's clock, ``skew`` seconds off (everything else is the real ``time``)."""

    def __init__(self, skew: float) -> None:
        self._skew = skew

    def time(self) -> float:
        return time.time() + self._skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


async def test_a_client_whose_clock_is_minutes_behind_works(
    sb: Sandbox, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Telegram answers bad_msg_notification 16 (core.telegram.org/mtproto/service_messages_about_messages)
    # and the client takes Telegram's time from it. (A clock minutes *ahead* is not tested: kurigram keeps
    # its msg_ids increasing within a session, so after the correction they stay "too high" (17) until
    # its clock catches up; the server must refuse them, msg_ids more than 30 s ahead.)
    monkeypatch.setattr(pyrogram_client, "time", _SkewedTime(-600))
    alice = await start("alice")
    sent = await wait(alice.send_message(sb.chat("forum").id, "on a wrong clock"))
    assert (sb.messages("forum")[-1]["id"], sb.messages("forum")[-1]["text"]) == (sent.id, "on a wrong clock")
    assert abs(alice.server_time - time.time()) < 5  # it took Telegram's time


async def test_rights_by_role_reach_the_client_as_telegram_errors(sb: Sandbox, start: Start) -> None:
    bob = await start("bob")  # a plain member of the channel
    chan = sb.chat("chan").id
    with pytest.raises(Forbidden, match="CHAT_WRITE_FORBIDDEN"):
        await wait(bob.send_message(chan, "not an admin"))
    with pytest.raises(Forbidden, match="CHAT_ADMIN_REQUIRED"):
        await wait(bob.pin_chat_message(chan, sb.messages("chan")[0]["id"]))
    carol = await start("carol")  # an admin who may post, not pin
    sent = await wait(carol.send_message(chan, "admin post"))
    assert sb.messages("chan")[-1]["id"] == sent.id
    forum = sb.chat("forum").id
    for member in (bob, carol):  # a supergroup member; an admin without pin_messages
        with pytest.raises(Forbidden, match="CHAT_ADMIN_REQUIRED"):
            await wait(member.pin_chat_message(forum, sb.messages("forum")[0]["id"]))
    alice = await start("alice")  # the creator
    await wait(alice.pin_chat_message(forum, sb.messages("forum")[0]["id"]))
    assert sb.messages("forum")[0]["pinned"]
