"""What every RPC module shares: the environment, input-peer resolution and Telegram's permission rules.

Input peers carry an access hash (https://core.telegram.org/api/peers); who may post, edit, delete or manage
topics follows admin and banned rights (https://core.telegram.org/api/rights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.dcs.cdn import Cdn
from telepi.sandbox.dcs.centres import DataCentres
from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.rpc.render import Renderer
from telepi.sandbox.world.files import FileStore
from telepi.sandbox.world.peers import channel_peer, chat_peer, peer_kind
from telepi.sandbox.world.records import GENERAL_TOPIC, Chat, Member
from telepi.sandbox.world.world import World

MESSAGE_LENGTH_MAX = 4096
# Counted in UTF-16 code units after entity parsing; the app config's caption_length_limit_default /
# _premium (https://core.telegram.org/api/config#caption-length-limit-default; premium 4096 today).
CAPTION_LENGTH_MAX = 1024
CAPTION_LENGTH_MAX_PREMIUM = 4096
ALBUM_MAX = 10
FORWARD_MAX = 100


@dataclass
class Env:
    """The world, the file store and the renderer, shared by all handlers of one registry."""

    world: World
    files: FileStore
    render: Renderer
    # In-memory login state (phone_code_hash per phone, pending 2FA per auth key, SRP sessions).
    login: dict[str, Any] = field(default_factory=dict)
    dcs: DataCentres = field(default_factory=DataCentres)
    cdn: Cdn | None = None  # the CDN DC's file tokens (build_env makes one)


def bad(message: str) -> RpcError:
    return RpcError(400, message)


def forbidden(message: str) -> RpcError:
    return RpcError(403, message)


# ---- input peers -------------------------------------------------------------------------------


def resolve_user(env: Env, viewer: int, input_user: TLObject) -> int:
    """A user id from InputUser*/InputPeerUser*/InputPeerSelf, checking the access hash."""
    if isinstance(input_user, types.InputUserSelf | types.InputPeerSelf):
        return viewer
    if isinstance(input_user, types.InputUserFromMessage | types.InputPeerUserFromMessage):
        user_id = int(input_user.user_id)
        if env.world.find_user(user_id) is None:
            raise bad("USER_ID_INVALID")
        return user_id
    if isinstance(input_user, types.InputUser | types.InputPeerUser):
        user = env.world.find_user(int(input_user.user_id))
        if user is None or (user.id != viewer and user.access_hash != input_user.access_hash):
            raise bad("USER_ID_INVALID")
        return user.id
    raise bad("USER_ID_INVALID")


def resolve_channel(env: Env, viewer: int, input_channel: TLObject, *, need_access: bool = True) -> Chat:
    """A channel/supergroup from InputChannel*/InputPeerChannel*, checking hash and access."""
    if isinstance(input_channel, types.InputChannelFromMessage | types.InputPeerChannelFromMessage):
        chat = env.world.find_chat(channel_peer(int(input_channel.channel_id)))
    elif isinstance(input_channel, types.InputChannel | types.InputPeerChannel):
        chat = env.world.find_chat(channel_peer(int(input_channel.channel_id)))
        if chat is not None and chat.access_hash != input_channel.access_hash:
            raise bad("CHANNEL_INVALID")
    else:
        raise bad("CHANNEL_INVALID")
    if chat is None:
        raise bad("CHANNEL_INVALID")
    if need_access:
        check_read(env, viewer, chat)
    return chat


def resolve_peer(env: Env, viewer: int, input_peer: TLObject) -> int:
    """The marked id of an InputPeer the viewer may use."""
    if isinstance(input_peer, types.InputPeerEmpty):
        raise bad("PEER_ID_INVALID")
    if isinstance(
        input_peer,
        types.InputPeerSelf | types.InputPeerUser | types.InputPeerUserFromMessage,
    ):
        return resolve_user(env, viewer, input_peer)
    if isinstance(input_peer, types.InputPeerChat):
        chat = env.world.find_chat(chat_peer(int(input_peer.chat_id)))
        if chat is None:
            raise bad("PEER_ID_INVALID")
        if env.world.member(chat.id, viewer) is None:
            raise bad("CHAT_ID_INVALID")
        return chat.id
    if isinstance(input_peer, types.InputPeerChannel | types.InputPeerChannelFromMessage):
        return resolve_channel(env, viewer, input_peer).id
    raise bad("PEER_ID_INVALID")


def box_of(viewer: int, peer: int) -> int:
    """Whose message ids a dialog uses: the channel's own, or the viewer's account box."""
    return peer if peer_kind(peer) == "channel" else viewer


# ---- permissions -------------------------------------------------------------------------------


def check_read(env: Env, viewer: int, chat: Chat) -> Member | None:
    """Members read everything; others only public (username) channels."""
    member = env.world.member(chat.id, viewer)
    if member is None and not (chat.is_channel and chat.username):
        raise bad("CHANNEL_PRIVATE") if chat.is_channel else bad("CHAT_ID_INVALID")
    return member


def check_write(env: Env, viewer: int, peer: int, *, topic: int | None = None) -> None:
    """May ``viewer`` post into ``peer`` (and forum ``topic``)? CHAT_WRITE_FORBIDDEN / TOPIC_CLOSED."""
    if peer > 0:
        if env.world.find_user(peer) is None:
            raise bad("PEER_ID_INVALID")
        return
    chat = env.world.chat(peer)
    member = env.world.member(chat.id, viewer)
    if member is None:
        raise forbidden("CHAT_WRITE_FORBIDDEN")
    if chat.broadcast and not member.can("post_messages"):
        raise forbidden("CHAT_WRITE_FORBIDDEN")
    if topic is not None and topic != GENERAL_TOPIC:
        found = env.world.topic(chat.id, topic)
        if found is None:
            # Telegram tells a deleted topic from one that never existed (notes: TOPIC_DELETED).
            raise bad("TOPIC_DELETED") if env.world.topic_deleted(chat.id, topic) else bad("TOPIC_ID_INVALID")
        # TDLib's forumTopicInfo.is_closed: "If the topic is closed, then the user must have
        # can_manage_topics administrator right to send messages there".
        if found.closed and not member.can("manage_topics"):
            raise bad("TOPIC_CLOSED")


def check_manage_topics(env: Env, viewer: int, chat: Chat) -> Member:
    if not chat.forum:
        raise bad("CHANNEL_FORUM_MISSING")
    member = env.world.member(chat.id, viewer)
    if member is None or not member.can("manage_topics"):
        raise forbidden("CHAT_ADMIN_REQUIRED")
    return member


def caption_limit(env: Env, user_id: int) -> int:
    return CAPTION_LENGTH_MAX_PREMIUM if env.world.user(user_id).premium else CAPTION_LENGTH_MAX


def part_cap_for(env: Env, user_id: int) -> int:
    """upload_max_fileparts_default / _premium."""
    user = env.world.find_user(user_id)
    return 8000 if user is not None and user.premium else 4000


def topic_for_send(
    env: Env, peer: int, reply_to: TLObject | None, top_msg_id: int | None = None
) -> tuple[int | None, int | None]:
    """(reply_to message id, forum topic) for a send with ``InputReplyToMessage`` / ``top_msg_id``.

    Telegram's rule: in a forum, ``top_msg_id`` names the topic; without it a reply to a topic's
    id posts into that topic, and a reply to a message inherits that message's topic.
    """
    reply_id: int | None = None
    if isinstance(reply_to, types.InputReplyToMessage):
        reply_id = int(reply_to.reply_to_msg_id) or None
        top_msg_id = top_msg_id or reply_to.top_msg_id
    if peer > 0:
        return reply_id, None
    chat = env.world.chat(peer)
    box = peer if chat.is_channel else None
    if not chat.forum:
        return reply_id, None
    topic: int | None = int(top_msg_id) if top_msg_id else None
    if topic is None and reply_id is not None:
        if env.world.topic(chat.id, reply_id) is not None:
            topic = reply_id
        elif box is not None:
            replied = env.world.message(box, reply_id)
            if replied is not None:
                topic = replied.topic
    if topic == GENERAL_TOPIC:
        topic = None
    if reply_id == GENERAL_TOPIC:
        reply_id = None  # "into General", not a reply to the chat's creation message
    if reply_id is not None and box is not None and env.world.message(box, reply_id) is None:
        reply_id = None  # Telegram drops a reply to a message that does not exist
    return reply_id, topic
