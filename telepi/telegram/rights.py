"""What an account may do in a chat, read from the chat's entity (no request): whether it may post."""

from __future__ import annotations

from typing import Any

from telethon.tl import types


def may_post(chat: Any) -> bool:
    """A channel needs its creator or an admin with post rights; a supergroup an admin, or a member the
    default rights let send (https://core.telegram.org/api/rights); a basic group or user: yes."""
    if not isinstance(chat, types.Channel):
        return True
    rights = chat.admin_rights
    if chat.creator or (rights is not None and rights.post_messages) or (chat.megagroup and rights is not None):
        return True
    banned = chat.default_banned_rights
    return bool(chat.megagroup and not (banned is not None and banned.send_messages) and not chat.left)
