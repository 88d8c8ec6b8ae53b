"""The server half of the MTProto auth-key exchange (https://core.telegram.org/mtproto/auth_key).

``req_pq_multi -> req_DH_params -> set_client_DH_params -> dh_gen_ok``, with the sandbox's own RSA
key. Telethon encrypts with the old scheme (``sha1(data) + data + random padding``, raw RSA), so the
server decrypts with a plain ``pow(c, d, n)``.

The DH values and the auth key are 2048-bit numbers written as exactly 256 big-endian bytes, leading
zero bytes kept (core.telegram.org/mtproto/auth_key: "auth_key ... 2048-bit"; the key id is the low
64 bits of SHA1 of those 256 bytes), as Telegram does and spec-following clients (TDLib, the Pyrogram
family) expect. Telethon 1.45 strips leading zeros, so on the ~1 exchange in 256 whose g^ab starts
with a zero byte its check of ``new_nonce_hash1`` fails and it starts a fresh exchange, as it does
against Telegram. ``exponent`` (a test hook, ``Faults.dh_exponents``) fixes the server's secret so a
test can make g_a, g_b or the key start with a zero byte on purpose.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha1

import rsa
from telethon.crypto import AES, AuthKey
from telethon.crypto import rsa as telethon_rsa
from telethon.extensions import BinaryReader
from telethon.tl.functions import ReqDHParamsRequest, ReqPqMultiRequest, ReqPqRequest, SetClientDHParamsRequest
from telethon.tl.tlobject import TLObject
from telethon.tl.types import (
    ClientDHInnerData,
    DhGenOk,
    PQInnerData,
    PQInnerDataDc,
    PQInnerDataTemp,
    PQInnerDataTempDc,
    ResPQ,
    ServerDHInnerData,
    ServerDHParamsOk,
)

# Telegram's published 2048-bit safe prime; g = 3 generates its subgroup of order (p-1)/2 (p mod 3 = 2).
DH_PRIME = int(
    "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f48198a0aa7c14058229493d22530f4db"
    "fa336f6e0ac925139543aed44cce7c3720fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f64"
    "2477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4a4a695811051907e162753b56b0f6b41"
    "0dba74d8a84b2a14b3144e0ef1284754fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4"
    "e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f0d8115f635b105ee2e4e15d04b2454bf"
    "6f4fadf034b10403119cd8e3b92fcc5b",
    16,
)
DH_G = 3
# Both sides check g_a and g_b lie in [2^(2048-64), p - 2^(2048-64)] (Telethon does too).
_SAFETY = 2 ** (2048 - 64)
_PQ_INNER = (PQInnerData, PQInnerDataDc, PQInnerDataTemp, PQInnerDataTempDc)


class HandshakeError(Exception):
    """The client sent something the exchange cannot accept; the connection is closed."""


def to_bytes(value: int) -> bytes:
    """Shortest big-endian form, as TL writes ``pq`` (core.telegram.org/mtproto/auth_key)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def dh_bytes(value: int) -> bytes:
    """A 2048-bit DH value or auth key as Telegram writes it: 256 bytes, leading zeros kept."""
    return value.to_bytes(256, "big")


def leading_zero_exponent(seed: int = 0) -> int:
    """A server exponent ``a`` whose g^a mod p starts with a zero byte (and passes the range checks):
    the deterministic way to the exchange that ~1 handshake in 256 meets on Telegram."""
    rng = random.Random(seed)
    while True:
        a = rng.getrandbits(160)  # short: ~256 tries, each a modexp; g^a is no less uniform for it
        if _SAFETY <= pow(DH_G, a, DH_PRIME) < 1 << 2040:
            return a


@dataclass(frozen=True)
class ServerKey:
    """The sandbox's RSA key pair (2048 bits)."""

    private: rsa.PrivateKey

    @classmethod
    def generate(cls) -> ServerKey:
        _public, private = rsa.newkeys(2048)
        return cls(private)

    @classmethod
    def from_pem(cls, pem: bytes) -> ServerKey:
        return cls(rsa.PrivateKey.load_pkcs1(pem))

    def private_pem(self) -> bytes:
        pem: bytes = self.private.save_pkcs1()
        return pem

    @property
    def public_pem(self) -> str:
        """PKCS#1 ``BEGIN RSA PUBLIC KEY``, as ``telethon.crypto.rsa.add_key(pem, old=False)`` expects."""
        pem: bytes = rsa.PublicKey(self.private.n, self.private.e).save_pkcs1()
        return pem.decode()

    @property
    def fingerprint(self) -> int:
        fp: int = telethon_rsa._compute_fingerprint(self.private)
        return fp

    def decrypt_raw(self, data: bytes) -> bytes:
        """Textbook RSA: the 255-byte block Telethon encrypted (it never sets the top byte)."""
        value = int.from_bytes(data, "big")
        if value >= self.private.n:
            raise HandshakeError("RSA ciphertext out of range")
        block = pow(value, self.private.d, self.private.n).to_bytes(256, "big")
        if block[0] != 0:
            raise HandshakeError("RSA block has a non-zero top byte")
        return block[1:]


def _random_prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        if _is_probable_prime(candidate, rng):
            return candidate


def _is_probable_prime(n: int, rng: random.Random) -> bool:
    if n < 4:
        return n in (2, 3)
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(16):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@dataclass
class _Pending:
    nonce: int
    server_nonce: int
    pq: bytes
    new_nonce: int = 0
    a: int = 0
    tmp_key: bytes = b""
    tmp_iv: bytes = b""


