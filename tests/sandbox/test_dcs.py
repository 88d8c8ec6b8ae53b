"""Several data centres: each its own port and auth keys, files served by their own DC, logins on the
account's home DC, exported authorizations valid once. The real Telethon client on both ends."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from telethon import TelegramClient, errors
from telethon.errors.common import AuthKeyNotFound
from telethon.network.mtprotosender import MTProtoSender
from telethon.sessions import MemorySession
from telethon.tl import functions, types
from telethon.tl.alltlobjects import LAYER

from telepi.sandbox.dcs.cdn import CDN_DC, ctr
from telepi.sandbox.limits.faults import RateRule
from telepi.sandbox.sandbox import API_HASH, API_ID, Sandbox
from telepi.sandbox.world.files import generated_bytes, generated_sha256

WORLD: dict[str, Any] = {
    "accounts": [
        {"name": "alice", "phone": "+15550000001", "code": "11111"},
        {"name": "dora", "phone": "+15550000004", "code": "44444", "dc": 4},
    ],
    "chats": [
        {
            "name": "source",
            "username": "source",
            "kind": "channel",
            "owner": "alice",
            "admins": {"dora": ["post_messages"]},
            "messages": [
                {"text": "on four", "media": {"kind": "document", "size": 300_000, "seed": "four", "dc": 4}},
                {"text": "on two", "media": {"kind": "document", "size": 5_000, "seed": "two", "dc": 2}},
                {"text": "photo", "media": {"kind": "photo", "size": 9_000, "seed": "p", "dc": 3}},
            ],
        }
    ],
}


@pytest.fixture
async def sb(tmp_path: Any) -> Any:
    async with Sandbox(WORLD, state_dir=tmp_path / "state") as box:
        yield box


async def raw_sender(client: TelegramClient, sb: Sandbox, dc_id: int, auth_key: Any = None) -> Any:
    """A new MTProto connection (a new auth key unless given) to one DC of the sandbox."""
    sender = MTProtoSender(auth_key, loggers=client._log)
    await sender.connect(client._connection(sb.host, sb.dc(dc_id).port, dc_id, loggers=client._log))
    return sender


async def first(client: TelegramClient, sender: Any, query: Any) -> Any:
    init = client._init_request
    init.query = query
    return await sender.send(functions.InvokeWithLayerRequest(LAYER, init))


async def media_of(client: TelegramClient, text: str) -> Any:
    messages = await client.get_messages("source", limit=10)
    return next(m for m in messages if m.message == text).media


async def test_get_config_lists_each_dc_at_its_own_port(sb: Sandbox) -> None:
    client = await sb.client("alice")
    config = await client(functions.help.GetConfigRequest())
    listed = {o.id: o.port for o in config.dc_options}
    assert listed == {dc: server.port for dc, server in sb.servers.items()}
    assert len(set(listed.values())) == 6
    assert [o.id for o in config.dc_options if o.cdn] == [CDN_DC]
    assert config.this_dc == 2


async def test_files_carry_their_dc_and_the_wrong_dc_answers_file_migrate(sb: Sandbox) -> None:
    client = await sb.client("alice")
    doc = (await media_of(client, "on four")).document
    assert doc.dc_id == 4
    assert (await media_of(client, "photo")).photo.dc_id == 3
    location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, "")
    with pytest.raises(errors.FileMigrateError) as caught:
        await client(functions.upload.GetFileRequest(location, 0, 4096))
    assert caught.value.new_dc == 4
    home = (await media_of(client, "on two")).document
    assert home.dc_id == 2
    assert len(await client.download_media(home, file=bytes)) == 5_000


async def test_download_from_a_foreign_dc_exports_and_imports(sb: Sandbox) -> None:
    client = await sb.client("alice")
    data = await client.download_media(await media_of(client, "on four"), file=bytes)
    assert hashlib.sha256(data).hexdigest() == generated_sha256("four", 300_000)
    assert sb.exports("alice") == {4: 1}  # Telethon's borrowed sender: one export, reused
    assert sb.env.dcs.imports[(sb.account("alice").id, 4)] == 1


async def test_keys_are_per_dc(sb: Sandbox) -> None:
    client = await sb.client("alice")
    home_key = client.session.auth_key
    # A key made on DC 4 is not logged in there: AUTH_KEY_UNREGISTERED until it imports an authorization.
    fresh = await raw_sender(client, sb, 4)
    try:
        with pytest.raises(errors.AuthKeyUnregisteredError):
            await first(client, fresh, functions.updates.GetStateRequest())
    finally:
        await fresh.disconnect()
    # DC 2's key is unknown to DC 4: the transport's -404, which Telethon does not recover from.
    session = MemorySession()
    session.set_dc(4, sb.host, sb.dc(4).port)
    session.auth_key = home_key
    other = TelegramClient(session, API_ID, API_HASH)
    try:
        with pytest.raises(AuthKeyNotFound):
            await other.connect()
    finally:
        await other.disconnect()


async def test_exported_bytes_are_valid_once_for_their_dc(sb: Sandbox) -> None:
    client = await sb.client("alice")
    with pytest.raises(errors.DcIdInvalidError):
        await client(functions.auth.ExportAuthorizationRequest(2))
    exported = await client(functions.auth.ExportAuthorizationRequest(4))
    on_three = await raw_sender(client, sb, 3)
    on_four = await raw_sender(client, sb, 4)
    again = await raw_sender(client, sb, 4)
    try:
        importing = functions.auth.ImportAuthorizationRequest(id=exported.id, bytes=exported.bytes)
        with pytest.raises(errors.AuthBytesInvalidError):
            await first(client, on_three, importing)  # exported for DC 4
        authorization = await first(client, on_four, importing)
        assert authorization.user.id == sb.account("alice").id
        with pytest.raises(errors.AuthBytesInvalidError):
            await first(client, again, importing)  # used already
        # The imported key moves files on DC 4 and nothing else: the account lives on DC 2.
        doc = (await media_of(client, "on four")).document
        location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, "")
        part = await on_four.send(functions.upload.GetFileRequest(location, 0, 4096))
        assert len(part.bytes) == 4096
        with pytest.raises(errors.UserMigrateError) as caught:
            await on_four.send(functions.messages.GetDialogsRequest(None, 0, types.InputPeerEmpty(), 10, 0))
        assert caught.value.new_dc == 2
    finally:
        for sender in (on_three, on_four, again):
            await sender.disconnect()


async def test_exports_are_flood_limited_by_a_rule_tests_can_tighten(sb: Sandbox) -> None:
    client = await sb.client("alice", flood_sleep_threshold=0)
    sb.faults.add_rate_rule(RateRule(limit=1, window=60, method="ExportAuthorizationRequest"))
    await client(functions.auth.ExportAuthorizationRequest(3))
    with pytest.raises(errors.FloodWaitError):
        await client(functions.auth.ExportAuthorizationRequest(4))


async def test_an_account_logs_in_on_its_home_dc(sb: Sandbox) -> None:
    # The client starts on DC 2; sendCode answers PHONE_MIGRATE_4 and Telethon moves there.
    client = await sb.client("dora")
    assert client.session.dc_id == 4
    assert client.session.port == sb.dc(4).port
    me = await client.get_me()
    assert me.phone == "15550000004"
    # Her uploads land on her home DC.
    sent = await client.send_file("source", b"x" * 10_000, force_document=True)
    assert sent.media.document.dc_id == 4
    alice = await sb.client("alice")
    data = await alice.download_media(await media_of(alice, ""), file=bytes)
    assert data == b"x" * 10_000


async def test_parts_belong_to_the_dc_they_were_saved_on(sb: Sandbox) -> None:
    client = await sb.client("alice")
    exported = await client(functions.auth.ExportAuthorizationRequest(4))
    on_four = await raw_sender(client, sb, 4)
    try:
        await first(client, on_four, functions.auth.ImportAuthorizationRequest(id=exported.id, bytes=exported.bytes))
        assert await on_four.send(functions.upload.SaveFilePartRequest(77, 0, b"y" * 1024))
    finally:
        await on_four.disconnect()
    uploaded = types.InputMediaUploadedDocument(
        file=types.InputFile(77, 1, "y.bin", ""), mime_type="application/octet-stream", attributes=[]
    )
    with pytest.raises(errors.RPCError, match="File part 0 missing"):  # FILE_PART_0_MISSING
        await client(functions.messages.SendMediaRequest("source", uploaded, "", random_id=5))


async def test_a_popular_file_is_redirected_to_the_cdn_encrypted_and_hashed(tmp_path: Any) -> None:
    world = {**WORLD, "chats": [dict(WORLD["chats"][0])]}
    world["chats"][0]["messages"] = [
        {"text": "hot", "media": {"kind": "document", "size": 300_000, "seed": "hot", "dc": 4, "cdn": True}}
    ]
    async with Sandbox(world, state_dir=tmp_path / "cdn") as sb:
        client = await sb.client("alice")
        doc = (await media_of(client, "hot")).document
        location = types.InputDocumentFileLocation(doc.id, doc.access_hash, doc.file_reference, "")
        on_four = await client._borrow_exported_sender(4)
        redirect = await on_four.send(functions.upload.GetFileRequest(location, 0, 128 * 1024))
        assert isinstance(redirect, types.upload.FileCdnRedirect) and redirect.dc_id == CDN_DC
        assert redirect.file_hashes[0].offset == 0 and redirect.file_hashes[0].limit == 128 * 1024
        cdn = await raw_sender(client, sb, CDN_DC)  # a fresh key: the CDN needs no authorization
        try:
            get = functions.upload.GetCdnFileRequest(redirect.file_token, 0, 128 * 1024)
            needed = await first(client, cdn, get)
            assert isinstance(needed, types.upload.CdnFileReuploadNeeded)  # not on the CDN yet
            hashes = await client(functions.upload.ReuploadCdnFileRequest(redirect.file_token, needed.request_token))
            assert hashes[0].hash == redirect.file_hashes[0].hash
            part = await cdn.send(get)
            plain = ctr(redirect.encryption_key, redirect.encryption_iv, 0, part.bytes)
            assert hashlib.sha256(plain).digest() == redirect.file_hashes[0].hash
            assert plain == generated_bytes("hot", 300_000, 0, 128 * 1024)
            assert part.bytes != plain
        finally:
            await cdn.disconnect()
            await client._return_exported_sender(on_four)
        with pytest.raises(errors.RPCError, match="FILE_TOKEN"):  # only the CDN DC serves tokens
            await client(functions.upload.GetCdnFileRequest(redirect.file_token, 0, 4096))
