"""Login as Telegram does it: ``auth.sendCode`` → ``auth.signIn`` → (2FA) ``account.getPassword`` →
``auth.checkPassword`` with SRP (core.telegram.org/api/srp), then ``auth.logOut``; or by QR code
(core.telegram.org/api/qr-login): ``auth.exportLoginToken`` → a logged-in device calls
``auth.acceptLoginToken`` → ``updateLoginToken`` to the waiting key → ``auth.exportLoginToken`` again →
``auth.loginTokenSuccess`` (or SESSION_PASSWORD_NEEDED, then the same 2FA check).

The server side of SRP: with ``x = PH2(password, salt1, salt2)`` and ``v = g^x``, the server sends
``B = k·v + g^b``; the client answers ``A`` and ``M1 = H(H(p) xor H(g) | H(salt1) | H(salt2) | A | B | K)``
where ``K = H(S)`` and the server computes ``S = (A·v^u)^b`` with ``u = H(A | B)``. Passwords and codes
are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from telethon import password as telethon_password
from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env, bad
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError
from telepi.sandbox.world.records import User

# Telegram's 2048-bit safe prime with g = 3 (Telethon accepts it without factorizing).
SRP_PRIME = bytes.fromhex(
    "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f"
    "48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c37"
    "20fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f64"
    "2477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4"
    "a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754"
    "fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4"
    "e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f"
    "0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b"
)
SRP_G = 3
_P = int.from_bytes(SRP_PRIME, "big")


def _h(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _pad(value: int) -> bytes:
    return value.to_bytes(256, "big")


@dataclass(frozen=True)
class _SrpSession:
    user_id: int
    b: int
    g_b: bytes  # B, padded


class Srp:
    """Per-account SRP parameters (salts derived from the world secret) and open SRP sessions."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._verifiers: dict[tuple[int, str], int] = {}
        self._sessions: dict[int, _SrpSession] = {}

    def algo(self, user_id: int) -> TLObject:
        salt1 = hmac.new(self._secret, b"srp-salt1:%d" % user_id, hashlib.sha256).digest()
        salt2 = hmac.new(self._secret, b"srp-salt2:%d" % user_id, hashlib.sha256).digest()[:16]
        return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=salt1, salt2=salt2, g=SRP_G, p=SRP_PRIME
        )

    def _verifier(self, user: User) -> int:
        assert user.password is not None
        key = (user.id, user.password)
        if key not in self._verifiers:  # PBKDF2 with 100000 rounds: compute once per password
            x = int.from_bytes(telethon_password.compute_hash(self.algo(user.id), user.password), "big")
            self._verifiers[key] = pow(SRP_G, x, _P)
        return self._verifiers[key]

    def begin(self, user: User) -> tuple[int, bytes]:
        """(srp_id, B) for a new check of ``user``'s password."""
        v = self._verifier(user)
        k = int.from_bytes(_h(SRP_PRIME, _pad(SRP_G)), "big")
        while True:
            b = int.from_bytes(secrets.token_bytes(256), "big") % _P
            g_b = (k * v + pow(SRP_G, b, _P)) % _P
            if telethon_password.is_good_mod_exp_first(g_b, _P) and telethon_password.is_good_large(g_b, _P):
                break
        srp_id = secrets.randbits(63)
        self._sessions[srp_id] = _SrpSession(user.id, b, _pad(g_b))
        if len(self._sessions) > 1000:
            self._sessions.pop(next(iter(self._sessions)))
        return srp_id, _pad(g_b)

    def check(self, user: User, srp_id: int, a_bytes: bytes, m1: bytes) -> bool:
        session = self._sessions.pop(srp_id, None)
        if session is None or session.user_id != user.id:
            raise bad("SRP_ID_INVALID")
        a = int.from_bytes(a_bytes, "big")
        if not 0 < a < _P:
            return False
        algo = self.algo(user.id)
        v = self._verifier(user)
        u = int.from_bytes(_h(_pad(a), session.g_b), "big")
        s = pow(a * pow(v, u, _P) % _P, session.b, _P)
        k = _h(_pad(s))
        expected = _h(
            bytes(x ^ y for x, y in zip(_h(SRP_PRIME), _h(_pad(SRP_G)), strict=True)),
            _h(algo.salt1),
            _h(algo.salt2),
            _pad(a),
            session.g_b,
            k,
        )
        return hmac.compare_digest(expected, m1)


