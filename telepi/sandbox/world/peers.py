"""Telegram's peer ids as Telethon marks them: a user is its id, a basic group ``-id`` and a channel
(broadcast, supergroup, forum) ``-(10**12 + id)`` (https://core.telegram.org/api/bots/ids)."""

from __future__ import annotations

CHANNEL_OFFSET = 10**12


def channel_peer(raw_id: int) -> int:
    return -(CHANNEL_OFFSET + raw_id)


def chat_peer(raw_id: int) -> int:
    return -raw_id


def peer_kind(peer: int) -> str:
    """``user``, ``chat`` (basic group) or ``channel`` for a marked id."""
    if peer > 0:
        return "user"
    return "channel" if peer <= -CHANNEL_OFFSET else "chat"


def raw_id(peer: int) -> int:
    """The unmarked id (as in PeerUser/PeerChat/PeerChannel)."""
    if peer > 0:
        return peer
    return -peer - CHANNEL_OFFSET if peer <= -CHANNEL_OFFSET else -peer


def is_channel(peer: int) -> bool:
    return peer <= -CHANNEL_OFFSET
