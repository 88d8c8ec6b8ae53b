"""Reading a file Telegram moved to a CDN DC (core.telegram.org/cdn).

``upload.getFile`` may answer ``upload.fileCdnRedirect`` although Telethon never sets ``cdn_supported``
(Telethon#4327, #4485). The parts are then read from the CDN DC with ``upload.getCdnFile`` (no
authorization there: a fresh key), decrypted with AES-256-CTR (the IV's last 4 bytes are ``offset / 16``
big-endian) and checked against the SHA-256 of each 128 KiB part, which the redirect and
``upload.getCdnFileHashes`` on the file's DC give. ``upload.cdnFileReuploadNeeded`` asks the file's DC to
put the file on the CDN first (``upload.reuploadCdnFile``).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from telethon.tl import functions, types

from telepi.engine.transfer.senders import SenderPool


class CdnHashMismatch(Exception):
    """A decrypted CDN part does not match its hash: read it again."""


def ctr(key: bytes, iv: bytes, offset: int, data: bytes) -> bytes:
    counter = iv[:12] + struct.pack(">I", offset // 16)
    cipher = Cipher(algorithms.AES(key), modes.CTR(counter)).decryptor()
    return cipher.update(data) + cipher.finalize()


class CdnFile:
    """One redirected file: reads its parts from ``cdn`` and asks ``master`` (the file's DC) for the rest."""

    def __init__(self, redirect: Any, cdn: SenderPool, master: SenderPool) -> None:
        self.token = bytes(redirect.file_token)
        self.key = bytes(redirect.encryption_key)
        self.iv = bytes(redirect.encryption_iv)
        self.cdn = cdn
        self.master = master
        self.hashes: dict[int, Any] = {}
        self.add(redirect.file_hashes)
        self.reuploads = 0
        self._reupload = asyncio.Lock()

    def add(self, hashes: Any) -> None:
        for item in hashes or []:
            self.hashes[int(item.offset)] = item

    async def read(self, offset: int, limit: int, timeout: float) -> bytes:
        while True:
            result = await self.cdn.call(functions.upload.GetCdnFileRequest(self.token, offset, limit), timeout)
            if isinstance(result, types.upload.CdnFileReuploadNeeded):
                seen = self.reuploads
                async with self._reupload:  # parts in flight are told together: one reupload serves them
                    if self.reuploads == seen:
                        request = functions.upload.ReuploadCdnFileRequest(self.token, result.request_token)
                        self.add(await self.master.call(request, timeout))
                        self.reuploads += 1
                continue
            data = ctr(self.key, self.iv, offset, bytes(result.bytes))
            await self._verify(offset, data, timeout)
            return data

    async def _verify(self, offset: int, data: bytes, timeout: float) -> None:
        position = offset
        while position < offset + len(data):
            part = self.hashes.get(position)
            if part is None:
                request = functions.upload.GetCdnFileHashesRequest(self.token, position)
                self.add(await self.master.call(request, timeout))
                part = self.hashes.get(position)
                if part is None:
                    raise CdnHashMismatch(f"no hash of the CDN part at {position}")
            start = position - offset
            chunk = data[start : start + int(part.limit)]
            if hashlib.sha256(chunk).digest() != bytes(part.hash):
                raise CdnHashMismatch(f"the CDN part at {position} does not match its hash")
            position += int(part.limit)
