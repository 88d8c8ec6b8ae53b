"""Writing messages: send (text, media, albums), forward, edit, delete, pin — with Telegram's checks.

Sends are idempotent per (sender, peer, random_id): a repeated random_id returns the earlier
message instead of a new one (``World.post``), so a client retrying after a lost answer never
duplicates (``random_id``, https://core.telegram.org/method/messages.sendMessage; forwards:
https://core.telegram.org/method/messages.forwardMessages).
"""

from __future__ import annotations

import re
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc import custom_emoji
from telepi.sandbox.rpc.common import (
    ALBUM_MAX,
    FORWARD_MAX,
    MESSAGE_LENGTH_MAX,
    Env,
    bad,
    box_of,
    caption_limit,
    check_read,
    check_write,
    forbidden,
    resolve_channel,
    resolve_peer,
    resolve_user,
    topic_for_send,
)
from telepi.sandbox.rpc.deliver import deliver_delete, deliver_edit, deliver_new
from telepi.sandbox.rpc.dispatch import Registry, RpcContext, RpcError
from telepi.sandbox.rpc.media import MediaInput
from telepi.sandbox.rpc.render import entity_to_dict
from telepi.sandbox.world.records import GENERAL_TOPIC, Message, NewMessage, Posted

_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


def text_length(text: str) -> int:
    """Telegram measures text in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def check_text(text: str, *, media: bool, limit: int) -> None:
    if text_length(text) > limit:
        raise bad("MEDIA_CAPTION_TOO_LONG" if media else "MESSAGE_TOO_LONG")
    if not media and not text.strip():
        raise bad("MESSAGE_EMPTY")


def sent_entities(env: Env, viewer: int, entities: list[Any] | None, *, text: str, peer: int) -> list[dict[str, Any]]:
    """Entities of a send as stored. A mention by id must come as ``inputMessageEntityMentionName``
    with the user's access hash (https://core.telegram.org/api/mentions); the received form
    ``messageEntityMentionName`` is dropped from a send, the text stays plain (teleproto#19: "Telegram
    silently drops the mention and it shows up as plain, non-clickable text"). Custom emoji as
    ``custom_emoji.kept`` says (none from a non-premium sender outside Saved Messages)."""
    out: list[dict[str, Any]] = []
    for entity in entities or []:
        if isinstance(entity, types.MessageEntityMentionName):
            continue
        data = entity_to_dict(entity)
        if isinstance(entity, types.InputMessageEntityMentionName):
            try:
                data["user_id"] = resolve_user(env, viewer, entity.user_id)
            except RpcError:
                raise bad("ENTITY_MENTION_USER_INVALID") from None
        out.append(data)
    premium = env.world.user(viewer).premium
    return custom_emoji.kept(text, out, premium=premium, saved_messages=peer == viewer)


def web_preview(text: str, entities: list[dict[str, Any]], env: Env) -> dict[str, Any] | None:
    """Telegram attaches a link preview to a text message's first URL (unless no_webpage)."""
    for entity in entities:
        if entity.get("type") == "text_url" and entity.get("url"):
            return {"kind": "webpage", "url": entity["url"], "webpage_id": env.world.random_long()}
    match = _URL.search(text)
    if match is None:
        return None
    return {"kind": "webpage", "url": match.group(0), "webpage_id": env.world.random_long()}


def fwd_header(env: Env, source_peer: int, msg: Message) -> dict[str, Any]:
    """A forward keeps the original origin (a forwarded forward names the first author)."""
    if msg.fwd:
        return dict(msg.fwd)
    chat = env.world.find_chat(source_peer) if source_peer < 0 else None
    if chat is not None and chat.broadcast:
        header: dict[str, Any] = {"date": msg.date, "from_id": chat.id, "channel_post": msg.id}
        if msg.post_author:
            header["post_author"] = msg.post_author
        return header
    return {"date": msg.date, "from_id": msg.from_id}


def check_forward_reply(env: Env, viewer: int, peer: int, reply_to: TLObject | None) -> None:
    """A forward may be a reply (layer 229: ``messages.forwardMessages`` takes ``reply_to``, one target per
    call, https://core.telegram.org/method/messages.forwardMessages); the replied message must exist in the
    target. Telegram lists REPLY_MESSAGE_ID_INVALID ("the specified reply-to message ID is invalid") for
    sends with a reply, and TDLib reports it for a reply target the server refuses (tdlib-rs#31); which of
    refusing or silently dropping the reply Telegram does for a deleted target is not documented, so this
    models the harsher one: the forward is refused and nothing is posted."""
    if not isinstance(reply_to, types.InputReplyToMessage) or not reply_to.reply_to_msg_id:
        return
    reply_id = int(reply_to.reply_to_msg_id)
    if peer < 0:
        chat = env.world.chat(peer)
        if chat.forum and (reply_id == GENERAL_TOPIC or env.world.topic(chat.id, reply_id) is not None):
            return  # a topic's id: "into this topic", not a reply
    if env.world.message(box_of(viewer, peer), reply_id) is None:
        raise bad("REPLY_MESSAGE_ID_INVALID")


def register(registry: Registry, env: Env) -> None:
    world = env.world
    media_input = MediaInput(env)

    def duplicate(viewer: int, peer: int, random_id: int | None) -> Posted | None:
        return world.replay(viewer, peer, random_id) if random_id else None

    def deliver_one(ctx: RpcContext, viewer: int, posted: Posted, random_id: int) -> TLObject:
        return deliver_new(env, [posted], actor=viewer, sink=ctx.sink, session=ctx.session_key, random_ids=[random_id])

    @registry.register(functions.messages.SendMessageRequest)
    async def send_message(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        reply_to, topic = topic_for_send(env, peer, request.reply_to)
        check_write(env, viewer, peer, topic=topic)
        text = request.message or ""
        check_text(text, media=False, limit=MESSAGE_LENGTH_MAX)
        entities = sent_entities(env, viewer, request.entities, text=text, peer=peer)
        media = None if request.no_webpage else web_preview(text, entities, env)
        new = NewMessage(
            text=text,
            entities=entities,
            reply_to=reply_to,
            topic=topic,
            media=media,
            noforwards=bool(request.noforwards),
        )
        return deliver_one(ctx, viewer, world.post(viewer, peer, new, random_id=request.random_id), request.random_id)

    @registry.register(functions.messages.SendMediaRequest)
    async def send_media(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        reply_to, topic = topic_for_send(env, peer, request.reply_to)
        check_write(env, viewer, peer, topic=topic)
        caption = request.message or ""
        check_text(caption, media=True, limit=caption_limit(env, viewer))
        posted = duplicate(viewer, peer, request.random_id)  # a resend must not build (upload) the media again
        if posted is None:
            media = media_input.build(viewer, request.media, ctx.dc_id)
            entities = sent_entities(env, viewer, request.entities, text=caption, peer=peer)
            new = NewMessage(
                text=caption,
                entities=entities,
                reply_to=reply_to,
                topic=topic,
                media=media,
                noforwards=bool(request.noforwards),
            )
            posted = world.post(viewer, peer, new, random_id=request.random_id)
        return deliver_one(ctx, viewer, posted, request.random_id)

    @registry.register(functions.messages.SendMultiMediaRequest)
    async def send_multi_media(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        items = list(request.multi_media or [])
        if not items:
            raise bad("MEDIA_EMPTY")
        if len(items) > ALBUM_MAX:
            raise bad("MULTI_MEDIA_TOO_LONG")
        reply_to, topic = topic_for_send(env, peer, request.reply_to)
        check_write(env, viewer, peer, topic=topic)
        limit = caption_limit(env, viewer)
        for item in items:
            check_text(item.message or "", media=True, limit=limit)
        random_ids = [item.random_id for item in items]
        if len(set(random_ids)) != len(random_ids):
            raise bad("RANDOM_ID_DUPLICATE")
        earlier = [duplicate(viewer, peer, r) for r in random_ids]
        if all(e is not None for e in earlier):
            posts = [e for e in earlier if e is not None]
        else:
            # Build every media first: a bad item fails the album before anything is posted.
            medias = [media_input.build(viewer, item.media, ctx.dc_id) for item in items]
            grouped_id = world.random_long()
            posts = []
            with world.batch():
                for item, media in zip(items, medias, strict=True):
                    new = NewMessage(
                        text=item.message or "",
                        entities=sent_entities(env, viewer, item.entities, text=item.message or "", peer=peer),
                        reply_to=reply_to,
                        topic=topic,
                        media=media,
                        grouped_id=grouped_id,
                        noforwards=bool(request.noforwards),
                    )
                    posts.append(world.post(viewer, peer, new, random_id=item.random_id))
        return deliver_new(env, posts, actor=viewer, sink=ctx.sink, session=ctx.session_key, random_ids=random_ids)

    @registry.register(functions.messages.UploadMediaRequest)
    async def upload_media(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        resolve_peer(env, viewer, request.peer)
        return env.render.media(media_input.build(viewer, request.media, ctx.dc_id))

    @registry.register(functions.messages.ForwardMessagesRequest)
    async def forward_messages(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        source = resolve_peer(env, viewer, request.from_peer)
        target = resolve_peer(env, viewer, request.to_peer)
        ids = [int(i) for i in request.id or []]
        random_ids = list(request.random_id or [])
        if not ids:
            raise bad("MESSAGE_ID_INVALID")
        if len(ids) > FORWARD_MAX:
            raise bad("MESSAGE_IDS_TOO_MUCH")
        if len(random_ids) != len(ids):
            raise bad("RANDOM_ID_INVALID")
        source_chat = world.find_chat(source) if source < 0 else None
        if source_chat is not None:
            check_read(env, viewer, source_chat)
        reply_to, topic = topic_for_send(env, target, request.reply_to, request.top_msg_id)
        check_write(env, viewer, target, topic=topic)
        check_forward_reply(env, viewer, target, request.reply_to)
        found = world.messages_by_ids(box_of(viewer, source), ids)
        originals = [
            (found[i], r) for i, r in zip(ids, random_ids, strict=True) if i in found and not found[i].is_service
        ]
        if not originals:
            raise bad("MESSAGE_ID_INVALID")
        if (source_chat is not None and source_chat.noforwards) or any(m.noforwards for m, _ in originals):
            raise bad("CHAT_FORWARDS_RESTRICTED")
        groups: dict[int, int] = {}
        posts: list[Posted] = []
        with world.batch():
            for original, random_id in originals:
                grouped_id = None
                if original.grouped_id is not None:
                    grouped_id = groups.setdefault(original.grouped_id, world.random_long())
                text, entities = original.text, original.entities
                if request.drop_media_captions and original.media is not None:
                    text, entities = "", []
                new = NewMessage(
                    text=text,
                    entities=entities,
                    reply_to=reply_to,
                    topic=topic,
                    grouped_id=grouped_id,
                    media=original.media,
                    fwd=None if request.drop_author else fwd_header(env, source, original),
                    noforwards=bool(request.noforwards),
                )
                posts.append(world.post(viewer, target, new, random_id=random_id))
        used = [r for m, r in originals]
        return deliver_new(env, posts, actor=viewer, sink=ctx.sink, session=ctx.session_key, random_ids=used)

    @registry.register(functions.messages.EditMessageRequest)
    async def edit_message(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        box = box_of(viewer, peer)
        msg = world.message(box, int(request.id))
        if msg is None or msg.is_service:
            raise bad("MESSAGE_ID_INVALID")
        if msg.fwd is not None:
            # "Forwarded messages can't be changed" (tdlib maintainer, tdlib/td#2820; aahnik/tgcf#146); only a
            # forward without the author (no header) is the forwarder's own. The error name is not documented:
            # MESSAGE_ID_INVALID is Telegram's "you can't do that operation on such message".
            raise bad("MESSAGE_ID_INVALID")
        if msg.from_id != viewer:
            member = world.member(peer, viewer) if peer < 0 else None
            chat = world.find_chat(peer) if peer < 0 else None
            if not (chat is not None and chat.broadcast and member is not None and member.can("edit_messages")):
                raise forbidden("MESSAGE_AUTHOR_REQUIRED")
        media = media_input.build(viewer, request.media, ctx.dc_id) if request.media is not None else None
        resulting_media = media if media is not None else msg.media
        # A link preview does not make text a caption; anything else does (1024/4096 limit).
        has_media = resulting_media is not None and resulting_media.get("kind") != "webpage"
        text = request.message
        entities = sent_entities(env, viewer, request.entities, text=text, peer=peer) if text is not None else None
        if text is not None:
            limit = caption_limit(env, viewer) if has_media else MESSAGE_LENGTH_MAX
            check_text(text, media=has_media, limit=limit)
        if media is None and (text is None or (text == msg.text and entities == msg.entities)):
            raise bad("MESSAGE_NOT_MODIFIED")
        copies = world.edit(box, msg.id, text=text, entities=entities, media=media)
        return deliver_edit(env, copies, actor=viewer, sink=ctx.sink, session=ctx.session_key)

    @registry.register(functions.messages.DeleteMessagesRequest)
    async def delete_messages(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        ids = [int(i) for i in request.id or []]
        found = world.messages_by_ids(viewer, ids)
        revocable: list[int] = []
        local: list[int] = []
        for msg_id, msg in found.items():
            # Everyone may delete for everyone in private chats; in groups, their own messages (or admins).
            member = world.member(msg.peer, viewer) if msg.peer < 0 else None
            allowed = msg.peer > 0 or msg.from_id == viewer or (member is not None and member.role != "member")
            (revocable if request.revoke and allowed else local).append(msg_id)
        deletions = world.delete(viewer, revocable, revoke=True) + world.delete(viewer, local, revoke=False)
        return deliver_delete(env, deletions, actor=viewer, sink=ctx.sink, session=ctx.session_key)

    @registry.register(functions.channels.DeleteMessagesRequest)
    async def delete_channel_messages(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        chat = resolve_channel(env, viewer, request.channel)
        member = world.member(chat.id, viewer)
        ids = [int(i) for i in request.id or []]
        found = world.messages_by_ids(chat.id, ids)
        for msg in found.values():
            if msg.from_id != viewer and (member is None or not member.can("delete_messages")):
                raise forbidden("MESSAGE_DELETE_FORBIDDEN")
        deletions = world.delete(chat.id, sorted(found))
        if not deletions:
            return types.messages.AffectedMessages(pts=world.pts(chat.id), pts_count=0)
        return deliver_delete(env, deletions, actor=viewer, sink=ctx.sink, session=ctx.session_key)

    @registry.register(functions.messages.UpdatePinnedMessageRequest)
    async def update_pinned(ctx: RpcContext, request: Any) -> TLObject:
        viewer = ctx.require_user()
        peer = resolve_peer(env, viewer, request.peer)
        box = box_of(viewer, peer)
        msg = world.message(box, int(request.id))
        if msg is None:
            raise bad("MESSAGE_ID_INVALID")
        if peer < 0:
            member = world.member(peer, viewer)
            # In channels and supergroups pinning is the pin_messages admin right
            # (core.telegram.org/constructor/chatAdminRights). Members of a supergroup may pin only when
            # its default rights allow it, which public groups never do (chatBannedRights.pin_messages);
            # the sandbox has no default rights, so it takes the harsher public-group rule.
            if member is None or (world.chat(peer).is_channel and not member.can("pin_messages")):
                raise forbidden("CHAT_ADMIN_REQUIRED")
        world.set_pinned(box, msg.id, not request.unpin)
        if request.unpin:
            return types.Updates(updates=[], users=[], chats=[], date=world.now(), seq=0)
        posted = world.post(viewer, peer, NewMessage(action={"type": "pin"}, reply_to=msg.id, topic=msg.topic))
        return deliver_new(env, [posted], actor=viewer, sink=ctx.sink, session=ctx.session_key)

    @registry.register(functions.messages.SetTypingRequest)
    async def set_typing(ctx: RpcContext, request: Any) -> bool:
        ctx.require_user()
        return True
