"""Forum topics (layer 229, https://core.telegram.org/api/forum): list, look up, create and edit.

A topic's id is the id of its "topic created" service message; General is id 1. Topics are
listed by most recent activity (their newest message), as Telegram does, and paged with
``offset_date``/``offset_id``/``offset_topic`` naming the last topic of the previous page.
"""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env, bad, check_manage_topics, forbidden, resolve_peer
from telepi.sandbox.rpc.deliver import deliver_delete, deliver_new
from telepi.sandbox.rpc.dispatch import Registry, RpcContext
from telepi.sandbox.rpc.messages import unix
from telepi.sandbox.rpc.render import peer_tl
from telepi.sandbox.world.records import GENERAL_TOPIC, Chat, Message, Topic

TOPIC_TITLE_MAX = 128
# The sandbox's stand-ins for the custom emoji of inputStickerSetEmojiDefaultTopicIcons. "Telegram
# Premium users can use any custom emoji, other users can only use the custom emojis contained in the
# inputStickerSetEmojiDefaultTopicIcons emoji pack"; others get 403 PREMIUM_ACCOUNT_REQUIRED
# (https://core.telegram.org/method/channels.createForumTopic, possible errors).
DEFAULT_TOPIC_ICONS = frozenset(range(5_000_000_000_000_000_001, 5_000_000_000_000_000_011))


def check_topic_icon(env: Env, viewer: int, icon_emoji_id: int | None) -> None:
    if icon_emoji_id and icon_emoji_id not in DEFAULT_TOPIC_ICONS and not env.world.user(viewer).premium:
        raise forbidden("PREMIUM_ACCOUNT_REQUIRED")


