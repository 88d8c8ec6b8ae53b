"""Source edits and deletes, applied to the copies as durable work in the checkpoint.

Only the account that made a copy may edit it (``MESSAGE_AUTHOR_REQUIRED``) and, without delete rights,
delete it (``MESSAGE_DELETE_FORBIDDEN``). So a source edit or delete becomes a *change row* in the
checkpoint (``changes``: one open edit per message, a delete makes the edit moot), and each session
claims only the rows of copies its own account made (the session that sent the copy, through the
sessions table). A row of an account with no live session waits until that session returns.

Where changes come from: live updates, and what happened while nobody listened. For a channel or
supergroup that is Telegram's own record, its difference from the pts the route recorded up to
(engine/difference.py). Otherwise, and where that record is too long, :meth:`ChangeApplier.reread_window`
reads the source's history over the copied range: a copied message edited after its copy was claimed
(the copy may have read the text before the edit), or after the edit last recorded, gets an edit row;
with ``SYNC_DELETES`` a copied message missing from the source gets a delete row.

How a change is applied: the copy is read from the target first. A copy gone, or a forwarded copy
(Telegram refuses to edit a message with a forward header, tdlib/td#2820), is done with a note; a copy
whose sender is another account is handed to that account. An edit then sets the copy's text and
entities; for media whose caption is over the account's limit the caption lives in a follow-up reply
(the first reply to the copy by this account that is no recorded copy): the media's caption is
emptied and the follow-up edited, a follow-up is sent when the caption newly outgrows the limit, and
deleted when it fits again. A delete removes the copy and its follow-up. Replaced media is not applied
(the text is). ``MESSAGE_NOT_MODIFIED`` is done; ``MESSAGE_ID_INVALID`` is done with the note
``copy_gone``; flood waits are waited out by the gateway; other refusals are retried with backoff up to
``max_attempts`` and then left ``failed`` with the error, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telethon import utils
from telethon.tl import functions, types

from telepi.checkpoint.model import ChangeItem
from telepi.checkpoint.store import Store
from telepi.engine import appconfig
from telepi.engine.content import mentioned_users, text_entities
from telepi.engine.messages import topic_of
from telepi.engine.routerules import RouteRules
from telepi.errors import SessionStopped
from telepi.rules.entities import utf16_length
from telepi.telegram.errors import ErrorKind, classify

log = logging.getLogger(__name__)

FOLLOW_UP_WINDOW = 30  # a caption's follow-up is sent right after its media: look this far ahead
CLOCK_SLACK = 120.0  # seconds of difference allowed between this machine's clock and Telegram's
BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class ChangeRoute:
    """Where changes come from and go to, and who this session is."""

    route_id: int
    source_peer: Any
    target_peer: Any
    user_id: int


class ChangeApplier:
    """Records this route's source edits and deletes and applies those of copies this account made."""

    def __init__(
        self,
        client: Any,
        store: Store,
        session: str,
        route: ChangeRoute,
        *,
        sync_edits: bool,
        sync_deletes: bool,
        lease_seconds: float,
        max_attempts: int,
        poll_seconds: float = 5.0,
        rules: RouteRules | None = None,
        source_is_forum: bool = False,
    ) -> None:
        self.client, self.store, self.session, self.route = client, store, session, route
        self.rules, self.source_is_forum = rules or RouteRules(), source_is_forum  # an edit is transformed too
        self.sync_edits, self.sync_deletes = sync_edits, sync_deletes
        self.lease_seconds, self.max_attempts, self.poll_seconds = lease_seconds, max_attempts, poll_seconds
        self.wake = asyncio.Event()
        self._caption_limit: int | None = None

    # ---- recording ----------------------------------------------------------------------------

    def record_edit(self, message: Any) -> bool:
        return self.record_edits({int(message.id): timestamp(getattr(message, "edit_date", None))})

    def record_edits(self, edits: Mapping[int, int | None]) -> bool:
        """Record source edits (id → edit_date); False if the checkpoint refused (ask again later)."""
        if not self.sync_edits or not edits:
            return True
        try:
            self.store.enqueue_edits(self.route.route_id, edits)
        except Exception as exc:  # the next difference or catch-up finds it again
            log.warning("edits of %s not recorded (%s)", sorted(edits), type(exc).__name__)
            return False
        self.wake.set()
        return True

    def record_deletes(self, source_ids: Iterable[int]) -> bool:
        """Record source deletes; False if the checkpoint refused (ask again later)."""
        ids = list(source_ids)
        if not self.sync_deletes or not ids:
            return True
        try:
            self.store.enqueue_deletes(self.route.route_id, ids)
        except Exception as exc:
            log.warning("delete of %s not recorded (%s)", ids, type(exc).__name__)
            return False
        self.wake.set()
        return True

    async def reread_window(self) -> None:
        """Record what changed in the source over the copied range while nobody listened, read from the
        history itself: edits by ``edit_date``, deletes by absence. For a source without Telegram's record
        of it (a basic group, a private chat) at every start; for a channel when that record is too long."""
        copied = self.store.copied_ids(self.route.route_id)
        if not copied:
            return
        present: set[int] = set()
        edited: dict[int, int] = {}
        async for message in self.client.iter_messages(
            self.route.source_peer, min_id=copied[0] - 1, max_id=copied[-1] + 1
        ):
            present.add(int(message.id))
            stamp = timestamp(getattr(message, "edit_date", None))
            if stamp is not None:
                edited[int(message.id)] = stamp
        edits = self.store.enqueue_stale_edits(self.route.route_id, edited, CLOCK_SLACK) if self.sync_edits else 0
        gone = [msg_id for msg_id in copied if msg_id not in present]
        deletes = self.store.enqueue_deletes(self.route.route_id, gone) if self.sync_deletes and gone else 0
        if edits or deletes:
            log.info("catch-up: %d edits and %d deletes to apply", edits, deletes, extra={"event": "changes"})
            self.wake.set()  # the applier may be running already (a channel's difference too long)

    # ---- applying -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, reread: bool = True) -> None:
        """Apply recorded changes until ``stop``; first, with ``reread``, read the window (see above)."""
        if reread:
            try:
                await self.reread_window()
            except SessionStopped:
                raise
            except Exception as exc:
                log.warning("catch-up of source edits and deletes failed (%s): live ones still apply", _name(exc))
        while not stop.is_set():
            self.wake.clear()
            try:
                items = self.store.claim_changes(
                    self.route.route_id, self.session, self.route.user_id, 20, self.lease_seconds
                )
            except Exception as exc:  # a busy checkpoint passes: try again on the next round
                log.warning("claiming source edits and deletes failed (%s)", type(exc).__name__)
                items = []
            for item in items:
                if stop.is_set():
                    return
                await self.apply(item)
            if not items:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self.wake.wait()

    async def apply(self, item: ChangeItem) -> None:
        """Apply one leased change; every outcome is recorded, nothing is raised but an account stop."""
        try:
            note = await (self._edit(item) if item.kind == "edit" else self._delete(item))
        except SessionStopped:
            raise
        except Exception as exc:
            self._failed(item, exc)
            return
        if note == "reassigned":
            return
        self.store.finish_change(item.route_id, item.source_msg_id, item.kind, self.session, note)
        log.info(
            "%s of %d applied to %d%s",
            item.kind,
            item.source_msg_id,
            item.target_msg_id,
            f" ({note})" if note else "",
            extra={"event": item.kind, "msg_id": item.source_msg_id},
        )

    def _failed(self, item: ChangeItem, exc: Exception) -> None:
        found = classify(exc)
        name = found.name
        if name == "MESSAGE_NOT_MODIFIED":
            self.store.finish_change(item.route_id, item.source_msg_id, item.kind, self.session, "not_modified")
            return
        if name == "MESSAGE_ID_INVALID":
            self.store.finish_change(item.route_id, item.source_msg_id, item.kind, self.session, "copy_gone")
            return
        # MESSAGE_AUTHOR_REQUIRED / MESSAGE_DELETE_FORBIDDEN: another account's copy; retrying cannot help.
        retryable = name not in ("MESSAGE_AUTHOR_REQUIRED", "MESSAGE_DELETE_FORBIDDEN") and found.kind in (
            ErrorKind.TRANSIENT,
            ErrorKind.UNKNOWN,
            ErrorKind.FLOOD_WAIT,
            ErrorKind.SLOWMODE,
            ErrorKind.CHAT,
        )
        backoff = max(float(found.seconds), BACKOFF_SECONDS)
        self.store.fail_change(
            item.route_id,
            item.source_msg_id,
            item.kind,
            self.session,
            name,
            retryable=retryable,
            max_attempts=self.max_attempts,
            backoff_seconds=backoff,
        )
        log.warning(
            "%s of %d not applied to %d: Telegram answered %s%s",
            item.kind,
            item.source_msg_id,
            item.target_msg_id,
            name,
            " (retried later)" if retryable else "",
            extra={"event": item.kind, "msg_id": item.source_msg_id},
        )

    async def _copy_and_follow_up(self, item: ChangeItem) -> tuple[Any | None, Any | None]:
        """The copy and its caption's follow-up (None when there is none) as the target has them."""
        ids = [item.target_msg_id + offset for offset in range(FOLLOW_UP_WINDOW)]
        found = await self.client.get_messages(self.route.target_peer, ids=ids)
        copy = found[0] if found else None
        if copy is None or isinstance(copy, types.MessageEmpty):
            return None, None
        if not _has_media(copy) or copy.message:
            return copy, None  # a caption in place: nothing follows it
        replies = _own_replies(found[1:], item.target_msg_id)
        if not replies:
            # A follow-up sent by a later edit lies after everything copied since: read the copy's reply thread
            # (https://core.telegram.org/method/messages.getReplies), oldest first.
            thread = await self.client.get_messages(
                self.route.target_peer, reply_to=item.target_msg_id, limit=FOLLOW_UP_WINDOW
            )
            replies = sorted(_own_replies(thread, item.target_msg_id), key=lambda m: int(m.id))
        if not replies:
            return copy, None
        copies = self.store.mapped_targets(self.route.route_id, [m.id for m in replies])
        follow_up = next((m for m in replies if m.id not in copies), None)
        return copy, follow_up

    def _other_author(self, item: ChangeItem, copy: Any) -> bool:
        """Hand the change to the account the copy shows as its sender, if that is not this one."""
        sender = copy.from_id
        if isinstance(sender, types.PeerUser) and sender.user_id != self.route.user_id:
            self.store.reassign_change(item.route_id, item.source_msg_id, item.kind, int(sender.user_id))
            log.info("%s of %d belongs to user %d's copy", item.kind, item.source_msg_id, sender.user_id)
            return True
        return False

    async def _delete(self, item: ChangeItem) -> str:
        copy, follow_up = await self._copy_and_follow_up(item)
        if copy is None:
            return "copy_gone"
        if self._other_author(item, copy):
            return "reassigned"
        ids = [copy.id] + ([follow_up.id] if follow_up is not None else [])
        await self.client.delete_messages(self.route.target_peer, ids, revoke=True)
        return ""

    async def _edit(self, item: ChangeItem) -> str:
        source = await self.client.get_messages(self.route.source_peer, ids=item.source_msg_id)
        if source is None or isinstance(source, types.MessageEmpty):
            return "source_gone"
        copy, follow_up = await self._copy_and_follow_up(item)
        if copy is None:
            return "copy_gone"
        if copy.fwd_from is not None:
            return "forwarded"  # Telegram refuses to edit a forwarded message (tdlib/td#2820)
        if self._other_author(item, copy):
            return "reassigned"
        entities = text_entities(source, await self._mentions(source))
        text, entities = self.rules.shown(source, entities, topic=topic_of(source, self.source_is_forum))
        if not _has_media(copy):
            web_preview = isinstance(source.media, types.MessageMediaWebPage)
            await self._set_text(copy, text, entities, no_webpage=not web_preview)
            return ""
        apart = utf16_length(text) > await self._limit()
        if not apart:
            try:
                await self._set_text(copy, text, entities)
            except Exception as exc:
                if classify(exc).name != "MEDIA_CAPTION_TOO_LONG":
                    raise
                apart = True  # the account's real limit is lower than its config said
            else:
                if follow_up is not None:  # the caption fits again: it moves back onto the media
                    await self.client.delete_messages(self.route.target_peer, [follow_up.id], revoke=True)
                return ""
        await self._set_text(copy, "", None)
        if follow_up is not None:
            await self._set_text(follow_up, text, entities, no_webpage=True)
        else:
            await self._send_follow_up(item, copy, text, entities)
        return ""

    async def _set_text(self, message: Any, text: str, entities: Sequence[Any] | None, **options: Any) -> None:
        if message.message == text and _same_entities(message.entities, entities):
            return
        try:
            await self.client(
                functions.messages.EditMessageRequest(
                    peer=self.route.target_peer, id=message.id, message=text, entities=list(entities or []), **options
                )
            )
        except Exception as exc:
            if classify(exc).name != "MESSAGE_NOT_MODIFIED":
                raise

    async def _send_follow_up(self, item: ChangeItem, copy: Any, text: str, entities: Sequence[Any] | None) -> None:
        """The edited caption outgrew the media: it follows as a reply, deduplicated per edit by random id."""
        reply_to = copy.reply_to
        top = getattr(reply_to, "reply_to_top_id", None) or (
            getattr(reply_to, "reply_to_msg_id", None) if getattr(reply_to, "forum_topic", False) else None
        )
        await self.client(
            functions.messages.SendMessageRequest(
                peer=self.route.target_peer,
                message=text,
                entities=list(entities or []),
                no_webpage=True,
                reply_to=types.InputReplyToMessage(reply_to_msg_id=copy.id, top_msg_id=top),
                random_id=_follow_up_random_id(item),
            )
        )

    async def _limit(self) -> int:
        if self._caption_limit is None:
            self._caption_limit = await appconfig.caption_limit(self.client)
        return self._caption_limit

    async def _mentions(self, message: Any) -> dict[int, Any]:
        found: dict[int, Any] = {}
        for user_id in mentioned_users(message):
            with contextlib.suppress(Exception):  # an unknown user stays plain text, as when copying
                found[user_id] = utils.get_input_user(await self.client.get_input_entity(user_id))
        return found


def _own_replies(messages: Iterable[Any], copy_id: int) -> list[Any]:
    """This account's text messages among ``messages`` that reply to the copy: its caption's follow-up."""
    return [
        m
        for m in messages
        if m is not None
        and not isinstance(m, types.MessageEmpty)
        and m.out
        and m.media is None
        and getattr(m.reply_to, "reply_to_msg_id", None) == copy_id
    ]


def _has_media(message: Any) -> bool:
    media = getattr(message, "media", None)
    return media is not None and not isinstance(media, types.MessageMediaWebPage)


def _same_entities(have: Sequence[Any] | None, want: Sequence[Any] | None) -> bool:
    return [e.to_dict() for e in have or []] == [e.to_dict() for e in want or []]


def timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    return int(value.timestamp())


def _follow_up_random_id(item: ChangeItem) -> int:
    digest = hashlib.sha256(f"{item.random_id}:{item.source_msg_id}:{item.edit_date}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True) or 1


def _name(exc: BaseException) -> str:
    return classify(exc).name
