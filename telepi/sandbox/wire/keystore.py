"""What the sandbox server must remember across restarts, in ``<state_dir>/mtproto.sqlite3``.

The RSA private key, a secret that derives server salts, every auth key (https://core.telegram.org/mtproto/auth_key)
with the account it is logged in as and the layer the client announced. Telethon session files hold only the auth key,
so keeping these is what lets an existing ``.session`` reconnect to a restarted sandbox. Every write
is one autocommitted statement, so the file is consistent whatever line the process dies on.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telepi.sandbox.private import private_dir, private_file
from telepi.sandbox.wire.handshake import ServerKey
from telepi.sandbox.wire.protocol import auth_key_id

FILENAME = "mtproto.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS auth_keys (
    key_id INTEGER PRIMARY KEY,
    auth_key BLOB NOT NULL,
    user_id INTEGER,
    layer INTEGER
);
"""


@dataclass
class AuthKeyRecord:
    key_id: int
    key: bytes
    user_id: int | None = None
    layer: int | None = None


class KeyStore:
    """The server's persistent state. Reads are served from memory; writes go straight to disk."""

    def __init__(self, state_dir: Path) -> None:
        private_dir(state_dir)
        self._db = sqlite3.connect(private_file(state_dir / FILENAME), isolation_level=None)
        self.closed = False
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._keys: dict[int, AuthKeyRecord] = {
            key_id: AuthKeyRecord(key_id, bytes(key), user_id, layer)
            for key_id, key, user_id, layer in self._db.execute(
                "SELECT key_id, auth_key, user_id, layer FROM auth_keys"
            )
        }

    def close(self) -> None:
        self._db.close()
        self.closed = True

    def _meta(self, name: str, create: Callable[[], bytes]) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return bytes(row[0])
        value = create()
        # INSERT OR IGNORE + re-read: a concurrent creator wins consistently.
        self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", (name, value))
        return bytes(self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0])

    def server_key(self, default: ServerKey | None = None) -> ServerKey:
        """The stored RSA key; created (from ``default`` or freshly generated, ~2 s) on first use."""
        pem = self._meta("rsa_private_pem", lambda: (default or ServerKey.generate()).private_pem())
        return ServerKey.from_pem(pem)

    def salt_secret(self) -> bytes:
        return self._meta("salt_secret", lambda: os.urandom(32))

    def get(self, key_id: int) -> AuthKeyRecord | None:
        return self._keys.get(key_id)

    def add(self, key: bytes) -> AuthKeyRecord:
        record = AuthKeyRecord(auth_key_id(key), key)
        self._db.execute(
            "INSERT OR REPLACE INTO auth_keys (key_id, auth_key, user_id, layer) VALUES (?, ?, NULL, NULL)",
            (record.key_id, key),
        )
        self._keys[record.key_id] = record
        return record

    def bind(self, key_id: int, user_id: int | None) -> None:
        record = self._keys[key_id]
        if record.user_id != user_id:
            self._db.execute("UPDATE auth_keys SET user_id = ? WHERE key_id = ?", (user_id, key_id))
            record.user_id = user_id

    def set_layer(self, key_id: int, layer: int) -> None:
        record = self._keys[key_id]
        if record.layer != layer:
            self._db.execute("UPDATE auth_keys SET layer = ? WHERE key_id = ?", (layer, key_id))
            record.layer = layer

    def delete(self, key_id: int) -> None:
        self._db.execute("DELETE FROM auth_keys WHERE key_id = ?", (key_id,))
        self._keys.pop(key_id, None)

    def keys_of(self, user_id: int) -> list[int]:
        return [r.key_id for r in self._keys.values() if r.user_id == user_id]

    def __len__(self) -> int:
        return len(self._keys)
