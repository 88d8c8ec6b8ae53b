"""Users, chats, dialogs and participants: who exists and what each account may see of them.

Telegram's peers (https://core.telegram.org/api/peers), channels and supergroups
(https://core.telegram.org/api/channel) and their participants' rights (https://core.telegram.org/api/rights).
"""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env, bad, box_of, forbidden, resolve_channel, resolve_peer, resolve_user
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError
from telepi.sandbox.rpc.messages import unix
from telepi.sandbox.rpc.render import peer_tl
from telepi.sandbox.world.peers import chat_peer, is_channel
from telepi.sandbox.world.records import Chat, Member, Message


def register(registry: Registry, env: Env) -> None:
    world = env.world

    @registry.register(functions.users.GetUsersRequest)
    async def get_users(ctx: RpcContext, request: Any) -> list[TLObject]:
        viewer = ctx.require_user()
        found: list[TLObject] = []
        for input_user in request.id:
            try:
                user_id = resolve_user(env, viewer, input_user)
            except RpcError:
                continue
            found.append(env.render.user(world.user(user_id), viewer))
        return found

    @registry.register(functions.users.GetFullUserRequest)
    async def get_full_user(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        user_id = resolve_user(env, viewer, request.id)
        full = types.UserFull(
            id=user_id,
            settings=types.PeerSettings(),
            notify_settings=types.PeerNotifySettings(),
            common_chats_count=0,
        )
        return types.users.UserFull(full_user=full, chats=[], users=[env.render.user(world.user(user_id), viewer)])

    @registry.register(functions.contacts.ResolveUsernameRequest)
    async def resolve_username(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        name = str(request.username).lstrip("@")
        user = world.user_by_username(name)
        if user is not None:
            users, chats = env.render.entities_of([user.id], viewer)
            return types.contacts.ResolvedPeer(peer=peer_tl(user.id), chats=chats, users=users)
        chat = world.chat_by_username(name)
        if chat is None:
            raise bad("USERNAME_NOT_OCCUPIED")
        users, chats = env.render.entities_of([chat.id], viewer)
        return types.contacts.ResolvedPeer(peer=peer_tl(chat.id), chats=chats, users=users)

    @registry.register(functions.contacts.GetContactsRequest)
    async def get_contacts(ctx: RpcContext, request: Any) -> TLObject:
        ctx.require_user()
        return types.contacts.Contacts(contacts=[], saved_count=0, users=[])

    # ---- dialogs

    def dialog_list(viewer: int) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = []
        for chat in world.chats_of(viewer):
            top = world.top_message(box_of(viewer, chat.id), chat.id)
            if top is not None:
                out.append((chat.id, top))
        for peer in world.private_peers(viewer):
            top = world.top_message(viewer, peer)
            if top is not None:
                out.append((peer, top))
        out.sort(key=lambda d: (d[1].date, d[1].id, d[0]), reverse=True)
        return out

    def dialogs_result(viewer: int, listed: list[tuple[int, Message]], count: int | None) -> TLObject:
        tl_messages, users, chats = env.render.messages([m for _, m in listed], viewer)
        dialogs = [
            types.Dialog(
                peer=peer_tl(peer),
                top_message=top.id,
                read_inbox_max_id=top.id,
                read_outbox_max_id=top.id,
                unread_count=0,
                unread_mentions_count=0,
                unread_reactions_count=0,
                unread_poll_votes_count=0,
                notify_settings=types.PeerNotifySettings(),
                pts=world.pts(peer) if is_channel(peer) else None,
            )
            for peer, top in listed
        ]
        if count is None:
            return types.messages.Dialogs(dialogs=dialogs, messages=tl_messages, chats=chats, users=users)
        return types.messages.DialogsSlice(count=count, dialogs=dialogs, messages=tl_messages, chats=chats, users=users)

    @registry.register(functions.messages.GetDialogsRequest)
    async def get_dialogs(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        if request.folder_id:  # nothing is archived
            return types.messages.Dialogs(dialogs=[], messages=[], chats=[], users=[])
        listed = dialog_list(viewer)
        total = len(listed)
        offset_date = unix(request.offset_date)
        if offset_date or request.offset_id:
            # The previous page ended at (offset_date, offset_id, offset_peer): continue after it.
            try:
                offset_peer = resolve_peer(env, viewer, request.offset_peer)
            except RpcError:
                offset_peer = 0
            bound = (offset_date or 2**31, int(request.offset_id or 0) or 2**31, offset_peer)
            listed = [d for d in listed if (d[1].date, d[1].id, d[0]) < bound]
        limit = max(1, min(int(request.limit or 100), 100))
        page = listed[:limit]
        if len(page) == total:
            return dialogs_result(viewer, page, None)
        return dialogs_result(viewer, page, total)

    @registry.register(functions.messages.GetPeerDialogsRequest)
    async def get_peer_dialogs(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        listed: list[tuple[int, Message]] = []
        for input_dialog in request.peers:
            peer = resolve_peer(env, viewer, getattr(input_dialog, "peer", input_dialog))
            top = world.top_message(box_of(viewer, peer), peer)
            if top is not None:
                listed.append((peer, top))
        result = dialogs_result(viewer, listed, None)
        return types.messages.PeerDialogs(
            dialogs=result.dialogs,
            messages=result.messages,
            chats=result.chats,
            users=result.users,
            state=types.updates.State(pts=world.pts(viewer), qts=0, date=world.now(), seq=0, unread_count=0),
        )

    # ---- chats and channels

    @registry.register(functions.channels.GetChannelsRequest)
    async def get_channels(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chats = [env.render.chat(resolve_channel(env, viewer, c, need_access=False), viewer) for c in request.id]
        return types.messages.Chats(chats=chats)

    @registry.register(functions.messages.GetChatsRequest)
    async def get_chats(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chats = []
        for chat_id in request.id:
            chat = world.find_chat(chat_peer(int(chat_id)))
            if chat is not None:
                chats.append(env.render.chat(chat, viewer))
        return types.messages.Chats(chats=chats)

    def full_channel(chat: Chat, viewer: int) -> TLObject:
        top = world.top_message(chat.id, chat.id)
        top_id = top.id if top is not None else 0
        members = world.members(chat.id)
        full = types.ChannelFull(
            id=chat.raw_id,
            about=chat.about,
            read_inbox_max_id=top_id,
            read_outbox_max_id=top_id,
            unread_count=0,
            chat_photo=types.PhotoEmpty(id=0),
            notify_settings=types.PeerNotifySettings(),
            bot_info=[],
            pts=chat.pts,
            can_view_participants=True,
            participants_count=len(members),
            admins_count=sum(1 for m in members if m.role != "member"),
        )
        users, chats = env.render.entities_of([chat.id], viewer)
        return types.messages.ChatFull(full_chat=full, chats=chats, users=users)

    @registry.register(functions.channels.GetFullChannelRequest)
    async def get_full_channel(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        return full_channel(resolve_channel(env, viewer, request.channel), viewer)

    @registry.register(functions.messages.GetFullChatRequest)
    async def get_full_chat(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = world.find_chat(chat_peer(int(request.chat_id)))
        if chat is None or world.member(chat.id, viewer) is None:
            raise bad("CHAT_ID_INVALID")
        members = world.members(chat.id)
        participants: list[TLObject] = []
        for m in members:
            if m.role == "creator":
                participants.append(types.ChatParticipantCreator(user_id=m.user_id))
            elif m.role == "admin":
                participants.append(
                    types.ChatParticipantAdmin(user_id=m.user_id, inviter_id=chat.creator_id, date=m.date)
                )
            else:
                participants.append(types.ChatParticipant(user_id=m.user_id, inviter_id=chat.creator_id, date=m.date))
        full = types.ChatFull(
            id=chat.raw_id,
            about=chat.about,
            participants=types.ChatParticipants(chat_id=chat.raw_id, participants=participants, version=1),
            notify_settings=types.PeerNotifySettings(),
            chat_photo=types.PhotoEmpty(id=0),
        )
        users, chats = env.render.entities_of([chat.id, *(m.user_id for m in members)], viewer)
        return types.messages.ChatFull(full_chat=full, chats=chats, users=users)

    def participant_tl(chat: Chat, member: Member) -> TLObject:
        if member.role == "creator":
            return types.ChannelParticipantCreator(user_id=member.user_id, admin_rights=env.render.admin_rights(member))
        if member.role == "admin":
            return types.ChannelParticipantAdmin(
                user_id=member.user_id,
                promoted_by=chat.creator_id,
                date=member.date,
                admin_rights=env.render.admin_rights(member),
            )
        return types.ChannelParticipant(user_id=member.user_id, date=member.date)

    @registry.register(functions.channels.GetParticipantsRequest)
    async def get_participants(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        me = world.member(chat.id, viewer)
        if chat.broadcast and (me is None or me.role == "member"):
            raise forbidden("CHAT_ADMIN_REQUIRED")
        members = world.members(chat.id)
        if isinstance(request.filter, types.ChannelParticipantsAdmins):
            members = [m for m in members if m.role != "member"]
        query = getattr(request.filter, "q", "") or ""
        users_by_id = {u.id: u for u in world.users(m.user_id for m in members)}
        if query:
            needle = query.lower()
            members = [
                m
                for m in members
                if needle in f"{users_by_id[m.user_id].first_name} {users_by_id[m.user_id].last_name}".lower()
                or needle in (users_by_id[m.user_id].username or "").lower()
            ]
        total = len(members)
        offset, limit = max(0, int(request.offset or 0)), max(0, min(int(request.limit or 200), 200))
        page = members[offset : offset + limit]
        users, chats = env.render.entities_of([m.user_id for m in page], viewer)
        return types.channels.ChannelParticipants(
            count=total, participants=[participant_tl(chat, m) for m in page], chats=chats, users=users
        )

    @registry.register(functions.channels.GetParticipantRequest)
    async def get_participant(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        user_id = resolve_peer(env, viewer, request.participant)
        member = world.member(chat.id, user_id)
        if member is None:
            raise bad("USER_NOT_PARTICIPANT")
        users, chats = env.render.entities_of([user_id, chat.id], viewer)
        return types.channels.ChannelParticipant(participant=participant_tl(chat, member), chats=chats, users=users)

    @registry.register(functions.channels.JoinChannelRequest)
    async def join_channel(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        if world.member(chat.id, viewer) is None:
            world.add_member(chat.id, viewer)
        users, chats = env.render.entities_of([chat.id], viewer)
        return types.Updates(updates=[], users=users, chats=chats, date=world.now(), seq=0)

    @registry.register(functions.channels.LeaveChannelRequest)
    async def leave_channel(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        member = world.member(chat.id, viewer)
        if member is None:
            raise bad("USER_NOT_PARTICIPANT")
        if member.role == "creator":
            raise bad("CHAT_ADMIN_REQUIRED")  # the creator cannot leave in the sandbox
        world.remove_member(chat.id, viewer)
        users, chats = env.render.entities_of([chat.id], viewer)
        return types.Updates(updates=[], users=users, chats=chats, date=world.now(), seq=0)

    @registry.register(functions.messages.ToggleNoForwardsRequest)
    async def toggle_no_forwards(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        member = world.member(peer, viewer) if peer < 0 else None
        if member is None or member.role != "creator":
            raise forbidden("CHAT_ADMIN_REQUIRED")
        chat = world.chat(peer)
        if chat.noforwards == bool(request.enabled):
            raise bad("CHAT_NOT_MODIFIED")
        world.set_chat_flags(chat.id, noforwards=bool(request.enabled))
        users, chats = env.render.entities_of([chat.id], viewer)
        return types.Updates(updates=[], users=users, chats=chats, date=world.now(), seq=0)