def register(registry: Registry, env: Env) -> None:
    world = env.world

    def forum(viewer: int, input_peer: TLObject) -> Chat:
        peer = resolve_peer(env, viewer, input_peer)
        chat = world.find_chat(peer) if peer < 0 else None
        if chat is None or not chat.forum:
            raise bad("CHANNEL_FORUM_MISSING")
        return chat

    def topic_tl(chat: Chat, topic: Topic, top: int, viewer: int) -> TLObject:
        return types.ForumTopic(
            id=topic.id,
            date=topic.date,
            peer=peer_tl(chat.id),
            title=topic.title,
            icon_color=topic.icon_color,
            top_message=top,
            read_inbox_max_id=top,
            read_outbox_max_id=top,
            unread_count=0,
            unread_mentions_count=0,
            unread_reactions_count=0,
            unread_poll_votes_count=0,
            from_id=types.PeerUser(topic.creator_id),
            notify_settings=types.PeerNotifySettings(),
            my=topic.creator_id == viewer or None,
            closed=topic.closed or None,
            hidden=topic.hidden or None,
            icon_emoji_id=topic.icon_emoji_id,
        )

    def result(chat: Chat, viewer: int, listed: list[tuple[Topic, int]], count: int) -> TLObject:
        tops = world.messages_by_ids(chat.id, [top for _, top in listed])
        msgs: list[Message] = [tops[top] for _, top in listed if top in tops]
        tl_messages, users, chats = env.render.messages(msgs, viewer)
        # "users: related users" (core.telegram.org/constructor/messages.forumTopics): each topic's creator
        # (its from_id) too; clients resolve from_id from this list (Pyrogram fails without it).
        listed_ids = {getattr(u, "id", None) for u in users}
        creators, _ = env.render.entities_of({t.creator_id for t, _ in listed} - listed_ids, viewer)
        users = [*users, *(u for u in creators if getattr(u, "id", None) not in listed_ids)]
        return types.messages.ForumTopics(
            count=count,
            topics=[topic_tl(chat, topic, top, viewer) for topic, top in listed],
            messages=tl_messages,
            chats=chats,
            users=users,
            pts=world.pts(chat.id),
        )

    @registry.register(functions.messages.GetForumTopicsRequest)
    async def get_forum_topics(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = forum(viewer, request.peer)
        tops = world.topic_top_ids(chat.id)
        topics = world.topics(chat.id)
        if request.q:
            needle = str(request.q).lower()
            topics = [t for t in topics if needle in t.title.lower()]
        ranked = sorted(((t, tops.get(t.id, t.id)) for t in topics), key=lambda p: (p[1], p[0].id), reverse=True)
        offset_id, offset_topic = int(request.offset_id or 0), int(request.offset_topic or 0)
        offset_date = unix(request.offset_date)
        if offset_id or offset_topic:
            bound = (offset_id or 2**31, offset_topic or 2**31)
            ranked = [p for p in ranked if (p[1], p[0].id) < bound]
        elif offset_date:
            dates = world.messages_by_ids(chat.id, [top for _, top in ranked])
            ranked = [p for p in ranked if p[1] in dates and dates[p[1]].date < offset_date]
        limit = max(1, min(int(request.limit or 100), 100))
        return result(chat, viewer, ranked[:limit], len(topics))

    @registry.register(functions.messages.GetForumTopicsByIDRequest)
    async def get_forum_topics_by_id(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = forum(viewer, request.peer)
        tops = world.topic_top_ids(chat.id)
        listed: list[tuple[Topic, int]] = []
        for topic_id in request.topics:
            topic = world.topic(chat.id, int(topic_id))
            if topic is not None:
                listed.append((topic, tops.get(topic.id, topic.id)))
        return result(chat, viewer, listed, len(listed))

    @registry.register(functions.messages.CreateForumTopicRequest)
    async def create_forum_topic(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = forum(viewer, request.peer)
        check_manage_topics(env, viewer, chat)
        title = (request.title or "").strip()
        if not title:
            raise bad("TOPIC_TITLE_EMPTY")
        if len(title) > TOPIC_TITLE_MAX:
            raise bad("TOPIC_TITLE_TOO_LONG")
        check_topic_icon(env, viewer, request.icon_emoji_id)
        _topic, posted = world.create_topic(
            chat.id,
            title,
            creator_id=viewer,
            icon_color=int(request.icon_color) if request.icon_color is not None else 0x6FB9F0,
            icon_emoji_id=request.icon_emoji_id,
            random_id=request.random_id,
        )
        return deliver_new(
            env, [posted], actor=viewer, sink=ctx.sink, session=ctx.session_key, random_ids=[request.random_id]
        )

    @registry.register(functions.messages.EditForumTopicRequest)
    async def edit_forum_topic(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = forum(viewer, request.peer)
        topic = world.topic(chat.id, int(request.topic_id))
        if topic is None:
            raise bad("TOPIC_ID_INVALID")
        member = world.member(chat.id, viewer)
        if member is None or not (member.can("manage_topics") or topic.creator_id == viewer):
            raise forbidden("CHAT_ADMIN_REQUIRED")
        title = request.title.strip() if request.title is not None else None
        if title is not None and not title:
            raise bad("TOPIC_TITLE_EMPTY")
        check_topic_icon(env, viewer, request.icon_emoji_id)
        unchanged = (
            (title is None or title == topic.title)
            and (request.icon_emoji_id is None or (request.icon_emoji_id or None) == topic.icon_emoji_id)
            and (request.closed is None or bool(request.closed) == topic.closed)
            and (request.hidden is None or bool(request.hidden) == topic.hidden)
        )
        if unchanged:
            raise bad("TOPIC_NOT_MODIFIED")
        posted = world.edit_topic(
            chat.id,
            topic.id,
            editor_id=viewer,
            title=title,
            icon_emoji_id=request.icon_emoji_id,
            closed=request.closed,
            hidden=request.hidden,
        )
        return deliver_new(env, [posted], actor=viewer, sink=ctx.sink, session=ctx.session_key)

    @registry.register(functions.messages.DeleteTopicHistoryRequest)
    async def delete_topic_history(ctx: RpcContext, request: Any) -> TLObject:
        """Delete a topic with all its messages. TDLib's deleteForumTopic: "requires can_delete_messages
        administrator right in the supergroup unless the user is creator of the topic"."""
        viewer = ctx.require_user()
        chat = forum(viewer, request.peer)
        topic = world.topic(chat.id, int(request.top_msg_id))
        if topic is None or topic.id == GENERAL_TOPIC:  # General cannot be deleted
            raise bad("TOPIC_ID_INVALID")
        member = world.member(chat.id, viewer)
        if member is None or not (member.can("delete_messages") or topic.creator_id == viewer):
            raise forbidden("CHAT_ADMIN_REQUIRED")
        affected = deliver_delete(
            env, world.delete_topic(chat.id, topic.id), actor=viewer, sink=ctx.sink, session=ctx.session_key
        )
        return types.messages.AffectedHistory(pts=affected.pts, pts_count=affected.pts_count, offset=0)
