"""Pure tests of the sandbox's MTProto codecs, checked against Telethon's own client-side code."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import io
import itertools
import logging
import os
import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telethon.crypto import AuthKey
from telethon.extensions import BinaryReader
from telethon.network import authenticator
from telethon.network.connection.tcpabridged import AbridgedPacketCodec
from telethon.network.connection.tcpfull import FullPacketCodec
from telethon.network.connection.tcpintermediate import (
    IntermediatePacketCodec,
    RandomizedIntermediatePacketCodec,
)
from telethon.network.connection.tcpobfuscated import ObfuscatedIO
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, RpcResult
from telethon.tl.tlobject import TLObject

from telepi.sandbox.wire import protocol as proto
from telepi.sandbox.wire.handshake import DH_G, DH_PRIME, Handshake, HandshakeError, ServerKey, to_bytes
from tests.sandbox import dhkit

LOGGERS: Any = collections.defaultdict(lambda: logging.getLogger("telethon-under-test"))
ALL_FRAMINGS = list(proto.Framing)
OBFUSCATABLE = [f for f in proto.Framing if f is not proto.Framing.FULL]
TELETHON_CODECS = {
    proto.Framing.FULL: FullPacketCodec,
    proto.Framing.INTERMEDIATE: IntermediatePacketCodec,
    proto.Framing.PADDED_INTERMEDIATE: RandomizedIntermediatePacketCodec,
    proto.Framing.ABRIDGED: AbridgedPacketCodec,
}


def encrypted_packet(blocks: int) -> bytes:
    return b"\x01" + os.urandom(8 + 16 + 16 * blocks - 1)  # auth_key_id != 0, msg_key, AES blocks


def plain_packet(words: int) -> bytes:
    return proto.plain_packet(4, os.urandom(4 * words))


def payloads() -> st.SearchStrategy[list[bytes]]:
    # Shaped like real MTProto packets (padded intermediate relies on it); sizes around the
    # abridged one-byte/four-byte length switch at 127 words and a large one.
    encrypted = st.one_of(st.integers(1, 40), st.sampled_from([30, 31, 4096])).map(encrypted_packet)
    plain = st.integers(1, 130).map(plain_packet)
    return st.lists(st.one_of(encrypted, plain), min_size=1, max_size=5)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def feed_all(transport: proto.ServerTransport | proto.ClientTransport, chunks: list[bytes]) -> list[bytes]:
    packets: list[bytes] = []
    for chunk in chunks:
        packets.extend(transport.feed(chunk))
    return packets


# --- transports -------------------------------------------------------------------------------


@pytest.mark.parametrize("obfuscated", [False, True])
@pytest.mark.parametrize("framing", ALL_FRAMINGS)
@settings(max_examples=25, deadline=None)
@given(packets=payloads(), cuts=st.lists(st.integers(0, 10**6), max_size=8))
def test_transport_round_trip_any_chunking(
    framing: proto.Framing, obfuscated: bool, packets: list[bytes], cuts: list[int]
) -> None:
    if obfuscated and framing is proto.Framing.FULL:
        return
    client = proto.ClientTransport(framing, obfuscated=obfuscated)
    server = proto.ServerTransport()
    wire = client.preamble + b"".join(client.encode(p) for p in packets)
    assert feed_all(server, chunked(wire, cuts)) == packets
    assert server.framing is framing and server.obfuscated is obfuscated

    back = b"".join(server.encode(p) for p in packets)
    assert feed_all(client, chunked(back, cuts)) == packets


@pytest.mark.parametrize("framing", ALL_FRAMINGS)
async def test_server_transport_reads_and_writes_telethon_framing(framing: proto.Framing) -> None:
    codec = TELETHON_CODECS[framing](None)
    packets = [os.urandom(24 + 16 * n) for n in (1, 5, 40, 3000)]
    server = proto.ServerTransport()
    wire = proto.TAGS.get(framing, b"") + b"".join(codec.encode_packet(p) for p in packets)
    assert feed_all(server, [wire[i : i + 1000] for i in range(0, len(wire), 1000)]) == packets

    reader = asyncio.StreamReader()
    for p in packets:
        reader.feed_data(server.encode(p))
    assert [await codec.read_packet(reader) for _ in packets] == packets


@pytest.mark.parametrize(
    "codec_class", [AbridgedPacketCodec, IntermediatePacketCodec, RandomizedIntermediatePacketCodec]
)
async def test_server_transport_understands_telethon_obfuscation(codec_class: Any) -> None:
    header, encryptor, decryptor = ObfuscatedIO.init_header(codec_class)
    codec = codec_class(None)
    packets = [os.urandom(24 + 16 * n) for n in (1, 200)]
    server = proto.ServerTransport()
    wire = bytes(header) + encryptor.encrypt(b"".join(codec.encode_packet(p) for p in packets))
    assert feed_all(server, [wire[:10], wire[10:70], wire[70:]]) == packets
    assert server.obfuscated and server.framing is proto.OBFUSCATED_TAGS[codec_class.obfuscate_tag]

    reader = asyncio.StreamReader()
    reader.feed_data(decryptor.encrypt(b"".join(server.encode(p) for p in packets)))
    assert [await codec.read_packet(reader) for _ in packets] == packets


def test_aes_ctr_matches_telethon_pyaes_implementation() -> None:
    from telethon.crypto import AESModeCTR

    key, iv, data = os.urandom(32), os.urandom(16), os.urandom(5000)
    ours = proto.aes_ctr(key, iv)
    theirs = AESModeCTR(key, iv)
    # Streaming: uneven pieces must continue the same key stream.
    assert ours(data[:17]) + ours(data[17:]) == theirs.encrypt(data)


def test_tcpfull_rejects_bad_checksum_and_sequence() -> None:
    client = proto.ClientTransport(proto.Framing.FULL)
    good = client.encode(b"\x00" * 24)
    corrupted = bytearray(good)
    corrupted[10] ^= 1
    with pytest.raises(proto.TransportError, match="checksum"):
        proto.ServerTransport().feed(bytes(corrupted))

    client = proto.ClientTransport(proto.Framing.FULL)
    first, _lost, third = (client.encode(bytes([i]) * 24) for i in range(3))
    with pytest.raises(proto.TransportError, match="sequence"):
        proto.ServerTransport().feed(first + third)


def test_oversized_length_is_a_transport_error() -> None:
    with pytest.raises(proto.TransportError):
        proto.ServerTransport().feed(b"\xee\xee\xee\xee" + struct.pack("<i", proto.MAX_PACKET + 4))


def test_padded_intermediate_strips_up_to_15_bytes_of_client_padding() -> None:
    packet = bytes(8) + struct.pack("<qi", 4, 8) + os.urandom(8)  # plain message, 8-byte body
    encrypted = os.urandom(8 + 16 + 64)
    server = proto.ServerTransport()
    wire = b"\xdd\xdd\xdd\xdd"
    for p in (packet, encrypted):
        padded = p + os.urandom(15)
        wire += struct.pack("<i", len(padded)) + padded
    assert server.feed(wire) == [packet, encrypted]


# --- message ids --------------------------------------------------------------------------------


def test_server_msg_ids_are_odd_typed_and_strictly_increasing_even_with_a_frozen_clock() -> None:
    frozen = 1_700_000_000.25
    clock = proto.MsgIdClock(now=lambda: frozen)
    ids = [clock.next(response=i % 3 != 0) for i in range(1000)]
    assert all(b > a for a, b in itertools.pairwise(ids))
    assert all(msg_id % 4 == (1 if i % 3 else 3) for i, msg_id in enumerate(ids))
    assert {msg_id >> 32 for msg_id in ids} == {int(frozen)}


def test_server_msg_ids_follow_the_wall_clock() -> None:
    msg_id = proto.MsgIdClock().next(response=True)
    assert abs((msg_id >> 32) - time.time()) < 2


def test_client_msg_id_checks() -> None:
    now = 1_700_000_000.0
    good = int(now) << 32
    assert proto.check_client_msg_id(good, now) is None
    assert proto.check_client_msg_id(good + 2, now) == 18
    assert proto.check_client_msg_id(good - (301 << 32), now) == 16
    assert proto.check_client_msg_id(good + (31 << 32), now) == 17


def test_seq_no_counts_content_related_messages() -> None:
    seq = proto.SeqNo()
    assert [seq.next(True), seq.next(False), seq.next(True), seq.next(True), seq.next(False)] == [1, 2, 3, 5, 6]


# --- encryption ---------------------------------------------------------------------------------


def make_state(key: bytes) -> MTProtoState:
    state = MTProtoState(AuthKey(key), LOGGERS)
    state.salt = 1234
    return state


def test_decrypts_what_telethon_encrypts() -> None:
    key = os.urandom(256)
    state = make_state(key)
    buffer = io.BytesIO()
    ping = bytes(functions.PingRequest(ping_id=77))
    msg_id = state.write_data_as_message(buffer, ping, content_related=True)
    packet = state.encrypt_message_data(buffer.getvalue())

    assert struct.unpack("<q", packet[:8])[0] == proto.auth_key_id(key)
    envelope = proto.parse_plaintext(proto.decrypt_message(key, packet))
    assert (envelope.salt, envelope.session_id) == (1234, state.id)
    assert envelope.message == proto.Message(msg_id, 1, ping)
    assert envelope.message.content_related


def test_telethon_decrypts_what_the_server_encrypts() -> None:
    key = os.urandom(256)
    state = make_state(key)
    clock = proto.MsgIdClock()
    msg_id = clock.next(response=True)
    body = proto.pong(555, 77)
    packet = proto.encrypt_message(key, [proto.plaintext_header(99, state.id, msg_id, 1, len(body)), body])
    message = state.decrypt_message_data(packet)
    assert message.msg_id == msg_id
    assert isinstance(message.obj, types.Pong) and (message.obj.msg_id, message.obj.ping_id) == (555, 77)


def test_tampered_packet_is_rejected() -> None:
    key = os.urandom(256)
    state = make_state(key)
    packet = bytearray(state.encrypt_message_data(bytes(32)))
    packet[-1] ^= 1
    with pytest.raises(proto.SecurityError):
        proto.decrypt_message(key, bytes(packet))
    with pytest.raises(proto.SecurityError):
        proto.decrypt_message(os.urandom(256), bytes(packet[:-1]) + b"\x00")


def test_short_auth_key_form_works_both_ways() -> None:
    # Telethon keeps g^ab in its shortest form: a 255-byte key must work like any other.
    key = b"\x01" + os.urandom(254)
    state = make_state(key)
    body = proto.msgs_ack([4, 8])
    msg_id = proto.MsgIdClock().next(response=True)
    packet = proto.encrypt_message(key, [proto.plaintext_header(1, state.id, msg_id, 0, len(body)), body])
    assert isinstance(state.decrypt_message_data(packet).obj, types.MsgsAck)


# --- containers, gzip and service messages -----------------------------------------------------


def test_unpacks_telethon_containers_and_gzip() -> None:
    state = make_state(os.urandom(256))
    buffer = io.BytesIO()
    big = bytes(functions.help.GetDeepLinkInfoRequest(path="x" * 2000))  # Telethon gzips bodies > 512 bytes
    ids = [
        state.write_data_as_message(buffer, bytes(functions.PingRequest(1)), True),
        state.write_data_as_message(buffer, big, True),
    ]
    container = struct.pack("<Ii", proto.MSG_CONTAINER_ID, 2) + buffer.getvalue()
    inner = proto.unpack_container(container)
    assert [m.msg_id for m in inner] == ids
    assert proto.constructor_of(inner[1].body) == proto.GZIP_PACKED_ID
    assert proto.unpack_gzip(inner[1].body) == big
    assert proto.unpack_gzip(bytes(GzipPacked(b"abcd" * 10))) == b"abcd" * 10
    with pytest.raises(proto.SecurityError):
        proto.unpack_container(container[:-3])


def read(data: bytes) -> TLObject:
    with BinaryReader(data) as reader:
        result: TLObject = reader.tgread_object()
    return result


def test_service_messages_parse_with_telethon() -> None:
    created = read(proto.new_session_created(1, 2, 3))
    assert isinstance(created, types.NewSessionCreated) and created.server_salt == 3
    salt = read(proto.bad_server_salt(10, 3, -5))
    assert isinstance(salt, types.BadServerSalt) and (salt.bad_msg_id, salt.error_code, salt.new_server_salt) == (
        10,
        48,
        -5,
    )
    bad = read(proto.bad_msg_notification(12, 1, 16))
    assert isinstance(bad, types.BadMsgNotification) and bad.error_code == 16
    ack = read(proto.msgs_ack([1, 2, 3]))
    assert isinstance(ack, types.MsgsAck) and ack.msg_ids == [1, 2, 3]


def test_rpc_result_and_error_parse_with_telethon() -> None:
    result_bytes = b"".join(proto.rpc_result(42, bytes(types.help.DeepLinkInfoEmpty())))
    with BinaryReader(result_bytes[4:]) as reader:
        result = RpcResult.from_reader(reader)
    assert result.req_msg_id == 42 and result.error is None
    assert isinstance(read(result.body), types.help.DeepLinkInfoEmpty)

    error_bytes = b"".join(proto.rpc_result(43, proto.rpc_error(420, "FLOOD_WAIT_3")))
    with BinaryReader(error_bytes[4:]) as reader:
        error = RpcResult.from_reader(reader).error
    assert (error.error_code, error.error_message) == (420, "FLOOD_WAIT_3")


@given(st.binary(max_size=600))
def test_tl_bytes_matches_telethon(data: bytes) -> None:
    encoded = proto.tl_bytes(data)
    assert encoded == TLObject.serialize_bytes(data)
    assert proto.read_tl_bytes(encoded, 0) == (data, len(encoded))


# --- auth key exchange --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_key(request: pytest.FixtureRequest) -> ServerKey:
    return cached_server_key(request)


def cached_server_key(request: pytest.FixtureRequest) -> ServerKey:
    """Generating 2048-bit RSA in pure Python takes seconds: keep one test key in pytest's cache."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    pem = cache.get("telepi/sandbox/test_rsa_pem", None) if cache is not None else None
    if pem:
        return ServerKey.from_pem(pem.encode())
    key = ServerKey.generate()
    if cache is not None:
        cache.set("telepi/sandbox/test_rsa_pem", key.private_pem().decode())
    return key