def register(registry: Registry, env: Env) -> None:
    world = env.world
    srp = Srp(world.secret)
    code_hashes: dict[str, str] = env.login.setdefault("code_hashes", {})
    pending_2fa: dict[int, int] = env.login.setdefault("pending_2fa", {})  # auth key → user awaiting 2FA

    def authorized(ctx: RpcContext, user: User) -> TLObject:
        pending_2fa.pop(ctx.auth_key_id, None)
        ctx.bind_user(user.id)
        return types.auth.Authorization(user=env.render.user(user, user.id))

    @registry.register(functions.auth.SendCodeRequest)
    async def send_code(ctx: RpcContext, request: Any) -> TLObject:
        user = world.user_by_phone(request.phone_number)
        if user is None or not user.code:
            raise bad("PHONE_NUMBER_INVALID")
        if user.dc != ctx.dc_id:  # the phone is registered on another DC (core.telegram.org/api/datacenter)
            raise RpcError(303, f"PHONE_MIGRATE_{user.dc}")
        code_hash = secrets.token_hex(8)
        code_hashes[user.phone or ""] = code_hash
        return types.auth.SentCode(type=types.auth.SentCodeTypeApp(length=len(user.code)), phone_code_hash=code_hash)

    @registry.register(functions.auth.ResendCodeRequest)
    async def resend_code(ctx: RpcContext, request: Any) -> TLObject:
        return await send_code(ctx, request)

    @registry.register(functions.auth.SignInRequest)
    async def sign_in(ctx: RpcContext, request: Any) -> TLObject:
        user = world.user_by_phone(request.phone_number)
        if user is None:
            raise bad("PHONE_NUMBER_INVALID")
        if user.dc != ctx.dc_id:
            raise RpcError(303, f"USER_MIGRATE_{user.dc}")
        if not request.phone_code_hash:
            raise bad("PHONE_CODE_HASH_EMPTY")
        if code_hashes.get(user.phone or "") != request.phone_code_hash:
            raise bad("PHONE_CODE_EXPIRED")
        if not request.phone_code:
            raise bad("PHONE_CODE_EMPTY")
        if not hmac.compare_digest(str(request.phone_code), str(user.code)):
            raise bad("PHONE_CODE_INVALID")
        code_hashes.pop(user.phone or "", None)
        if user.password:
            pending_2fa[ctx.auth_key_id] = user.id
            raise RpcError(401, "SESSION_PASSWORD_NEEDED")
        return authorized(ctx, user)

    def password_owner(ctx: RpcContext) -> User:
        user_id = ctx.user_id if ctx.user_id is not None else pending_2fa.get(ctx.auth_key_id)
        if user_id is None:
            raise RpcError(401, "AUTH_KEY_UNREGISTERED")
        return world.user(user_id)

    @registry.register(functions.account.GetPasswordRequest)
    async def get_password(ctx: RpcContext, request: Any) -> TLObject:
        user = password_owner(ctx)
        common: dict[str, Any] = {
            "new_algo": srp.algo(user.id),
            "new_secure_algo": types.SecurePasswordKdfAlgoUnknown(),
            "secure_random": secrets.token_bytes(32),
        }
        if not user.password:
            return types.account.Password(has_password=False, **common)
        srp_id, g_b = srp.begin(user)
        return types.account.Password(
            has_password=True, current_algo=srp.algo(user.id), srp_B=g_b, srp_id=srp_id, **common
        )

    @registry.register(functions.auth.CheckPasswordRequest)
    async def check_password(ctx: RpcContext, request: Any) -> TLObject:
        user_id = pending_2fa.get(ctx.auth_key_id)
        if user_id is None:
            raise bad("PASSWORD_HASH_INVALID")
        user = world.user(user_id)
        check = request.password
        if not isinstance(check, types.InputCheckPasswordSRP) or not user.password:
            raise bad("PASSWORD_HASH_INVALID")
        if not srp.check(user, int(check.srp_id), bytes(check.A), bytes(check.M1)):
            raise bad("PASSWORD_HASH_INVALID")
        return authorized(ctx, user)

    # QR login tokens: token -> (the exporting auth key, expiry, the account that accepted it or None).
    qr_tokens: dict[bytes, list[Any]] = env.login.setdefault("qr_tokens", {})

    @registry.register(functions.auth.ExportLoginTokenRequest)
    async def export_login_token(ctx: RpcContext, request: Any) -> TLObject:
        now = time.time()
        for token, (key_id, expires, accepted) in list(qr_tokens.items()):
            if expires < now and accepted is None:
                del qr_tokens[token]
            elif key_id == ctx.auth_key_id and accepted is not None:
                del qr_tokens[token]
                user = world.user(accepted)
                if user.password:  # "auth.exportLoginToken … may return SESSION_PASSWORD_NEEDED" (qr-login)
                    pending_2fa[ctx.auth_key_id] = user.id
                    raise RpcError(401, "SESSION_PASSWORD_NEEDED")
                return types.auth.LoginTokenSuccess(authorization=authorized(ctx, user))
        token = secrets.token_bytes(32)
        # The token lasts 30 seconds; the client exports a new one to refresh the QR code (qr-login).
        qr_tokens[token] = [ctx.auth_key_id, now + 30, None]
        return types.auth.LoginToken(expires=int(now + 30), token=token)

    @registry.register(functions.auth.AcceptLoginTokenRequest)
    async def accept_login_token(ctx: RpcContext, request: Any) -> TLObject:
        user_id = ctx.require_user()  # only a logged-in device can scan the code
        entry = qr_tokens.get(bytes(request.token))
        if entry is None:
            raise bad("AUTH_TOKEN_INVALID")
        key_id, expires, accepted = entry
        if accepted is not None:
            raise bad("AUTH_TOKEN_ALREADY_ACCEPTED")
        if expires < time.time():
            raise bad("AUTH_TOKEN_EXPIRED")
        entry[2] = user_id
        ctx.sink.push_to_key(key_id, types.UpdateShort(update=types.UpdateLoginToken(), date=int(time.time())))
        now = int(time.time())
        return types.Authorization(
            hash=secrets.randbits(63),
            device_model="telepi",
            platform="Linux",
            system_version="",
            api_id=0,
            app_name="telepi",
            app_version="",
            date_created=now,
            date_active=now,
            ip="127.0.0.1",
            country="",
            region="",
        )

    @registry.register(functions.auth.LogOutRequest)
    async def log_out(ctx: RpcContext, request: Any) -> TLObject:
        ctx.bind_user(None)
        return types.auth.LoggedOut()
