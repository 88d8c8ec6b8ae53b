"""The auth-key exchange whose g_a, g_b or auth key starts with a zero byte, made deterministic.

Telegram meets it on ~1 exchange in 256. The server's exponent is fixed through ``Faults.dh_exponents``;
the client's is fixed by handing its ``urandom(256)`` chosen bytes once (test-only: the client's code is
unmodified, only its randomness is chosen).
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from telepi.sandbox.wire.handshake import _SAFETY, DH_G, DH_PRIME, dh_bytes, leading_zero_exponent

ZERO_BOUND = 1 << 2040  # a 256-byte value below this starts with a zero byte

SERVER_G_A_ZERO = functools.cache(leading_zero_exponent)


@functools.cache
def plain_server_exponent(seed: int = 0) -> int:
    """A server exponent whose g_a has no leading zero byte (so only the case under test has one)."""
    rng = random.Random(seed)
    while True:
        a = rng.getrandbits(160)
        if 1 << 2040 <= pow(DH_G, a, DH_PRIME) <= DH_PRIME - _SAFETY:
            return a


@functools.cache
def client_exponent(server_a: int, *, key_zero: bool, g_b_zero: bool, seed: int = 1) -> int:
    """A client exponent b with a valid g_b: whether g_b and g^ab start with a zero byte as asked."""
    g_a = pow(DH_G, server_a, DH_PRIME)
    rng = random.Random(seed)
    while True:
        b = rng.getrandbits(160)  # short exponents keep the ~256-try searches fast
        g_b = pow(DH_G, b, DH_PRIME)
        if not _SAFETY <= g_b <= DH_PRIME - _SAFETY or (g_b < ZERO_BOUND) != g_b_zero:
            continue
        if (pow(g_a, b, DH_PRIME) < ZERO_BOUND) == key_zero:
            return b


def auth_key(server_a: int, client_b: int) -> bytes:
    return dh_bytes(pow(DH_G, server_a * client_b, DH_PRIME))


def urandom_once(b: int, real: Callable[[int], bytes] = os.urandom) -> Callable[[int], bytes]:
    """``os.urandom`` that answers the first 256-byte request (the DH exponent) with ``b``."""
    pending = [b.to_bytes(256, "big")]

    def urandom(n: int) -> bytes:
        if n == 256 and pending:
            return pending.pop()
        return real(n)

    return urandom


def os_with_urandom(urandom: Callable[[int], bytes]) -> Any:
    """A stand-in for a module's ``os`` global that only needs ``urandom`` (Telethon's authenticator)."""
    return SimpleNamespace(urandom=urandom)