class _LoopbackSender:
    """Feeds Telethon's authenticator straight into the server's state machine, through bytes."""

    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake

    async def send(self, request: TLObject) -> TLObject:
        return read(bytes(self.handshake.handle(read(bytes(request)))))


async def test_telethon_authenticator_completes_the_exchange(server_key: ServerKey) -> None:
    from telethon.crypto import rsa as telethon_rsa

    telethon_rsa.add_key(server_key.public_pem, old=False)
    for _ in range(3):
        a = dhkit.plain_server_exponent(_)
        handshake = Handshake(server_key, exponent=lambda a=a: a)  # type: ignore[misc]
        b = dhkit.client_exponent(a, key_zero=False, g_b_zero=False)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(authenticator, "os", dhkit.os_with_urandom(dhkit.urandom_once(b)))
            auth_key, time_offset = await authenticator.do_authentication(_LoopbackSender(handshake))
        assert handshake.auth_key == auth_key.key == dhkit.auth_key(a, b)
        assert len(auth_key.key) == 256
        assert abs(time_offset) <= 1


@pytest.mark.parametrize("zero", ["g_a", "g_b"])
async def test_a_dh_value_with_a_leading_zero_byte_is_sent_and_read_in_full(server_key: ServerKey, zero: str) -> None:
    from telethon.crypto import rsa as telethon_rsa

    telethon_rsa.add_key(server_key.public_pem, old=False)
    a = dhkit.SERVER_G_A_ZERO(0) if zero == "g_a" else dhkit.plain_server_exponent(0)
    b = dhkit.client_exponent(a, key_zero=False, g_b_zero=zero == "g_b")
    handshake = Handshake(server_key, exponent=lambda: a)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(authenticator, "os", dhkit.os_with_urandom(dhkit.urandom_once(b)))
        auth_key, _ = await authenticator.do_authentication(_LoopbackSender(handshake))
    assert handshake.auth_key == auth_key.key == dhkit.auth_key(a, b)


