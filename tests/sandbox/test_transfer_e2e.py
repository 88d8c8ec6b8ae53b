"""The unmodified Telethon client moves files through the sandbox server over real MTProto.

The server runs in a subprocess (``python -m tests.sandbox.test_transfer_e2e serve <dir>``) with the
file RPCs plus a test-only minimum (bot login, updates state, ``messages.uploadMedia`` that turns an
uploaded file into a document), so its memory can be measured on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telethon import TelegramClient, errors
from telethon.crypto import rsa
from telethon.sessions import StringSession
from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.centres import upload_owner
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError
from telepi.sandbox.rpc.upload import build_registry
from telepi.sandbox.wire.config_tl import make_config
from telepi.sandbox.world.files import FileStore, MiB, generated_sha256
from tests.cli import REPO

USER_ID = 1001
ACCESS_HASH = 4242
FILE_REF = b"e2e-ref"
GEN_SEED = "e2e-2gib"
GEN_SIZE = 2 * 1024 * MiB


# ---- server side (runs in the subprocess) ---------------------------------------------------


class DocumentLocator:
    """Documents are named by their FileStore id; one fixed file reference is valid."""

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def locate(self, ctx: RpcContext, location: TLObject) -> int:
        if not isinstance(location, types.InputDocumentFileLocation) or location.access_hash != ACCESS_HASH:
            raise RpcError(400, "LOCATION_INVALID")
        if not self.store.exists(location.id):
            raise RpcError(400, "FILE_ID_INVALID")
        if location.file_reference != FILE_REF:
            raise RpcError(400, "FILE_REFERENCE_EXPIRED")
        return int(location.id)


def me() -> types.User:
    return types.User(id=USER_ID, is_self=True, bot=True, access_hash=ACCESS_HASH, first_name="e2e", bot_info_version=1)


def document(store: FileStore, file_id: int) -> types.Document:
    return types.Document(
        id=file_id,
        access_hash=ACCESS_HASH,
        file_reference=FILE_REF,
        date=dt.datetime.now(dt.UTC),
        mime_type="application/octet-stream",
        size=store.size(file_id),
        dc_id=2,
        attributes=[types.DocumentAttributeFilename(f"{file_id}.bin")],
    )


def e2e_registry(store: FileStore, port: list[int]) -> Registry:
    registry = build_registry(store, DocumentLocator(store), lambda _user: 4000)

    @registry.register(functions.help.GetConfigRequest)
    async def get_config(ctx: RpcContext, request: Any) -> TLObject:
        return make_config(2, "127.0.0.1", port[0])

    @registry.register(functions.auth.ImportBotAuthorizationRequest)
    async def sign_in(ctx: RpcContext, request: Any) -> TLObject:
        ctx.bind_user(USER_ID)
        return types.auth.Authorization(user=me())

    @registry.register(functions.users.GetUsersRequest)
    async def get_users(ctx: RpcContext, request: Any) -> list[TLObject]:
        ctx.require_user()
        return [me()]

    @registry.register(functions.updates.GetStateRequest)
    async def get_state(ctx: RpcContext, request: Any) -> TLObject:
        return types.updates.State(pts=1, qts=0, date=dt.datetime.now(dt.UTC), seq=0, unread_count=0)

    @registry.register(functions.updates.GetDifferenceRequest)
    async def get_difference(ctx: RpcContext, request: Any) -> TLObject:
        return types.updates.DifferenceEmpty(date=dt.datetime.now(dt.UTC), seq=0)

    @registry.register(functions.messages.UploadMediaRequest)
    async def upload_media(ctx: RpcContext, request: Any) -> TLObject:
        file_id = store.finish_upload(upload_owner(ctx.require_user(), ctx.dc_id), request.media.file)
        return types.MessageMediaDocument(document=document(store, file_id))

    return registry


async def serve(state_dir: Path) -> None:
    from telepi.sandbox.wire.server import SandboxServer

    store = FileStore(state_dir)
    generated = store.add_generated(GEN_SEED, GEN_SIZE)
    port = [0]
    server = SandboxServer(e2e_registry(store, port), state_dir)
    port[0] = await server.start()
    print(json.dumps({"port": port[0], "pem": server.public_key_pem, "generated": generated}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin
    await server.stop()
    store.close()


# ---- client side ----------------------------------------------------------------------------


class Server:
    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc = proc
        self.port: int = info["port"]
        self.generated: int = info["generated"]

    def status(self, field: str) -> int:
        """A memory figure of the server process from /proc, in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    state_dir = tmp_path_factory.mktemp("e2e-server")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sandbox.test_transfer_e2e", "serve", str(state_dir)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the sandbox server did not start"
        info = json.loads(line)
        rsa.add_key(info["pem"], old=False)
        yield Server(proc, info)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def logged_in_client(server: Server) -> TelegramClient:
    session = StringSession()
    session.set_dc(2, "127.0.0.1", server.port)
    client = TelegramClient(session, api_id=1, api_hash="e2e", receive_updates=False)
    await client.connect()
    await client.sign_in(bot_token=f"{USER_ID}:e2e")
    assert await client.is_user_authorized()
    return client


