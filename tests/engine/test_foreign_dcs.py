"""Streaming reupload of files that live on other data centres than the account's (DC 2).

The sandbox runs DCs 1-5, serves each file only from its own DC (FILE_MIGRATE_X elsewhere) and counts
``auth.exportAuthorization`` per account and target DC; copies are judged from the target channel by
the SHA-256 of what arrived.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from telethon.tl import functions

from bench.transfer import ACCOUNT, TARGET, world
from telepi.checkpoint import open_store
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.engine.transfer import TransferOptions, Transfers
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import assert_clone_equal
from tests.engine.test_transfer import Cloner, assert_copied, document, source_items, video

MiB = 1024 * 1024
OPTIONS = TransferOptions(retry_delay=0.05)


def on(dc: int, spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "dc": dc}


async def copy_all(cloner: Cloner, transfers: Transfers, messages: list[Any] | None = None) -> None:
    for message in messages if messages is not None else cloner.messages:
        media = await asyncio.wait_for(transfers.reupload(message, refresh=cloner.refresh_for(message)), 60)
        await cloner.send(message, media)


async def test_files_on_every_dc_arrive_with_one_export_per_foreign_dc_reused_across_reconnects() -> None:
    specs = [on(dc, document(3 * MiB + dc, f"doc{dc}")) for dc in (1, 2, 3, 4, 5)]
    specs.append(on(4, video(2 * MiB, "clip")))  # with a thumbnail, read from DC 4 too
    async with Sandbox(world(specs)) as sb:
        assert {m["media"]["kind"] for m in source_items(sb)} == {"document", "video"}
        cloner = await Cloner.login(sb)
        assert sorted(m.media.document.dc_id for m in cloner.messages) == [1, 2, 3, 4, 4, 5]
        async with Transfers(cloner.client, OPTIONS) as transfers:
            await copy_all(cloner, transfers)
            assert transfers.open_connections == 5 * OPTIONS.download_connections + OPTIONS.upload_connections
            assert_copied(sb, count=6)
            assert sb.exports(ACCOUNT) == {1: 1, 3: 1, 4: 1, 5: 1}

            # Every connection to the foreign DCs cut: the senders reconnect with the key they have.
            dropped = sum(sb.dc(dc).drop_connections() for dc in (1, 3, 4, 5))
            assert dropped == 4 * OPTIONS.download_connections
            await copy_all(cloner, transfers)
            assert_copied(sb, count=6)

        # New connections of the same process (a new Transfers, as after a restart of the worker).
        async with Transfers(cloner.client, OPTIONS) as transfers:
            await copy_all(cloner, transfers, cloner.messages[-2:])
        assert_copied(sb, count=2)
        assert sb.exports(ACCOUNT) == {1: 1, 3: 1, 4: 1, 5: 1}
        copies = [m["media"] for m in sb.messages(TARGET) if m["media"]]
        assert len(copies) == 14 and all(c["size"] > 0 for c in copies)


async def test_a_file_moved_to_another_dc_is_followed_there() -> None:
    async with Sandbox(world([on(4, video(2 * MiB, "moved"))])) as sb:
        cloner = await Cloner.login(sb)
        [message] = cloner.messages
        assert message.media.document.dc_id == 4
        sb.world.move_file(message.media.document.id, 3)  # the client still says DC 4: FILE_MIGRATE_3
        migrates = sb.faults.inject_error(functions.upload.GetFileRequest, "NEVER", rate=0.0)
        async with Transfers(cloner.client, OPTIONS) as transfers:
            await copy_all(cloner, transfers)
        assert_copied(sb)
        assert migrates.seen >= 3  # the first part and the thumbnail met FILE_MIGRATE_3, then DC 3 served
        assert sb.exports(ACCOUNT) == {4: 1, 3: 1}


async def test_export_errors_and_flood_waits_are_transient() -> None:
    async with Sandbox(world([on(5, document(MiB, "later"))])) as sb:
        cloner = await Cloner.login(sb)
        injected = [
            sb.faults.inject_error(functions.auth.ExportAuthorizationRequest, "INTERNAL", 500, nth=1),
            sb.faults.inject_error(functions.auth.ExportAuthorizationRequest, "FLOOD_WAIT_1", 420, nth=2),
            sb.faults.inject_error(functions.auth.ImportAuthorizationRequest, "AUTH_BYTES_INVALID", 400, nth=1),
        ]
        async with Transfers(cloner.client, OPTIONS) as transfers:
            await copy_all(cloner, transfers)
        assert_copied(sb)
        assert [rule.fired for rule in injected] == [1, 1, 1]
        # Refused exports were not executed; the one whose import failed and the one that worked were.
        assert sb.exports(ACCOUNT) == {5: 2}


async def test_a_dc_that_forgot_the_authorization_is_authorized_again() -> None:
    async with Sandbox(world([on(3, document(MiB, "first")), on(3, document(MiB, "second"))])) as sb:
        cloner = await Cloner.login(sb)
        async with Transfers(cloner.client, OPTIONS) as transfers:
            await copy_all(cloner, transfers, cloner.messages[:1])
            assert sb.exports(ACCOUNT) == {3: 1}
            account = sb.account(ACCOUNT).id
            store = sb.dc(3).store
            for key_id in store.keys_of(account):
                store.bind(key_id, None)  # logged out on DC 3 only (e.g. the key's session was terminated)
            await copy_all(cloner, transfers, cloner.messages[1:])
        assert_copied(sb, count=2)
        assert sb.exports(ACCOUNT) == {3: 2}


async def test_a_file_redirected_to_a_cdn_is_read_there_decrypted_and_checked() -> None:
    async with Sandbox(world([on(4, {**document(3 * MiB + 777, "popular"), "cdn": True})])) as sb:
        cloner = await Cloner.login(sb)
        async with Transfers(cloner.client, OPTIONS) as transfers:
            await copy_all(cloner, transfers)
        assert_copied(sb)
        cdn = sb.env.cdn
        assert cdn is not None and cdn.reuploads == 1  # one reupload for the parts in flight
        assert 1 <= cdn.redirects <= OPTIONS.downloads_in_flight
        assert sb.exports(ACCOUNT) == {4: 1}  # the redirect came from DC 4; the CDN needs no authorization


async def test_an_account_whose_home_is_not_dc_2_clones_from_its_own_dc(tmp_path: Path) -> None:
    """Bob's home is DC 4: his login moved there (PHONE_MIGRATE_4) and his session keeps DC 4's key, which
    DC 2 (TG_DC, where a login starts) does not know. ``telepi run`` works on from DC 4."""
    chats = [
        {
            "name": "source",
            "kind": "channel",
            "owner": "alice",
            "members": ["bob"],
            "messages": [{"text": f"post {i}"} for i in range(6)],
        },
        {"name": "target", "kind": "channel", "owner": "bob"},
    ]
    accounts = [
        {"name": "alice", "phone": "+15550004001", "code": "12345"},
        {"name": "bob", "phone": "+15550004002", "code": "12345", "dc": 4},
    ]
    async with Sandbox(world={"accounts": accounts, "chats": chats}, state_dir=tmp_path / "state") as sb:
        directory = await sb.session_dir(
            tmp_path / "bob",
            "bob",
            SOURCE_CHAT=str(sb.chat("source").id),
            TARGET_CHAT=str(sb.chat("target").id),
            LIVE="false",
            SEND_INTERVAL="0",
            READ_INTERVAL="0",
        )
        settings = load_settings(directory, {})
        store = open_store(settings)
        try:
            await asyncio.wait_for(run_session(settings, store, asyncio.Event()), 60)
        finally:
            store.close()
        assert_clone_equal(sb, "source", "target")
