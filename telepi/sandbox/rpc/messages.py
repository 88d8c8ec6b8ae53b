"""Reading messages: history, replies (forum topics), search and by id, with Telegram's pagination.

Pagination by offset_id / add_offset / limit (https://core.telegram.org/api/offsets), search filters
(https://core.telegram.org/api/search) and a topic's or a message's replies (https://core.telegram.org/api/threads).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env, bad, box_of, resolve_channel, resolve_peer
from telepi.sandbox.rpc.dispatch import Registry, RpcContext
from telepi.sandbox.world.peers import is_channel
from telepi.sandbox.world.records import GENERAL_TOPIC, HistoryFilter, Message, Page

_FILTERS: dict[type[TLObject], frozenset[str]] = {
    types.InputMessagesFilterPhotos: frozenset({"photo"}),
    types.InputMessagesFilterVideo: frozenset({"video"}),
    types.InputMessagesFilterPhotoVideo: frozenset({"photo", "video"}),
    types.InputMessagesFilterDocument: frozenset({"document"}),
    types.InputMessagesFilterMusic: frozenset({"audio"}),
    types.InputMessagesFilterVoice: frozenset({"voice"}),
    types.InputMessagesFilterRoundVideo: frozenset({"round"}),
    types.InputMessagesFilterRoundVoice: frozenset({"round", "voice"}),
    types.InputMessagesFilterGif: frozenset({"gif"}),
    types.InputMessagesFilterGeo: frozenset({"geo", "venue"}),
    types.InputMessagesFilterContacts: frozenset({"contact"}),
    types.InputMessagesFilterPoll: frozenset({"poll"}),
}


def unix(value: Any) -> int:
    """A TL date (datetime, int or None) as unix seconds; 0 when unset."""
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        return max(0, int(value.timestamp()))
    return int(value)


def page_of(request: Any) -> Page:
    return Page(
        offset_id=int(request.offset_id or 0),
        offset_date=unix(getattr(request, "offset_date", None)),
        add_offset=int(request.add_offset or 0),
        limit=int(request.limit or 0),
    )


def messages_result(env: Env, viewer: int, peer: int | None, msgs: Sequence[Message], total: int) -> TLObject:
    """messages.ChannelMessages for channels; Messages when everything fits, else MessagesSlice."""
    tl_messages, users, chats = env.render.messages(msgs, viewer)
    if peer is not None and is_channel(peer):
        return types.messages.ChannelMessages(
            pts=env.world.pts(peer), count=total, messages=tl_messages, topics=[], chats=chats, users=users
        )
    if total > len(msgs):
        return types.messages.MessagesSlice(count=total, messages=tl_messages, topics=[], chats=chats, users=users)
    return types.messages.Messages(messages=tl_messages, topics=[], chats=chats, users=users)


def register(registry: Registry, env: Env) -> None:
    world = env.world

    def history(viewer: int, peer: int, f: HistoryFilter, page: Page) -> TLObject:
        box = box_of(viewer, peer)
        total, msgs = world.history(box, f, page)
        return messages_result(env, viewer, peer, msgs, total)

    @registry.register(functions.messages.GetHistoryRequest)
    async def get_history(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        f = HistoryFilter(peer=peer, min_id=int(request.min_id or 0), max_id=int(request.max_id or 0))
        return history(viewer, peer, f, page_of(request))

    @registry.register(functions.messages.GetRepliesRequest)
    async def get_replies(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        box = box_of(viewer, peer)
        msg_id = int(request.msg_id)
        chat = world.find_chat(peer) if peer < 0 else None
        min_id, max_id = int(request.min_id or 0), int(request.max_id or 0)
        if chat is not None and chat.forum and (msg_id == GENERAL_TOPIC or world.topic(chat.id, msg_id)):
            # A forum topic's thread: every message of the topic, its creation message included.
            f = HistoryFilter(peer=peer, topic=msg_id, min_id=min_id, max_id=max_id)
        else:
            if world.message(box, msg_id) is None:
                raise bad("MSG_ID_INVALID")
            f = HistoryFilter(peer=peer, reply_to=msg_id, min_id=min_id, max_id=max_id)
        return history(viewer, peer, f, page_of(request))

    @registry.register(functions.messages.SearchRequest)
    async def search(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        from_id = resolve_peer(env, viewer, request.from_id) if request.from_id is not None else None
        kinds = _FILTERS.get(type(request.filter))
        f = HistoryFilter(
            peer=peer,
            topic=int(request.top_msg_id) if request.top_msg_id else None,
            min_id=int(request.min_id or 0),
            max_id=int(request.max_id or 0),
            q=request.q or "",
            from_id=from_id,
            min_date=unix(request.min_date),
            max_date=unix(request.max_date),
            media_kinds=kinds,
            has_url=isinstance(request.filter, types.InputMessagesFilterUrl),
            pinned=isinstance(request.filter, types.InputMessagesFilterPinned),
        )
        page = page_of(request)
        if page.limit <= 0:  # Telethon asks with limit=0 for the count alone
            return messages_result(env, viewer, peer, [], world.count(box_of(viewer, peer), f))
        return history(viewer, peer, f, page)

    def by_ids(viewer: int, box: int, ids: Sequence[TLObject]) -> list[Message | int]:
        wanted: list[int] = []
        for item in ids:
            if isinstance(item, types.InputMessageID):
                wanted.append(int(item.id))
            elif isinstance(item, types.InputMessageReplyTo):
                replied = world.message(box, int(item.id))
                wanted.append(replied.reply_to if replied is not None and replied.reply_to else 0)
            elif isinstance(item, int):
                wanted.append(item)
            else:
                wanted.append(0)
        found = world.messages_by_ids(box, [i for i in wanted if i])
        return [found.get(i, i) for i in wanted]

    def with_empties(viewer: int, peer: int | None, items: list[Message | int]) -> TLObject:
        msgs = [m for m in items if isinstance(m, Message)]
        result = messages_result(env, viewer, peer, msgs, len(msgs))
        rendered = iter(result.messages)
        result.messages = [
            next(rendered) if isinstance(m, Message) else types.MessageEmpty(id=m, peer_id=None) for m in items
        ]
        if isinstance(result, types.messages.ChannelMessages):
            result.count = len(items)
        return result

    @registry.register(functions.messages.GetMessagesRequest)
    async def get_messages(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        return with_empties(viewer, None, by_ids(viewer, viewer, request.id))  # the viewer's account box

    @registry.register(functions.channels.GetMessagesRequest)
    async def get_channel_messages(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        items = by_ids(viewer, chat.id, request.id)
        return with_empties(viewer, chat.id, items)

    @registry.register(functions.messages.ReadHistoryRequest)
    async def read_history(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        return types.messages.AffectedMessages(pts=world.pts(viewer), pts_count=0)

    @registry.register(functions.channels.ReadHistoryRequest)
    async def read_channel_history(ctx: RpcContext, request: Any) -> bool:
        ctx.require_user()
        return True

    @registry.register(functions.messages.ReadDiscussionRequest)
    async def read_discussion(ctx: RpcContext, request: Any) -> bool:
        ctx.require_user()
        return True

    @registry.register(functions.messages.GetMessagesViewsRequest)
    async def get_views(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        views = [types.MessageViews(views=1, forwards=0) for _ in request.id]
        _, users, chats = env.render.messages([], viewer)
        chats = [env.render.chat(world.chat(peer), viewer)] if peer < 0 else chats
        return types.messages.MessageViews(views=views, chats=chats, users=users)