async def test_an_auth_key_with_a_leading_zero_byte_keeps_all_256_bytes(server_key: ServerKey) -> None:
    # The spec's key is 256 bytes (core.telegram.org/mtproto/auth_key). Telethon 1.45 strips the zero,
    # so its check of dh_gen_ok fails and it starts again, as it does against Telegram.
    from telethon.crypto import rsa as telethon_rsa
    from telethon.errors import SecurityError

    telethon_rsa.add_key(server_key.public_pem, old=False)
    a = dhkit.plain_server_exponent(0)
    b = dhkit.client_exponent(a, key_zero=True, g_b_zero=False)
    handshake = Handshake(server_key, exponent=lambda: a)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(authenticator, "os", dhkit.os_with_urandom(dhkit.urandom_once(b)))
        with pytest.raises(SecurityError, match="new nonce hash"):
            await authenticator.do_authentication(_LoopbackSender(handshake))
    assert handshake.auth_key == dhkit.auth_key(a, b)
    assert len(handshake.auth_key) == 256 and handshake.auth_key[0] == 0


def rsa_encrypt(key: ServerKey, block: bytes) -> bytes:
    """What Telethon sends: textbook RSA of a 255-byte block."""
    return pow(int.from_bytes(block, "big"), key.private.e, key.private.n).to_bytes(256, "big")