class Handshake:
    """One connection's exchange. ``handle`` answers each step; ``auth_key`` is set once it completes."""

    def __init__(
        self,
        key: ServerKey,
        *,
        now: Callable[[], float] = time.time,
        exponent: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._key = key
        self._now = now
        self._exponent = exponent
        self._rng = random.SystemRandom()
        self._pending: _Pending | None = None
        self.auth_key: bytes | None = None

    def handle(self, request: TLObject) -> TLObject:
        if isinstance(request, ReqPqMultiRequest | ReqPqRequest):
            return self._res_pq(request.nonce)
        if isinstance(request, ReqDHParamsRequest):
            return self._server_dh_params(request)
        if isinstance(request, SetClientDHParamsRequest):
            return self._dh_gen(request)
        raise HandshakeError(f"unexpected unencrypted {type(request).__name__}")

    def _res_pq(self, nonce: int) -> ResPQ:
        # 31-bit primes like Telegram's: the client factors pq with pure-Python Pollard rho in ~30 ms.
        p, q = sorted((_random_prime(31, self._rng), _random_prime(31, self._rng)))
        while p == q:
            q = _random_prime(31, self._rng)
        server_nonce = int.from_bytes(os.urandom(16), "little", signed=True)
        self._pending = _Pending(nonce, server_nonce, to_bytes(p * q))
        return ResPQ(nonce, server_nonce, self._pending.pq, [self._key.fingerprint])

    def _expect(self, nonce: int, server_nonce: int) -> _Pending:
        pending = self._pending
        if pending is None or pending.nonce != nonce or pending.server_nonce != server_nonce:
            raise HandshakeError("nonce mismatch")
        return pending

    def _server_dh_params(self, request: ReqDHParamsRequest) -> ServerDHParamsOk:
        pending = self._expect(request.nonce, request.server_nonce)
        if request.public_key_fingerprint != self._key.fingerprint:
            raise HandshakeError("unknown RSA fingerprint")
        inner = _read_hashed(self._key.decrypt_raw(request.encrypted_data))
        if not isinstance(inner, _PQ_INNER) or inner.nonce != pending.nonce or inner.pq != pending.pq:
            raise HandshakeError("p_q_inner_data does not match")
        pending.new_nonce = inner.new_nonce
        pending.tmp_key, pending.tmp_iv = _tmp_aes(pending.server_nonce, pending.new_nonce)

        fixed = self._exponent()
        while True:
            pending.a = fixed if fixed is not None else int.from_bytes(os.urandom(256), "big")
            g_a = pow(DH_G, pending.a, DH_PRIME)
            if _SAFETY <= g_a <= DH_PRIME - _SAFETY:
                break
            if fixed is not None:
                raise HandshakeError("the fixed DH exponent gives g_a out of range")
        answer = bytes(
            ServerDHInnerData(
                nonce=pending.nonce,
                server_nonce=pending.server_nonce,
                g=DH_G,
                dh_prime=dh_bytes(DH_PRIME),
                g_a=dh_bytes(g_a),
                server_time=int(self._now()),
            )
        )
        encrypted = AES.encrypt_ige(sha1(answer).digest() + answer, pending.tmp_key, pending.tmp_iv)
        return ServerDHParamsOk(pending.nonce, pending.server_nonce, encrypted)

    def _dh_gen(self, request: SetClientDHParamsRequest) -> DhGenOk:
        pending = self._expect(request.nonce, request.server_nonce)
        if not pending.tmp_key or len(request.encrypted_data) % 16:
            raise HandshakeError("set_client_DH_params out of order")
        inner = _read_hashed(AES.decrypt_ige(request.encrypted_data, pending.tmp_key, pending.tmp_iv))
        if not isinstance(inner, ClientDHInnerData):
            raise HandshakeError("expected client_DH_inner_data")
        g_b = int.from_bytes(inner.g_b, "big")
        if not _SAFETY <= g_b <= DH_PRIME - _SAFETY:
            raise HandshakeError("g_b out of range")
        auth_key = dh_bytes(pow(g_b, pending.a, DH_PRIME))
        new_nonce_hash1 = AuthKey(auth_key).calc_new_nonce_hash(pending.new_nonce, 1)
        self._pending = None
        self.auth_key = auth_key
        return DhGenOk(inner.nonce, inner.server_nonce, new_nonce_hash1)


def _read_hashed(data: bytes) -> TLObject:
    """The object in ``sha1(object) + object + padding``; any damage is a HandshakeError."""
    try:
        with BinaryReader(data[20:]) as reader:
            obj: TLObject = reader.tgread_object()
            length = reader.tell_position()
    except Exception as exc:  # random bytes can fail in many ways inside Telethon's reader
        raise HandshakeError(f"unreadable encrypted data ({type(exc).__name__})") from exc
    if sha1(data[20 : 20 + length]).digest() != data[:20]:
        raise HandshakeError("hash mismatch in encrypted data")
    return obj


def _tmp_aes(server_nonce: int, new_nonce: int) -> tuple[bytes, bytes]:
    """tmp_aes_key/iv from the nonces, as in the spec (and ``telethon.helpers``)."""
    sn = server_nonce.to_bytes(16, "little", signed=True)
    nn = new_nonce.to_bytes(32, "little", signed=True)
    hash1 = sha1(nn + sn).digest()
    hash2 = sha1(sn + nn).digest()
    hash3 = sha1(nn + nn).digest()
    return hash1 + hash2[:12], hash2[12:20] + hash3 + nn[:4]
