"""MTProto 2.0 wire format for the sandbox server: transports, encryption, message ids, service messages.

Pure functions and small state machines, no I/O. The server feeds received bytes into a
:class:`ServerTransport` and gets whole packets back; :class:`ClientTransport` is the mirror image
used by tests and raw clients. Encryption follows https://core.telegram.org/mtproto/description
and matches ``telethon.network.mtprotostate`` byte for byte.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import gzip
import os
import random
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha1, sha256
from typing import Protocol

from telethon.crypto import AES, AESModeCTR

# --- constructor ids of the service layer (https://core.telegram.org/schema/mtproto) ---
RPC_RESULT_ID = 0xF35C6D01
RPC_ERROR_ID = 0x2144CA19
MSG_CONTAINER_ID = 0x73F1F8DC
GZIP_PACKED_ID = 0x3072CFA1
MSGS_ACK_ID = 0x62D6B459
PONG_ID = 0x347773C5
NEW_SESSION_CREATED_ID = 0x9EC20908
BAD_SERVER_SALT_ID = 0xEDAB447B
BAD_MSG_NOTIFICATION_ID = 0xA7EFF811
VECTOR_ID = 0x1CB5C415

# Largest transport packet accepted; a 1 MiB file part plus headers fits with room to spare.
MAX_PACKET = 16 * 1024 * 1024
# Telethon refuses server messages older than 300 s or newer than 30 s; the server applies the same
# window to client msg_ids (https://core.telegram.org/mtproto/description#message-identifier-msg-id).
MSG_ID_TOO_OLD = 300
MSG_ID_TOO_NEW = 30


class TransportError(Exception):
    """The peer broke the transport framing; the connection must be closed."""


class SecurityError(Exception):
    """An encrypted packet failed an integrity check (wrong key, msg_key or length)."""


# --------------------------------------------------------------------------------------------
# AES-256-CTR for the obfuscated transport
# --------------------------------------------------------------------------------------------


class StreamCipher(Protocol):
    def __call__(self, data: bytes) -> bytes: ...


def _libcrypto_ctr() -> Callable[[bytes, bytes], StreamCipher] | None:
    """AES-256-CTR from the system libcrypto through ctypes; ``None`` when it is not available.

    cryptg only offers IGE and pyaes runs at under 1 MiB/s, so the obfuscated transport uses the
    same OpenSSL that Python's ``ssl`` module links against when it can find it.
    """
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        lib.EVP_aes_256_ctr.restype = ctypes.c_void_p
        lib.EVP_EncryptInit_ex.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
        ]
        lib.EVP_EncryptUpdate.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p,
            ctypes.c_int,
        ]
    except (OSError, AttributeError):
        return None

    class _EvpCtr:
        def __init__(self, key: bytes, iv: bytes) -> None:
            self._ctx = lib.EVP_CIPHER_CTX_new()
            if not self._ctx or lib.EVP_EncryptInit_ex(self._ctx, lib.EVP_aes_256_ctr(), None, key, iv) != 1:
                raise RuntimeError("EVP_EncryptInit_ex failed")

        def __call__(self, data: bytes) -> bytes:
            if not data:
                return b""
            out = ctypes.create_string_buffer(len(data))
            out_len = ctypes.c_int(0)
            if lib.EVP_EncryptUpdate(self._ctx, out, ctypes.byref(out_len), data, len(data)) != 1:
                raise RuntimeError("EVP_EncryptUpdate failed")
            return out.raw[: out_len.value]

        def __del__(self) -> None:
            if self._ctx:
                lib.EVP_CIPHER_CTX_free(self._ctx)
                self._ctx = None

    try:
        probe = _EvpCtr(bytes(32), bytes(16))
        # Known answer: AES-256 of an all-zero block under an all-zero key.
        if probe(bytes(16)).hex() != "dc95c078a2408989ad48a21492842087":
            return None
    except RuntimeError:
        return None
    return _EvpCtr


class _PyaesCtr:
    def __init__(self, key: bytes, iv: bytes) -> None:
        self._ctr = AESModeCTR(key, iv)

    def __call__(self, data: bytes) -> bytes:
        result: bytes = self._ctr.encrypt(data)
        return result


_EVP_CTR = _libcrypto_ctr()


def aes_ctr(key: bytes, iv: bytes) -> StreamCipher:
    """A streaming AES-256-CTR cipher (encrypt and decrypt are the same operation)."""
    if _EVP_CTR is not None:
        return _EVP_CTR(key, iv)
    return _PyaesCtr(key, iv)


# --------------------------------------------------------------------------------------------
# Transport framings (https://core.telegram.org/mtproto/mtproto-transports)
# --------------------------------------------------------------------------------------------


class Framing(enum.Enum):
    FULL = "full"
    INTERMEDIATE = "intermediate"
    PADDED_INTERMEDIATE = "padded_intermediate"
    ABRIDGED = "abridged"


TAGS: dict[Framing, bytes] = {
    Framing.INTERMEDIATE: b"\xee\xee\xee\xee",
    Framing.PADDED_INTERMEDIATE: b"\xdd\xdd\xdd\xdd",
    Framing.ABRIDGED: b"\xef",
}
# The 4-byte tag hidden inside an obfuscated header (abridged repeats its byte).
OBFUSCATED_TAGS: dict[bytes, Framing] = {
    b"\xef\xef\xef\xef": Framing.ABRIDGED,
    b"\xee\xee\xee\xee": Framing.INTERMEDIATE,
    b"\xdd\xdd\xdd\xdd": Framing.PADDED_INTERMEDIATE,
}


class Codec:
    """Frames packets one way and unframes them the other; ``decode`` consumes from a buffer."""

    def encode(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def decode(self, buf: bytearray) -> bytes | None:
        """Remove and return one whole packet from the front of ``buf``, or ``None`` if incomplete."""
        raise NotImplementedError


def _take(buf: bytearray, head: int, length: int) -> bytes:
    """Copy one payload out of ``buf`` (once, through a memoryview) and drop it with its header."""
    with memoryview(buf) as view:
        payload = bytes(view[head : head + length])
    del buf[: head + length]  # O(1) at the front of a bytearray
    return payload


def _check_length(length: int) -> None:
    if length < 0 or length > MAX_PACKET:
        raise TransportError(f"invalid packet length {length}")


class FullCodec(Codec):
    """TcpFull: ``len:int32 seq:int32 payload crc32:uint32``; ``len`` counts all 12 extra bytes."""

    def __init__(self) -> None:
        self._send_seq = 0
        self._recv_seq = 0

    def encode(self, payload: bytes) -> bytes:
        head = struct.pack("<ii", len(payload) + 12, self._send_seq)
        self._send_seq += 1
        crc = zlib.crc32(payload, zlib.crc32(head))
        return b"".join((head, payload, struct.pack("<I", crc)))

    def decode(self, buf: bytearray) -> bytes | None:
        if len(buf) < 4:
            return None
        (length,) = struct.unpack_from("<i", buf)
        if length < 12:
            raise TransportError(f"invalid TcpFull length {length}")
        _check_length(length)
        if len(buf) < length:
            return None
        (seq,) = struct.unpack_from("<i", buf, 4)
        (crc,) = struct.unpack_from("<I", buf, length - 4)
        with memoryview(buf) as view:
            if zlib.crc32(view[: length - 4]) != crc:
                raise TransportError("TcpFull checksum mismatch")
        if seq != self._recv_seq:
            raise TransportError(f"TcpFull sequence {seq}, expected {self._recv_seq}")
        self._recv_seq += 1
        payload = _take(buf, 8, length - 12)
        del buf[:4]  # the checksum
        return payload


class IntermediateCodec(Codec):
    """``len:int32 payload``; bit 31 of ``len`` is the client's quick-ack request (ignored)."""

    def encode(self, payload: bytes) -> bytes:
        return struct.pack("<i", len(payload)) + payload

    def _take(self, buf: bytearray) -> bytes | None:
        if len(buf) < 4:
            return None
        (length,) = struct.unpack_from("<I", buf)
        length &= 0x7FFFFFFF
        _check_length(length)
        if len(buf) < 4 + length:
            return None
        return _take(buf, 4, length)

    def decode(self, buf: bytearray) -> bytes | None:
        return self._take(buf)