async def test_exchange_rejects_tampered_rsa_data(server_key: ServerKey) -> None:
    handshake = Handshake(server_key)
    res_pq = handshake.handle(functions.ReqPqMultiRequest(nonce=5))
    assert isinstance(res_pq, types.ResPQ) and res_pq.server_public_key_fingerprints == [server_key.fingerprint]

    def req_dh(encrypted: bytes) -> TLObject:
        return functions.ReqDHParamsRequest(
            nonce=5,
            server_nonce=res_pq.server_nonce,
            p=b"\x01",
            q=b"\x01",
            public_key_fingerprint=server_key.fingerprint,
            encrypted_data=encrypted,
        )

    inner = bytes(types.PQInnerData(res_pq.pq, b"\x01", b"\x01", 5, res_pq.server_nonce, 77))
    padding = os.urandom(235 - len(inner))
    with pytest.raises(HandshakeError, match="hash mismatch"):
        handshake.handle(req_dh(rsa_encrypt(server_key, bytes(20) + inner + padding)))
    wrong_nonce = bytes(types.PQInnerData(res_pq.pq, b"\x01", b"\x01", 6, res_pq.server_nonce, 77))
    block = hashlib.sha1(wrong_nonce).digest() + wrong_nonce + padding
    with pytest.raises(HandshakeError, match="does not match"):
        handshake.handle(req_dh(rsa_encrypt(server_key, block)))
    for _ in range(20):  # random bytes: a non-zero top byte, unparsable data or a wrong hash
        with pytest.raises(HandshakeError):
            handshake.handle(req_dh(os.urandom(255)))
    with pytest.raises(HandshakeError):
        Handshake(server_key).handle(functions.PingRequest(1))


