"""``updates.getState`` / ``getDifference`` / ``getChannelDifference``, replayed from the world's event log
(https://core.telegram.org/api/updates).

Exactness matters: Telethon's ``MessageBox`` applies an update only when ``local_pts + pts_count ==
pts``; anything else makes it wait and fetch the difference again. Every event in a box took exactly
one pts range in ``Updates._take_pts`` (``world/updates.py``), so replaying the log from the client's pts reproduces it.
"""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env, resolve_channel
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError
from telepi.sandbox.rpc.messages import unix
from telepi.sandbox.rpc.render import peer_tl
from telepi.sandbox.world.peers import raw_id
from telepi.sandbox.world.records import Event, HistoryFilter, Message, Page

ACCOUNT_DIFF_LIMIT = 1000
CHANNEL_DIFF_LIMIT = 1000
CHANNEL_DIFF_TIMEOUT = 30  # seconds the client may wait before asking a channel again


def _replay(
    env: Env, viewer: int, box: int, events: list[Event], *, channel: bool
) -> tuple[list[Message], list[TLObject], set[int]]:
    """(new messages, other updates, referenced peers) for a run of events, with current contents."""
    world = env.world
    wanted = [i for e in events if e.kind in ("new", "edit") for i in e.ids]
    current = world.messages_by_ids(box, wanted)
    new: list[Message] = []
    other: list[TLObject] = []
    peers: set[int] = {box} if channel else set()
    for event in events:
        if event.kind == "new":
            new.extend(current[i] for i in event.ids if i in current)
        elif event.kind == "edit":
            for msg_id in event.ids:
                msg = current.get(msg_id)
                if msg is None:
                    continue
                tl = env.render.message(msg, viewer)
                peers |= env.render.referenced_peers(msg)
                if channel:
                    other.append(types.UpdateEditChannelMessage(message=tl, pts=event.pts, pts_count=event.pts_count))
                else:
                    other.append(types.UpdateEditMessage(message=tl, pts=event.pts, pts_count=event.pts_count))
        elif event.kind == "delete":
            if channel:
                other.append(
                    types.UpdateDeleteChannelMessages(
                        channel_id=raw_id(box), messages=event.ids, pts=event.pts, pts_count=event.pts_count
                    )
                )
            else:
                other.append(types.UpdateDeleteMessages(messages=event.ids, pts=event.pts, pts_count=event.pts_count))
    for msg in new:
        peers |= env.render.referenced_peers(msg)
    return new, other, peers


def register(registry: Registry, env: Env) -> None:
    world = env.world

    def state(viewer: int, pts: int | None = None) -> TLObject:
        return types.updates.State(
            pts=world.pts(viewer) if pts is None else pts, qts=0, date=world.now(), seq=0, unread_count=0
        )

    @registry.register(functions.updates.GetStateRequest)
    async def get_state(ctx: RpcContext, request: Any) -> TLObject:
        return state(ctx.require_user())

    @registry.register(functions.updates.GetDifferenceRequest)
    async def get_difference(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        current = world.pts(viewer)
        since = int(request.pts)
        # Channels keep their own pts: name the ones that moved so the client asks each of them.
        moved = world.channels_changed_since(viewer, unix(request.date)) if unix(request.date) else []
        too_long: list[TLObject] = [types.UpdateChannelTooLong(channel_id=c.raw_id, pts=c.pts) for c in moved]
        if since > current:
            return types.updates.DifferenceTooLong(pts=current)
        if since == current and not too_long:
            return types.updates.DifferenceEmpty(date=world.now(), seq=0)
        limit = min(int(request.pts_total_limit or ACCOUNT_DIFF_LIMIT), ACCOUNT_DIFF_LIMIT)
        events = world.events_after(viewer, since, limit + 1)
        more = len(events) > limit
        events = events[:limit]
        new, other, peers = _replay(env, viewer, viewer, events, channel=False)
        tl_messages, users, chats = env.render.messages(new, viewer)
        extra_users, extra_chats = env.render.entities_of(peers | {c.id for c in moved}, viewer)
        users = _merge(users, extra_users)
        chats = _merge(chats, extra_chats)
        if more:
            return types.updates.DifferenceSlice(
                new_messages=tl_messages,
                new_encrypted_messages=[],
                other_updates=other,
                chats=chats,
                users=users,
                intermediate_state=state(viewer, events[-1].pts),
            )
        return types.updates.Difference(
            new_messages=tl_messages,
            new_encrypted_messages=[],
            other_updates=other + too_long,
            chats=chats,
            users=users,
            state=state(viewer, current),
        )

    @registry.register(functions.updates.GetChannelDifferenceRequest)
    async def get_channel_difference(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        current = chat.pts
        since = int(request.pts)
        # Both errors are listed for the method (core.telegram.org/method/updates.getChannelDifference): no
        # pts at all is "empty", one the channel never reached "invalid".
        if since <= 0:
            raise RpcError(400, "PERSISTENT_TIMESTAMP_EMPTY")
        if since > current:
            raise RpcError(400, "PERSISTENT_TIMESTAMP_INVALID")
        if since == current:
            return types.updates.ChannelDifferenceEmpty(pts=current, final=True, timeout=CHANNEL_DIFF_TIMEOUT)
        if current - since > world.channel_difference_max:
            # "The passed pts is too old: one or more updates starting from the specified PTS were deleted
            # from the message box of this channel" (core.telegram.org/constructor/updates.channelDifferenceTooLong):
            # final "always set", a timeout, the dialog with the pts to reset to, and "the latest messages
            # (not starting from the passed pts, just the latest messages)". Nothing of what happened since:
            # the client reads the history again (core.telegram.org/api/updates).
            top = world.top_message(chat.id, chat.id)
            latest = world.history(chat.id, HistoryFilter(peer=chat.id), Page(limit=20))[1]
            tl_messages, users, chats = env.render.messages(latest, viewer)
            top_id = top.id if top is not None else 0
            dialog = types.Dialog(
                peer=peer_tl(chat.id),
                top_message=top_id,
                read_inbox_max_id=top_id,
                read_outbox_max_id=top_id,
                unread_count=0,
                unread_mentions_count=0,
                unread_reactions_count=0,
                unread_poll_votes_count=0,
                notify_settings=types.PeerNotifySettings(),
                pts=current,
            )
            return types.updates.ChannelDifferenceTooLong(
                dialog=dialog, messages=tl_messages, chats=chats, users=users, final=True, timeout=CHANNEL_DIFF_TIMEOUT
            )
        limit = max(1, min(int(request.limit or 100), CHANNEL_DIFF_LIMIT))
        events = world.events_after(chat.id, since, limit + 1)
        final = len(events) <= limit
        events = events[:limit]
        new, other, peers = _replay(env, viewer, chat.id, events, channel=True)
        tl_messages, users, chats = env.render.messages(new, viewer)
        extra_users, extra_chats = env.render.entities_of(peers, viewer)
        return types.updates.ChannelDifference(
            pts=current if final else events[-1].pts,
            new_messages=tl_messages,
            other_updates=other,
            chats=_merge(chats, extra_chats),
            users=_merge(users, extra_users),
            final=final,
            timeout=CHANNEL_DIFF_TIMEOUT if final else None,
        )


def _merge(first: list[TLObject], second: list[TLObject]) -> list[TLObject]:
    seen = {(type(x).__name__, x.id) for x in first}
    return first + [x for x in second if (type(x).__name__, x.id) not in seen]