class HashSink:
    """A write-only file that keeps only a running SHA-256 (so the client side stays flat too)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


@pytest.mark.parametrize("size", [3 * MiB + 17, 50 * MiB + 5])  # saveFilePart + MD5, saveBigFilePart
async def test_upload_then_download_is_byte_identical(server: Server, tmp_path: Path, size: int) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(size))
    client = await logged_in_client(server)
    try:
        uploaded = await client.upload_file(source)
        assert isinstance(uploaded, types.InputFileBig) == (size > 10 * MiB)
        media = await client(
            functions.messages.UploadMediaRequest(
                peer=types.InputPeerSelf(),
                media=types.InputMediaUploadedDocument(
                    file=uploaded, mime_type="application/octet-stream", attributes=[]
                ),
            )
        )
        assert isinstance(media, types.MessageMediaDocument)
        assert media.document.size == size
        target = tmp_path / "target.bin"
        assert await client.download_media(media, file=target) == str(target)
    finally:
        await client.disconnect()
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


@pytest.mark.slow
async def test_download_of_a_2_gib_generated_file_keeps_server_memory_flat(server: Server) -> None:
    client = await logged_in_client(server)
    location = types.InputDocumentFileLocation(
        id=server.generated, access_hash=ACCESS_HASH, file_reference=FILE_REF, thumb_size=""
    )
    sink = HashSink()
    samples: list[int] = []

    async def sample_rss() -> None:
        while True:
            samples.append(server.status("VmRSS"))
            await asyncio.sleep(0.1)

    baseline = server.status("VmRSS")
    with contextlib.suppress(OSError):  # reset the peak (VmHWM) to now; the samples cover it otherwise
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
    sampler = asyncio.create_task(sample_rss())
    started = time.perf_counter()
    try:
        await client.download_file(location, sink, file_size=GEN_SIZE)
    finally:
        sampler.cancel()
        await client.disconnect()
    elapsed = time.perf_counter() - started
    peak = max(server.status("VmHWM"), *samples)
    print(
        f"\n2 GiB download: {elapsed:.1f} s ({GEN_SIZE / MiB / elapsed:.0f} MiB/s); server RSS "
        f"{baseline / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB (+{(peak - baseline) / MiB:.1f} MiB)"
    )
    assert sink.size == GEN_SIZE
    assert peak - baseline < 64 * MiB
    assert sink.digest.hexdigest() == generated_sha256(GEN_SEED, GEN_SIZE)


async def test_download_errors_reach_the_client(server: Server) -> None:
    client = await logged_in_client(server)
    try:
        stale = types.InputDocumentFileLocation(
            id=server.generated, access_hash=ACCESS_HASH, file_reference=b"old", thumb_size=""
        )
        with pytest.raises(errors.FileReferenceExpiredError):
            await client(functions.upload.GetFileRequest(stale, 0, 4096))
        fresh = types.InputDocumentFileLocation(
            id=server.generated, access_hash=ACCESS_HASH, file_reference=FILE_REF, thumb_size=""
        )
        with pytest.raises(errors.LimitInvalidError):
            await client(functions.upload.GetFileRequest(fresh, 4096, MiB))
    finally:
        await client.disconnect()


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    asyncio.run(serve(Path(sys.argv[2])))