def test_public_key_is_pkcs1_and_accepted_by_telethon(server_key: ServerKey) -> None:
    from telethon.crypto import rsa as telethon_rsa

    assert server_key.public_pem.startswith("-----BEGIN RSA PUBLIC KEY-----")
    telethon_rsa.add_key(server_key.public_pem, old=False)
    assert telethon_rsa.encrypt(server_key.fingerprint, b"hello") is not None
    assert ServerKey.from_pem(server_key.private_pem()).fingerprint == server_key.fingerprint


def test_dh_parameters_and_shortest_byte_form() -> None:
    assert DH_PRIME.bit_length() == 2048 and DH_PRIME % 3 == 2 and DH_G == 3  # g = 3 needs p mod 3 = 2
    assert to_bytes(0x00FF) == b"\xff"
    assert len(to_bytes(1 << (254 * 8))) == 255  # a g^ab with a leading zero byte


def test_unknown_constructors_are_answered_as_telegram_does() -> None:
    from telethon.errors import TypeNotFoundError

    from telepi.sandbox.wire.connection import unknown_constructor_error

    def answer(body: bytes) -> tuple[int, str]:
        with pytest.raises(TypeNotFoundError) as info, BinaryReader(body) as reader:
            reader.tgread_object()
        error = read(unknown_constructor_error(body, info.value))
        assert isinstance(error, types.RpcError)
        return error.error_code, error.error_message

    unknown = b"test"  # 0x74736574 = 1953719668, in no layer
    assert answer(unknown + bytes(8)) == (400, "INPUT_METHOD_INVALID_1953719668_0")
    wrapped = bytes(functions.InvokeWithLayerRequest(229, functions.help.GetConfigRequest()))
    assert answer(wrapped[:-4] + unknown) == (400, "INPUT_METHOD_INVALID_1953719668_0")
    history = bytes(functions.messages.GetHistoryRequest(types.InputPeerSelf(), 0, None, 0, 1, 0, 0, 0))
    peer = struct.pack("<I", types.InputPeerSelf.CONSTRUCTOR_ID)
    assert answer(history.replace(peer, unknown)) == (400, "INPUT_CONSTRUCTOR_INVALID")
