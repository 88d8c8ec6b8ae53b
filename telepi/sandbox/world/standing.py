"""What Telegram does to an account from outside: logins revoked, keys forgotten, bans, freezes.

Each is an account-level answer on *every* call, never about one message, which is why a cloner must
stop the account rather than skip what it was sending (https://core.telegram.org/api/errors):

- revoked: the user tapped "terminate other sessions" or Telegram logged a suspicious session out
  (Telethon #4051). The auth key is unbound from the account; its calls answer 401 ``SESSION_REVOKED``
  (or ``AUTH_KEY_UNREGISTERED``, what Telegram answers a key that was logged out) until a new login.
- forgotten: the server no longer knows the auth key at all; the transport answers -404 and Telethon
  disconnects with ``AuthKeyNotFound`` (https://core.telegram.org/mtproto/mtproto-transports#transport-errors).
- banned / deleted: 401 ``USER_DEACTIVATED_BAN`` / ``USER_DEACTIVATED`` on every call.
- frozen (2025, https://core.telegram.org/api/auth#frozen-accounts): most methods answer 420
  ``FROZEN_METHOD_INVALID``; only reading the configuration and the account's own state still works.

The standing lives in the world (it survives a sandbox restart, as a ban does); revoked keys are kept
by id so that their next call says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.wire.keystore import KeyStore
from telepi.sandbox.world.world import World

Standing = Literal["active", "banned", "deleted", "frozen"]
STANDINGS: tuple[Standing, ...] = ("active", "banned", "deleted", "frozen")
_BLOCKED: dict[str, RpcError] = {
    "banned": RpcError(401, "USER_DEACTIVATED_BAN"),
    "deleted": RpcError(401, "USER_DEACTIVATED"),
}
# What a frozen account may still call (configuration, its own state, updates); everything else is refused.
FROZEN_ALLOWED = frozenset(
    {
        "GetConfigRequest",
        "GetAppConfigRequest",
        "GetNearestDcRequest",
        "GetStateRequest",
        "GetDifferenceRequest",
        "GetFullUserRequest",
        "GetUsersRequest",
        "GetPasswordRequest",
    }
)
# What a key that is not logged in may still call (https://core.telegram.org/api/auth): the configuration,
# and logging in again.
_WITHOUT_LOGIN = frozenset(
    {
        "GetConfigRequest",
        "GetNearestDcRequest",
        "GetAppConfigRequest",
        "SendCodeRequest",
        "SignInRequest",
        "CheckPasswordRequest",
        "GetPasswordRequest",
        "ExportLoginTokenRequest",  # QR login (https://core.telegram.org/api/qr-login)
    }
)


class AccountStanding:
    """Decides, before a request runs, whether the account's standing refuses it."""

    def __init__(self, world: World, keys: KeyStore | Sequence[KeyStore]) -> None:
        self.world = world
        # Every DC's keys: revoking or forgetting an account reaches its exported authorizations too.
        self.stores = [keys] if isinstance(keys, KeyStore) else list(keys)
        self._known: dict[int, Standing] = {}  # read once per account: this is asked on every request

    def standing(self, user_id: int) -> Standing:
        if user_id not in self._known:
            value = self.world.get_setting(f"standing:{user_id}", "active")
            self._known[user_id] = value if value in STANDINGS else "active"
        return self._known[user_id]

    def set_standing(self, user_id: int, standing: Standing) -> None:
        self.world.set_setting(f"standing:{user_id}", standing)
        self._known[user_id] = standing

    def revoke(self, user_id: int, error: str = "SESSION_REVOKED") -> int:
        """Log every auth key of the account out; returns how many there were."""
        revoked = self._revoked()
        count = 0
        for store in self.stores:
            for key_id in store.keys_of(user_id):
                store.bind(key_id, None)
                revoked[str(key_id)] = error
                count += 1
        self.world.set_setting("revoked_keys", json.dumps(revoked))
        return count

    def forget(self, user_id: int) -> int:
        """Delete the account's auth keys from the server: their next packet gets the -404 transport error."""
        count = 0
        for store in self.stores:
            for key_id in store.keys_of(user_id):
                store.delete(key_id)
                count += 1
        return count

    def check(self, method: str, user_id: int | None, key_id: int) -> RpcError | None:
        """The error the account's standing answers instead of running ``method``, or None."""
        if user_id is None:
            error = self._revoked().get(str(key_id))
            return RpcError(401, error) if error is not None and method not in _WITHOUT_LOGIN else None
        standing = self.standing(user_id)
        if standing in _BLOCKED:
            return _BLOCKED[standing]
        if standing == "frozen" and method not in FROZEN_ALLOWED:
            return RpcError(420, "FROZEN_METHOD_INVALID")
        return None

    def _revoked(self) -> dict[str, str]:
        loaded = json.loads(self.world.get_setting("revoked_keys", "{}") or "{}")
        return loaded if isinstance(loaded, dict) else {}
