"""A CDN data centre, as core.telegram.org/cdn describes Telegram's.

A popular file's DC answers ``upload.getFile`` with ``upload.fileCdnRedirect``: a CDN DC, a file token,
an AES-256-CTR key and IV, and SHA-256 hashes of 128 KiB parts. Telegram sends it although Telethon never
sets ``cdn_supported`` (Telethon#4327, #4485). The CDN DC serves ``upload.getCdnFile`` without an
authorized key: the bytes encrypted with that key, the IV's last 4 bytes replaced by ``offset / 16``
big-endian, or ``upload.cdnFileReuploadNeeded`` while the file is not on the CDN yet (its first request
here); the client then calls ``upload.reuploadCdnFile`` on the file's DC and asks again.
``upload.getCdnFileHashes`` on the file's DC gives the hashes of further parts.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from telethon.tl import types

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.world.files import FileStore

CDN_DC = 203
HASH_PART = 128 * 1024  # core.telegram.org/cdn: hashes cover 128 KB parts
HASHES_PER_ANSWER = 8


class OnCdn(Exception):
    """Raised by a file locator for a file its DC hands to the CDN."""

    def __init__(self, file_id: int) -> None:
        super().__init__(file_id)
        self.file_id = file_id


@dataclass
class _Token:
    file_id: int
    key: bytes
    iv: bytes
    cached: bool = False
    request_tokens: set[bytes] = field(default_factory=set)


def ctr(key: bytes, iv: bytes, offset: int, data: bytes) -> bytes:
    """AES-256-CTR from ``offset`` (a multiple of 16): the IV's last 4 bytes are ``offset / 16``."""
    counter = iv[:12] + struct.pack(">I", offset // 16)
    cipher = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return cipher.update(data) + cipher.finalize()


@dataclass
class Cdn:
    """The CDN's file tokens and the hashes its redirects and answers carry."""

    store: FileStore
    public_key_pem: str = ""
    _tokens: dict[bytes, _Token] = field(default_factory=dict)
    redirects: int = 0
    reuploads: int = 0

    def hashes(self, file_id: int, offset: int) -> list[types.FileHash]:
        size = self.store.size(file_id)
        start = offset - offset % HASH_PART
        out = []
        for part in range(start, min(size, start + HASHES_PER_ANSWER * HASH_PART), HASH_PART):
            data = self.store.read(file_id, part, HASH_PART)
            out.append(types.FileHash(offset=part, limit=len(data), hash=hashlib.sha256(data).digest()))
        return out

    def redirect(self, file_id: int, offset: int) -> types.upload.FileCdnRedirect:
        token = secrets.token_bytes(32)
        entry = self._tokens[token] = _Token(file_id, secrets.token_bytes(32), secrets.token_bytes(16))
        self.redirects += 1
        return types.upload.FileCdnRedirect(
            dc_id=CDN_DC,
            file_token=token,
            encryption_key=entry.key,
            encryption_iv=entry.iv,
            file_hashes=self.hashes(file_id, offset),
        )

    def _token(self, token: bytes) -> _Token:
        entry = self._tokens.get(token)
        if entry is None:
            raise RpcError(400, "FILE_TOKEN_INVALID")
        return entry

    def get(self, token: bytes, offset: int, limit: int) -> object:
        entry = self._token(token)
        if not entry.cached:
            request_token = secrets.token_bytes(16)
            entry.request_tokens.add(request_token)
            return types.upload.CdnFileReuploadNeeded(request_token=request_token)
        data = self.store.read(entry.file_id, offset, limit)
        return types.upload.CdnFile(bytes=ctr(entry.key, entry.iv, offset, data))

    def reupload(self, token: bytes, request_token: bytes) -> list[types.FileHash]:
        entry = self._token(token)
        if request_token not in entry.request_tokens:
            raise RpcError(400, "FILE_TOKEN_INVALID")
        entry.cached = True
        self.reuploads += 1
        return self.hashes(entry.file_id, 0)

    def file_hashes(self, token: bytes, offset: int) -> list[types.FileHash]:
        return self.hashes(self._token(token).file_id, offset)
