"""Turning world changes into ``Updates``: the caller's RPC result and the pushes to everyone else
(https://core.telegram.org/api/updates).

Each account that sees a change gets its own rendering (``out`` differs per viewer) with the exact
pts its box took, so Telethon's message box applies it without a gap. The acting session gets the
change as its RPC result; the actor's other sessions and every other member get it pushed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from telethon.tl import types
from telethon.tl.tlobject import TLObject

from telepi.sandbox.rpc.common import Env
from telepi.sandbox.rpc.dispatch import UpdateSink
from telepi.sandbox.world.peers import is_channel, raw_id
from telepi.sandbox.world.records import Copy, Deletion, Posted

Session = tuple[int, int] | None


def _viewers(env: Env, box: int) -> list[int]:
    # Only accounts can have live sessions: they are the ones worth pushing to.
    if is_channel(box):
        return env.world.account_member_ids(box)
    return [box]


def _updates(env: Env, viewer: int, updates: list[TLObject], peers: Iterable[int]) -> TLObject:
    users, chats = env.render.entities_of(peers, viewer)
    return types.Updates(updates=updates, users=users, chats=chats, date=env.world.now(), seq=0)


def _push_all(
    env: Env,
    sink: UpdateSink,
    per_viewer: dict[int, tuple[list[TLObject], set[int]]],
    actor: int | None,
    session: Session,
) -> None:
    for viewer, (updates, peers) in per_viewer.items():
        if not updates:
            continue
        except_session = session if viewer == actor else None
        sink.push(viewer, _updates(env, viewer, updates, peers), except_session=except_session)


def deliver_new(
    env: Env,
    posted: Sequence[Posted],
    *,
    actor: int | None,
    sink: UpdateSink,
    session: Session = None,
    random_ids: Sequence[int | None] = (),
) -> TLObject:
    """Push new messages to every viewer; return the actor's ``Updates`` (with ``UpdateMessageID``)."""
    per_viewer: dict[int, tuple[list[TLObject], set[int]]] = {}
    result: list[TLObject] = []
    result_peers: set[int] = set()
    for index, post in enumerate(posted):
        random_id = random_ids[index] if index < len(random_ids) else None
        for copy in post.copies:
            for viewer in _viewers(env, copy.box):
                update = _new_update(env, copy, viewer)
                peers = env.render.referenced_peers(copy.message)
                if viewer == actor:
                    own_box = copy.box == actor or is_channel(copy.box)
                    if own_box:
                        if random_id:
                            result.append(types.UpdateMessageID(id=copy.message.id, random_id=random_id))
                        result.append(update)
                        result_peers |= peers
                if post.duplicate:
                    continue
                bucket = per_viewer.setdefault(viewer, ([], set()))
                bucket[0].append(update)
                bucket[1].update(peers)
    _push_all(env, sink, per_viewer, actor, session)
    if actor is None:
        return types.Updates(updates=[], users=[], chats=[], date=env.world.now(), seq=0)
    # UpdateMessageID first, as Telegram orders them.
    result.sort(key=lambda u: 0 if isinstance(u, types.UpdateMessageID) else 1)
    return _updates(env, actor, result, result_peers)


def _new_update(env: Env, copy: Copy, viewer: int) -> TLObject:
    message = env.render.message(copy.message, viewer)
    if is_channel(copy.box):
        return types.UpdateNewChannelMessage(message=message, pts=copy.pts, pts_count=copy.pts_count)
    return types.UpdateNewMessage(message=message, pts=copy.pts, pts_count=copy.pts_count)


def deliver_edit(
    env: Env, copies: Sequence[Copy], *, actor: int | None, sink: UpdateSink, session: Session = None
) -> TLObject:
    """Push edits (``UpdateEditChannelMessage`` / ``UpdateEditMessage``); return the actor's ``Updates``."""
    per_viewer: dict[int, tuple[list[TLObject], set[int]]] = {}
    result: list[TLObject] = []
    result_peers: set[int] = set()
    for copy in copies:
        for viewer in _viewers(env, copy.box):
            message = env.render.message(copy.message, viewer)
            if is_channel(copy.box):
                update: TLObject = types.UpdateEditChannelMessage(message=message, pts=copy.pts, pts_count=1)
            else:
                update = types.UpdateEditMessage(message=message, pts=copy.pts, pts_count=1)
            peers = env.render.referenced_peers(copy.message)
            bucket = per_viewer.setdefault(viewer, ([], set()))
            bucket[0].append(update)
            bucket[1].update(peers)
            if viewer == actor:
                result.append(update)
                result_peers |= peers
    _push_all(env, sink, per_viewer, actor, session)
    return _updates(env, actor, result, result_peers) if actor is not None else types.Updates([], [], [], 0, 0)


def deliver_delete(
    env: Env, deletions: Sequence[Deletion], *, actor: int | None, sink: UpdateSink, session: Session = None
) -> TLObject:
    """Push deletions; return ``messages.AffectedMessages`` for the actor's (or the channel's) box."""
    per_viewer: dict[int, tuple[list[TLObject], set[int]]] = {}
    affected = types.messages.AffectedMessages(pts=0, pts_count=0)
    for deletion in deletions:
        if is_channel(deletion.box):
            update: TLObject = types.UpdateDeleteChannelMessages(
                channel_id=raw_id(deletion.box),
                messages=list(deletion.ids),
                pts=deletion.pts,
                pts_count=deletion.pts_count,
            )
            peers = {deletion.box}
        else:
            update = types.UpdateDeleteMessages(
                messages=list(deletion.ids), pts=deletion.pts, pts_count=deletion.pts_count
            )
            peers = set()
        if is_channel(deletion.box) or deletion.box == actor:
            affected = types.messages.AffectedMessages(pts=deletion.pts, pts_count=deletion.pts_count)
        for viewer in _viewers(env, deletion.box):
            bucket = per_viewer.setdefault(viewer, ([], set()))
            bucket[0].append(update)
            bucket[1].update(peers)
    _push_all(env, sink, per_viewer, actor, session)
    return affected