def mtproto_length(packet: bytes) -> int:
    """Length of the MTProto message at the start of ``packet`` without transport padding."""
    if len(packet) < 8:
        return len(packet)  # transport error codes are 4 bytes
    if packet[:8] == bytes(8):  # plain message: auth_key_id, msg_id, length, body
        if len(packet) < 20:
            return len(packet)
        body_len: int = struct.unpack_from("<i", packet, 16)[0]
        return min(len(packet), 20 + max(body_len, 0))
    # encrypted: auth_key_id, msg_key, then a multiple of 16 bytes
    return len(packet) - (len(packet) - 24) % 16 if len(packet) >= 24 else len(packet)


class PaddedIntermediateCodec(IntermediateCodec):
    """Intermediate plus 0-15 random bytes. We send 0-3 bytes: Telethon strips only ``len % 4``."""

    def encode(self, payload: bytes) -> bytes:
        padding = os.urandom(random.randint(0, 3))
        return struct.pack("<i", len(payload) + len(padding)) + payload + padding

    def decode(self, buf: bytearray) -> bytes | None:
        packet = self._take(buf)
        if packet is None:
            return None
        return packet[: mtproto_length(packet)]


class AbridgedCodec(Codec):
    """Length in 4-byte words: one byte, or ``0x7f`` and three bytes. Bit 7 of the first byte is quick-ack."""

    def encode(self, payload: bytes) -> bytes:
        words = len(payload) >> 2
        if words < 0x7F:
            return bytes((words,)) + payload
        return b"\x7f" + words.to_bytes(3, "little") + payload

    def decode(self, buf: bytearray) -> bytes | None:
        if not buf:
            return None
        words = buf[0] & 0x7F
        head = 1
        if words == 0x7F:
            if len(buf) < 4:
                return None
            words = int.from_bytes(buf[1:4], "little")
            head = 4
        length = words << 2
        _check_length(length)
        if len(buf) < head + length:
            return None
        return _take(buf, head, length)


