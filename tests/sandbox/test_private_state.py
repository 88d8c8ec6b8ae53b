"""The sandbox's state (its private key, every auth key, the world, uploaded files) is 0600 in 0700
directories whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from telepi.sandbox.sandbox import Sandbox

WORLD = {"accounts": [{"name": "alice", "phone": "+15550003000", "code": "12345"}], "chats": []}


async def test_state_files_and_directories_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
            client = await sb.client("alice")
            await client.send_file("me", b"some bytes", file_name="a.bin")  # an uploaded blob on disk
    finally:
        os.umask(old)
    state = tmp_path / "state"
    found = {path.relative_to(state).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in state.rglob("*")}
    assert "mtproto.sqlite3" in found and "world.sqlite" in found and "files.sqlite" in found, found
    assert any(name.startswith("blobs/") for name in found), found
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name, mode in found.items():
        if name == "server_key.pem":
            continue  # the public key: clients read it
        expected = 0o700 if (state / name).is_dir() else 0o600
        assert mode == expected, f"{name} is {mode:o}"
