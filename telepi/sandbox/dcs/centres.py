"""Several data centres sharing one world, as Telegram's are (core.telegram.org/api/datacenter).

Each DC is its own listening port with its own auth keys (a key made on one DC is unknown to the
others); the world and the file store are one. What this module decides:

- an account lives on its home DC: logging in elsewhere answers PHONE_MIGRATE_X / USER_MIGRATE_X, and
  a logged-in key on another DC may only move files (anything else answers USER_MIGRATE_X);
- a file is served by the DC it lives on (FILE_MIGRATE_X elsewhere; ``rpc/media.py``); world files are
  spread over the DCs by their seed, uploads land on the DC their parts were saved on;
- ``auth.exportAuthorization`` on the home DC gives bytes valid once, for that user on the DC named;
  ``auth.importAuthorization`` there binds the calling key to the user (counted per account and DC);
- updates are pushed from the account's home DC only.
"""

from __future__ import annotations

import secrets
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.dispatch import Gate, RpcError, UpdateSink

DC_IDS = (1, 2, 3, 4, 5)  # Telegram's production DCs
HOME_DC = 2  # where accounts live unless their world entry says otherwise

# What a key authorized by importAuthorization may call on a DC that is not the account's home: the
# file methods an exported authorization exists for (core.telegram.org/api/datacenter, "File DCs"),
# and the session plumbing every new connection sends first.
FOREIGN_ALLOWED = frozenset(
    {
        "GetFileRequest",
        "SaveFilePartRequest",
        "SaveBigFilePartRequest",
        "GetFileHashesRequest",
        "GetCdnFileRequest",
        "GetCdnConfigRequest",
        "ReuploadCdnFileRequest",
        "GetCdnFileHashesRequest",
        "GetConfigRequest",
        "GetNearestDcRequest",
        "ImportAuthorizationRequest",
        "ExportAuthorizationRequest",
        "LogOutRequest",
    }
)


def spread(seed: str) -> int:
    """The DC a world file's bytes live on when its spec names none: deterministic from its seed, so
    a generated world puts most of its media on DCs other than the accounts' home (as in big channels)."""
    return DC_IDS[zlib.crc32(seed.encode()) % len(DC_IDS)]


def upload_owner(user_id: int, dc_id: int) -> int:
    """The FileStore owner of an upload: parts saved on one DC are not seen on another."""
    return user_id * 16 + dc_id


@dataclass
class DataCentres:
    """The DCs running and the exported authorizations between them (in memory, like login codes)."""

    ids: tuple[int, ...] = DC_IDS
    exports: Counter[tuple[int, int]] = field(default_factory=Counter)  # (user, target DC) -> exports
    imports: Counter[tuple[int, int]] = field(default_factory=Counter)
    _tokens: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # bytes -> (user, target DC)

    def export(self, user_id: int, from_dc: int, to_dc: int) -> bytes:
        if to_dc not in self.ids or to_dc == from_dc:
            raise RpcError(400, "DC_ID_INVALID")
        token = secrets.token_bytes(128)
        self._tokens[token] = (user_id, to_dc)
        self.exports[(user_id, to_dc)] += 1
        return token

    def import_(self, user_id: int, token: bytes, dc_id: int) -> None:
        """Valid once, for the user and the DC it was exported for (core.telegram.org/api/datacenter)."""
        if self._tokens.get(token) != (user_id, dc_id):
            raise RpcError(400, "AUTH_BYTES_INVALID")
        del self._tokens[token]
        self.imports[(user_id, dc_id)] += 1

    def exports_of(self, user_id: int) -> dict[int, int]:
        """Exports per target DC of one account."""
        return {dc: n for (user, dc), n in self.exports.items() if user == user_id}


def dc_gate(dc_id: int, home_of: Callable[[int], int], then: Gate | None = None) -> Gate:
    """The gate of DC ``dc_id``: a logged-in key on a DC that is not its account's home may only move
    files (USER_MIGRATE_X names the home DC); ``then`` (the account's standing) is asked first."""

    def gate(method: str, user_id: int | None, key_id: int) -> RpcError | None:
        if then is not None and (error := then(method, user_id, key_id)) is not None:
            return error
        if user_id is not None and method not in FOREIGN_ALLOWED:
            home = home_of(user_id)
            if home != dc_id:
                return RpcError(303, f"USER_MIGRATE_{home}")
        return None

    return gate


class HomeSink:
    """Pushes an account's updates from its home DC only (the DC its main connection is on)."""

    def __init__(self, sinks: Mapping[int, UpdateSink], home_of: Callable[[int], int]) -> None:
        self._sinks = sinks
        self._home_of = home_of

    def push(self, user_id: int, updates: TLObject, *, except_session: tuple[int, int] | None = None) -> None:
        sink = self._sinks.get(self._home_of(user_id))
        if sink is not None:
            sink.push(user_id, updates, except_session=except_session)

    def push_to_key(self, auth_key_id: int, updates: TLObject) -> None:
        for sink in self._sinks.values():  # a key id lives on one DC only
            sink.push_to_key(auth_key_id, updates)