def make_codec(framing: Framing) -> Codec:
    if framing is Framing.FULL:
        return FullCodec()
    if framing is Framing.INTERMEDIATE:
        return IntermediateCodec()
    if framing is Framing.PADDED_INTERMEDIATE:
        return PaddedIntermediateCodec()
    return AbridgedCodec()


# --- obfuscation (https://core.telegram.org/mtproto/mtproto-transports#transport-obfuscation) ---

# A client's random header may not start like another transport or an HTTP request.
_FORBIDDEN_STARTS = (b"PVrG", b"GET ", b"POST", b"HEAD", b"\xee\xee\xee\xee", b"\xdd\xdd\xdd\xdd")


def _obfuscation_keys(header: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(client->server key, iv, server->client key, iv) from a 64-byte header."""
    reversed_part = header[55:7:-1]
    return header[8:40], header[40:56], reversed_part[:32], reversed_part[32:48]


def make_obfuscated_header(framing: Framing, dc_id: int = 2) -> tuple[bytes, StreamCipher, StreamCipher]:
    """Client side: a 64-byte header and the (encrypt, decrypt) ciphers that follow it."""
    if framing is Framing.FULL:
        raise ValueError("TcpFull cannot be obfuscated")
    tag = TAGS[framing] * 4 if framing is Framing.ABRIDGED else TAGS[framing]
    while True:
        init = bytearray(os.urandom(64))
        if init[0] != 0xEF and bytes(init[:4]) not in _FORBIDDEN_STARTS and init[4:8] != bytes(4):
            break
    init[56:60] = tag
    init[60:62] = struct.pack("<h", dc_id)
    enc_key, enc_iv, dec_key, dec_iv = _obfuscation_keys(bytes(init))
    encrypt = aes_ctr(enc_key, enc_iv)
    decrypt = aes_ctr(dec_key, dec_iv)
    init[56:64] = encrypt(bytes(init))[56:64]
    return bytes(init), encrypt, decrypt


def parse_obfuscated_header(header: bytes) -> tuple[Framing, StreamCipher, StreamCipher]:
    """Server side: the inner framing and the (decrypt incoming, encrypt outgoing) ciphers."""
    if len(header) != 64:
        raise TransportError("obfuscated header must be 64 bytes")
    in_key, in_iv, out_key, out_iv = _obfuscation_keys(header)
    decrypt = aes_ctr(in_key, in_iv)
    plain = decrypt(header)  # also advances the stream past the header, as the client did
    framing = OBFUSCATED_TAGS.get(plain[56:60])
    if framing is None:
        raise TransportError("unknown protocol tag in obfuscated header")
    return framing, decrypt, aes_ctr(out_key, out_iv)


class ServerTransport:
    """Detects the client's transport from its first bytes, then frames and unframes packets."""

    def __init__(self) -> None:
        self.framing: Framing | None = None
        self.obfuscated = False
        self._codec: Codec | None = None
        self._decrypt: StreamCipher | None = None
        self._encrypt: StreamCipher | None = None
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every packet now complete (possibly none)."""
        if self._decrypt is not None:
            data = self._decrypt(data)
        self._buf += data
        if self._codec is None and not self._detect():
            return []
        assert self._codec is not None
        packets = []
        while (packet := self._codec.decode(self._buf)) is not None:
            packets.append(packet)
        return packets

    def encode(self, payload: bytes) -> bytes:
        if self._codec is None:
            raise TransportError("transport not detected yet")
        frame = self._codec.encode(payload)
        return self._encrypt(frame) if self._encrypt is not None else frame

    def _detect(self) -> bool:
        buf = self._buf
        if buf[:1] == b"\xef":
            self._select(Framing.ABRIDGED, 1)
            return True
        if len(buf) < 8:
            return False
        head = bytes(buf[:4])
        if head == TAGS[Framing.INTERMEDIATE]:
            self._select(Framing.INTERMEDIATE, 4)
        elif head == TAGS[Framing.PADDED_INTERMEDIATE]:
            self._select(Framing.PADDED_INTERMEDIATE, 4)
        elif buf[4:8] == bytes(4):
            self._select(Framing.FULL, 0)  # TcpFull: the first packet's sequence number is 0
        else:
            if len(buf) < 64:
                return False
            framing, self._decrypt, self._encrypt = parse_obfuscated_header(bytes(buf[:64]))
            rest = self._decrypt(bytes(buf[64:]))
            self._buf = bytearray(rest)
            self.obfuscated = True
            self._select(framing, 0)
        return True

    def _select(self, framing: Framing, tag_len: int) -> None:
        self.framing = framing
        self._codec = make_codec(framing)
        del self._buf[:tag_len]


class ClientTransport:
    """The client side of a transport, for tests and raw clients."""

    def __init__(self, framing: Framing, *, obfuscated: bool = False) -> None:
        self.framing = framing
        self._codec = make_codec(framing)
        self._buf = bytearray()
        self._encrypt: StreamCipher | None = None
        self._decrypt: StreamCipher | None = None
        if obfuscated:
            self.preamble, self._encrypt, self._decrypt = make_obfuscated_header(framing)
        else:
            self.preamble = TAGS.get(framing, b"")

    def encode(self, payload: bytes) -> bytes:
        frame = self._codec.encode(payload)
        return self._encrypt(frame) if self._encrypt is not None else frame

    def feed(self, data: bytes) -> list[bytes]:
        if self._decrypt is not None:
            data = self._decrypt(data)
        self._buf += data
        packets = []
        while (packet := self._codec.decode(self._buf)) is not None:
            packets.append(packet)
        return packets


# --------------------------------------------------------------------------------------------
# Message ids and sequence numbers
# --------------------------------------------------------------------------------------------


class MsgIdClock:
    """Server msg_ids: about unix time * 2^32, strictly increasing, odd.

    Responses to client messages end in binary 01, server-initiated messages in 11.
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._last = 0

    def next(self, *, response: bool) -> int:
        now = self._now()
        base = (int(now) << 32) | (int((now % 1) * 2**32) & ~3 & 0xFFFFFFFF)
        base = max(base, (self._last & ~3) + 4)
        self._last = base | (1 if response else 3)
        return self._last


def check_client_msg_id(msg_id: int, now: float) -> int | None:
    """The bad_msg_notification error code for a client msg_id, or ``None`` when it is acceptable."""
    if msg_id % 4 != 0:
        return 18  # client msg_ids must be divisible by 4
    seconds = msg_id >> 32
    if seconds < now - MSG_ID_TOO_OLD:
        return 16  # too low
    if seconds > now + MSG_ID_TOO_NEW:
        return 17  # too high
    return None


class SeqNo:
    """Outgoing msg_seqno of one session: content-related messages are odd and advance the counter."""

    def __init__(self) -> None:
        self._count = 0

    def next(self, content_related: bool) -> int:
        if content_related:
            self._count += 1
            return self._count * 2 - 1
        return self._count * 2


# --------------------------------------------------------------------------------------------
# Encryption (MTProto 2.0)
# --------------------------------------------------------------------------------------------


def auth_key_id(auth_key: bytes) -> int:
    """The 64-bit id of an auth key (low 8 bytes of its SHA1), as the signed long on the wire."""
    result: int = struct.unpack("<q", sha1(auth_key).digest()[-8:])[0]
    return result


def _aes_key_iv(auth_key: bytes, msg_key: bytes, x: int) -> tuple[bytes, bytes]:
    sha_a = sha256(msg_key + auth_key[x : x + 36]).digest()
    sha_b = sha256(auth_key[x + 40 : x + 76] + msg_key).digest()
    return sha_a[:8] + sha_b[8:24] + sha_a[24:32], sha_b[:8] + sha_a[8:24] + sha_b[24:32]


def _padding(length: int) -> bytes:
    # 12..27 random bytes bringing the total to a multiple of 16 (MTProto 2.0 wants 12..1024).
    return os.urandom(-(length + 12) % 16 + 12)


def encrypt_message(auth_key: bytes, plaintext_parts: Sequence[bytes], *, from_server: bool = True) -> bytes:
    """``auth_key_id + msg_key + aes_ige(plaintext + padding)``; the parts are joined once."""
    x = 8 if from_server else 0
    length = sum(len(part) for part in plaintext_parts)
    plaintext = b"".join((*plaintext_parts, _padding(length)))
    digest = sha256(auth_key[88 + x : 120 + x])
    digest.update(plaintext)
    msg_key = digest.digest()[8:24]
    key, iv = _aes_key_iv(auth_key, msg_key, x)
    return b"".join((sha1(auth_key).digest()[-8:], msg_key, AES.encrypt_ige(plaintext, key, iv)))


def decrypt_message(auth_key: bytes, packet: bytes, *, from_client: bool = True) -> bytes:
    """The plaintext of an encrypted packet (salt, session id, message, padding); checks msg_key."""
    if len(packet) < 24 + 32 or (len(packet) - 24) % 16:
        raise SecurityError("encrypted packet has an invalid length")
    x = 0 if from_client else 8
    msg_key = packet[8:24]
    key, iv = _aes_key_iv(auth_key, msg_key, x)
    plaintext: bytes = AES.decrypt_ige(packet[24:], key, iv)
    digest = sha256(auth_key[88 + x : 120 + x])
    digest.update(plaintext)
    if digest.digest()[8:24] != msg_key:
        raise SecurityError("msg_key mismatch")
    return plaintext


@dataclass(frozen=True, slots=True)
class Message:
    """One MTProto message: ``msg_id:long seqno:int bytes:int body``."""

    msg_id: int
    seq_no: int
    body: bytes

    @property
    def content_related(self) -> bool:
        return self.seq_no % 2 == 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """The decrypted header of an encrypted packet and the message it carries."""

    salt: int
    session_id: int
    message: Message


def parse_plaintext(plaintext: bytes) -> Envelope:
    if len(plaintext) < 32:
        raise SecurityError("plaintext too short")
    salt, session_id, msg_id, seq_no, length = struct.unpack_from("<qqqii", plaintext)
    padding = len(plaintext) - 32 - length
    if length < 0 or length % 4 or not 12 <= padding <= 1024:
        raise SecurityError("message length does not match the packet")
    return Envelope(salt, session_id, Message(msg_id, seq_no, plaintext[32 : 32 + length]))


def plaintext_header(salt: int, session_id: int, msg_id: int, seq_no: int, length: int) -> bytes:
    return struct.pack("<qqqii", salt, session_id, msg_id, seq_no, length)


def parse_plain_packet(packet: bytes) -> Message:
    """An unencrypted packet (auth_key_id 0), used only by the auth-key exchange."""
    if len(packet) < 20:
        raise SecurityError("plain packet too short")
    key_id, msg_id, length = struct.unpack_from("<qqi", packet)
    if key_id != 0 or length < 0 or 20 + length > len(packet):
        raise SecurityError("invalid plain packet")
    return Message(msg_id, 0, packet[20 : 20 + length])


def plain_packet(msg_id: int, body: bytes) -> bytes:
    return struct.pack("<qqi", 0, msg_id, len(body)) + body


def constructor_of(body: bytes) -> int:
    if len(body) < 4:
        raise SecurityError("empty message body")
    result: int = struct.unpack_from("<I", body)[0]
    return result


def unpack_container(body: bytes) -> list[Message]:
    """The messages of a ``msg_container`` body (constructor included)."""
    if constructor_of(body) != MSG_CONTAINER_ID or len(body) < 8:
        raise SecurityError("not a container")
    (count,) = struct.unpack_from("<i", body, 4)
    pos = 8
    messages = []
    for _ in range(count):
        if pos + 16 > len(body):
            raise SecurityError("truncated container")
        msg_id, seq_no, length = struct.unpack_from("<qii", body, pos)
        pos += 16
        if length < 0 or pos + length > len(body):
            raise SecurityError("truncated container message")
        messages.append(Message(msg_id, seq_no, body[pos : pos + length]))
        pos += length
    return messages


def unpack_gzip(body: bytes) -> bytes:
    """The inflated object inside a ``gzip_packed`` body (constructor included)."""
    if constructor_of(body) != GZIP_PACKED_ID:
        raise SecurityError("not gzip_packed")
    data, _ = read_tl_bytes(body, 4)
    return gzip.decompress(data)


def read_tl_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """A TL ``bytes`` value at ``pos``; returns it and the position after its padding."""
    first = data[pos]
    if first < 254:
        start, length = pos + 1, first
    else:
        start, length = pos + 4, int.from_bytes(data[pos + 1 : pos + 4], "little")
    end = start + length
    return data[start:end], end + (-(end - pos) % 4)


def tl_bytes(data: bytes) -> bytes:
    """TL serialization of ``bytes`` (length prefix and padding to 4)."""
    head = bytes((len(data),)) if len(data) < 254 else b"\xfe" + len(data).to_bytes(3, "little")
    return b"".join((head, data, bytes(-(len(head) + len(data)) % 4)))


# --------------------------------------------------------------------------------------------
# Server messages
# --------------------------------------------------------------------------------------------


def rpc_result(req_msg_id: int, result: bytes) -> list[bytes]:
    """``rpc_result`` as parts, so a large result is copied only once, when encrypted."""
    return [struct.pack("<Iq", RPC_RESULT_ID, req_msg_id), result]


def rpc_error(code: int, message: str) -> bytes:
    """An ``rpc_error`` object (to be wrapped by :func:`rpc_result`)."""
    return struct.pack("<Ii", RPC_ERROR_ID, code) + tl_bytes(message.encode())


def pong(msg_id: int, ping_id: int) -> bytes:
    return struct.pack("<Iqq", PONG_ID, msg_id, ping_id)


def new_session_created(first_msg_id: int, unique_id: int, server_salt: int) -> bytes:
    return struct.pack("<Iqqq", NEW_SESSION_CREATED_ID, first_msg_id, unique_id, server_salt)


def bad_server_salt(bad_msg_id: int, bad_msg_seqno: int, new_salt: int) -> bytes:
    return struct.pack("<Iqiiq", BAD_SERVER_SALT_ID, bad_msg_id, bad_msg_seqno, 48, new_salt)


def bad_msg_notification(bad_msg_id: int, bad_msg_seqno: int, error_code: int) -> bytes:
    return struct.pack("<Iqii", BAD_MSG_NOTIFICATION_ID, bad_msg_id, bad_msg_seqno, error_code)


def msgs_ack(msg_ids: Iterable[int]) -> bytes:
    ids = list(msg_ids)
    return struct.pack(f"<IIi{len(ids)}q", MSGS_ACK_ID, VECTOR_ID, len(ids), *ids)


def pack_messages(messages: Sequence[tuple[int, int, Sequence[bytes]]]) -> list[bytes]:
    """Header + body parts for each ``(msg_id, seq_no, body_parts)``, ready to be joined."""
    parts: list[bytes] = []
    for msg_id, seq_no, body in messages:
        parts.append(struct.pack("<qii", msg_id, seq_no, sum(len(b) for b in body)))
        parts.extend(body)
    return parts


def container_head(count: int) -> bytes:
    return struct.pack("<Ii", MSG_CONTAINER_ID, count)
