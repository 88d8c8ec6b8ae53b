"""Who copies it: claim leased units, prepare them ahead, publish each exactly once, in order when asked.

A *unit* is one send: a single message, a whole album, or (forwarding) up to 100 messages of one
topic that reply to the same message or to none. The messages of a claim are fetched in one call;
preparation (mapping topic, transferring files) runs ahead in parallel; the reply is mapped and the
final send of a unit waits for its turn (the route's head) when ``ORDERED`` is on. A session waiting
for its turn takes over whatever claimable work stands before it, and a session that cannot send soon
(pacing, flood wait) hands its unsent work to the others, so several accounts share one ordered route;
copying, they claim one message at a time once their account can send, so the next message goes to the
account that is free first.
Every send carries the checkpoint's fixed random_id; before it the unit is marked *sending*, and a
session taking over such a unit first looks in the target for the copy the previous holder may have made.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from telethon import utils
from telethon.tl import types

from telepi.checkpoint.model import ANY_TOPIC, SEND_TIMEOUT_SECONDS, TopicFilter, WorkItem
from telepi.checkpoint.store import Store
from telepi.engine import appconfig, sender
from telepi.engine.content import (
    CAPTION_LIMIT,
    Outgoing,
    cannot_copy,
    caption_apart,
    is_file_media,
    mentioned_users,
    outgoing,
    recreated_media,
    reference_media,
    text_entities,
)
from telepi.engine.limits.account import AccountLimiter, HandedBack, LeaseLost, Stopping
from telepi.engine.messages import replied_id, signature, skip_reason, topic_of
from telepi.engine.progress import Progress
from telepi.engine.routerules import RouteRules
from telepi.engine.sender import Placement
from telepi.engine.sourcecache import READ_AHEAD, SourceCache
from telepi.engine.topics import TopicMapper
from telepi.engine.transfer.errors import FloodWaitTooLong, SourceChanged, TooLarge, TransferError, TransferFailed
from telepi.errors import SessionStopped
from telepi.rules.entities import utf16_length
from telepi.telegram.errors import Classified, ErrorKind, classify, classify_name, error_name

log = logging.getLogger(__name__)
Transfer = Literal["forward", "copy", "reupload"]
T = TypeVar("T")
FORWARD_BATCH = 100
READ_PAGE = 100  # messages per history read (Telegram's largest)
# A takeover looks for the dead holder's copy among the target's messages back to its first attempt: at most
# this many (ten reads); more would have come after it, so the copy cannot be told and the unit is held for review.
TAKEOVER_READ = 1000
HANDOVER_SECONDS = 0.25  # ordered: a session that cannot send within this gives its turn away
# Ordered copying shared with other sessions: a session claims the next message only this close to being able
# to send it, one at a time, so the next message always goes to the account that can send it first.
CLAIM_LEAD_SECONDS = 0.02
TURN_POLL = (0.002, 0.01)  # first and longest pause between two looks at the route's head
# With a checkpoint that notifies (PostgreSQL), waiting for another session's head is woken by its writes;
# a lease running out is no write, so the head is looked at again after this long all the same.
HEAD_WAIT = 0.5
WHOLE_BATCH_WAIT = 2.0  # longest a forwarding session waits for the planner to fill a batch
# An error nobody listed, met on this many different units in a row, is about the chat or the account.
UNKNOWN_STREAK = 3
# A send is made only while its lease has at least this long to run (a third of the lease, at most this).
LEASE_SPARE_SECONDS = 30.0
# Telegram refuses a caption over the account's limit; the caption then follows the media as a reply.
CAPTION_REFUSALS = frozenset({"MEDIA_CAPTION_TOO_LONG", "MESSAGE_TOO_LONG"})


class Reuploader(Protocol):
    """Streams a file message's media to new uploaded input media (``telepi.engine.transfer``)."""

    async def media(self, client: Any, message: Any, *, for_album: bool, target_peer: Any) -> Any: ...

    async def close(self) -> None: ...


@dataclass
class Unit:
    items: list[WorkItem]
    messages: list[Any] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [item.source_msg_id for item in self.items]

    @property
    def first_id(self) -> int:
        return self.items[0].source_msg_id


@dataclass
class Claimed:
    """One claim on its way: its items, and the task fetching its messages and preparing its units."""

    items: list[WorkItem]
    units: asyncio.Task[list[tuple[Unit, asyncio.Task[Prepared | None]]]]

    def cancel(self) -> None:
        self.units.cancel()
        self.units.add_done_callback(_retrieved)
        if self.units.done() and not self.units.cancelled() and self.units.exception() is None:
            for _unit, preparing in self.units.result():
                preparing.cancel()
                preparing.add_done_callback(_retrieved)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A dropped task that ended by an error after all (the session stopping as it was cancelled): nobody
    waits for it, and asyncio would print the error as a traceback ("exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


@dataclass
class Prepared:
    transfer: Transfer
    placement: Placement
    sendable: list[tuple[WorkItem, Any]]  # (item, source message) still to send
    skipped: dict[str, list[int]]  # reason -> source ids
    outs: list[Outgoing] = field(default_factory=list)


@dataclass(frozen=True)
class RouteTarget:
    route_id: int
    source_peer: Any
    target_peer: Any
    source_is_forum: bool
    source_protected: bool
    user_id: int
    source_link: str = ""  # https://t.me/name or https://t.me/c/<id>: the header's and footer's {source_link}


@dataclass
class WorkerOptions:
    mode: Literal["auto", "forward", "copy", "reupload"]
    ordered: bool
    lease_seconds: float
    max_attempts: int
    window: int = 4  # units claimed ahead and prepared in parallel
    claim_size: int = 1
    by_topic: bool = False  # ORDERED=topic: order within each source topic, topics published side by side
    rules: RouteRules = field(default_factory=RouteRules)  # filters judged again here: a retry re-plans


@dataclass
class WorkerStats:
    """Where an ordered route's time goes, per session: logged when the worker ends (``worker_stats``)."""

    claims: int = 0  # claims that got work (ahead, at the turn, for a reply)
    claimed: int = 0  # messages in them
    reads: int = 0  # GetMessages calls
    read_ids: int = 0
    sends: int = 0  # sends and forwards that landed
    hand_backs: int = 0  # hand-overs of unsent work to the other sessions
    handed: int = 0  # messages in them
    turn_seconds: float = 0.0  # waiting for the route's (topic's) head
    send_seconds: float = 0.0  # inside the send call: pacing, flood waits, the request
    idle_seconds: float = 0.0  # claiming found nothing

    def line(self) -> str:
        return " ".join(
            f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}"
            for name, value in dataclasses.asdict(self).items()
        )


def units_of(items: Sequence[WorkItem]) -> list[Unit]:
    """Split claimed items into units: album members together, in source order."""
    units: list[Unit] = []
    albums: dict[int, Unit] = {}
    for item in items:
        if item.grouped_id is None:
            units.append(Unit([item]))
        elif item.grouped_id in albums:
            albums[item.grouped_id].items.append(item)
        else:
            albums[item.grouped_id] = Unit([item])
            units.append(albums[item.grouped_id])
    return units


def forward_batches(units: Sequence[Unit], keys: Sequence[Hashable | None], *, contiguous: bool) -> list[Unit]:
    """Merge neighbouring forwardable units that share a key (their topic and the message they reply to)
    into batches of at most 100.

    A unit whose key is None stays alone (not content, or not forwarded). ``contiguous`` (ordered
    publishing) joins only units whose ids follow each other without a gap: a gap may be a message
    another session holds, which must be published in between. Units a previous holder may have sent
    join only the units sent in the same call (the same sending mark): a takeover looks in the target
    for that call's run of copies, which a batch of another shape would never match (seen: a message
    forwarded alone before its session was killed, taken over in a batch with the next one, found no
    run of two and was sent again)."""
    batches: list[Unit] = []
    last_key: Hashable | None = None
    for unit, key in zip(units, keys, strict=True):
        previous = batches[-1] if batches else None
        if (
            previous is not None
            and key is not None
            and key == last_key
            and len(previous.items) + len(unit.items) <= FORWARD_BATCH
            and (not contiguous or unit.first_id == previous.items[-1].source_msg_id + 1)
            and _sending_mark(unit) == _sending_mark(previous)
        ):
            previous.items.extend(unit.items)
            previous.messages.extend(unit.messages)
        else:
            batches.append(Unit(list(unit.items), list(unit.messages)))
        last_key = key
    return batches


def _sending_mark(unit: Unit) -> tuple[str | None, float | None]:
    """Which earlier send the unit may have been part of; (None, None) when none started."""
    first = unit.items[0]
    return first.send_session, first.send_started_at


class Worker:
    def __init__(
        self,
        client: Any,
        store: Store,
        session: str,
        route: RouteTarget,
        topics: TopicMapper,
        limiter: AccountLimiter,
        progress: Progress,
        options: WorkerOptions,
        reuploader: Reuploader | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.session = session
        self.route = route
        self.topics = topics
        self.limiter = limiter
        self.progress = progress
        self.options = options
        self.reuploader = reuploader
        self.forwards_restricted = route.source_protected
        self.work_planned = asyncio.Event()  # set by the planner: claim now instead of at the next look
        self._preparing = asyncio.Semaphore(options.window)
        self._slots = asyncio.Semaphore(options.window)  # ORDERED=topic: claims held and not yet published
        self._publishing: set[int] = set()  # ids of the units this session is publishing now (any lane)
        # One send of this account at a time, lanes included: the account's flood quotas are one budget, and
        # sends racing into a penalty lengthen it (and teach the pacing a far smaller window).
        self._send_turn = asyncio.Lock()
        self._queued_up_to = 0  # highest id claimed ahead (ordered claims only grow)
        self._others: tuple[float, int] = (0.0, 0)  # (when looked, other live sessions)
        self._unknown: tuple[str, list[int]] = ("", [])  # an unlisted error and the units it refused in a row
        self._limits: appconfig.AccountLimits | None = None  # from the account's app config, read once
        self._custom_emoji_noted = False
        self._limits_lock = asyncio.Lock()
        # Whether Telegram is reachable right now (the session sets the client's transport state): cut off,
        # the session claims nothing and gives its unsent work to the others instead of holding it.
        self.link: Callable[[], bool] = lambda: True
        self.stats = WorkerStats()
        self.source = SourceCache(self._fetch)
        self._unpublished = 0  # claims taken and not yet published (shared: at most one)
        self._published = asyncio.Event()

    # ---- the loop ------------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, work_done: Callable[[], bool], planning: Callable[[], bool] = lambda: False
    ) -> None:
        """Claim → prepare ahead → publish in order, until ``stop`` or (not live) nothing is left.

        ``planning`` tells whether the planner is still reading the history: meanwhile forward
        batches are claimed whole, not cut short at the end of what it has enqueued so far."""
        queue: asyncio.Queue[Claimed | None] = asyncio.Queue(self.options.window)
        producer = asyncio.create_task(self._produce(queue, stop, work_done, planning))
        try:
            if self.options.by_topic:
                await self._publish_by_topic(queue)
            else:
                while (entry := await queue.get()) is not None:
                    try:
                        await self._publish_claim(entry)
                    finally:
                        self._unpublished -= 1
                        self._published.set()
            await producer  # ended: re-raise what stopped it, if anything did
        finally:
            log.info("%s: %s", self.session, self.stats.line(), extra={"event": "worker_stats"})
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            while not queue.empty():
                left = queue.get_nowait()
                if left is not None:
                    left.cancel()

    async def _publish_by_topic(self, queue: asyncio.Queue[Claimed | None]) -> None:
        """ORDERED=topic: one lane per source topic publishes that topic's claims in order, lanes side by
        side, so a topic waiting for its turn (or for a message in another topic it replies to) holds up no
        other topic. Every claim goes to its lane at once: what this session holds is always on its way."""
        lanes: dict[int | None, asyncio.Queue[Claimed | None]] = {}

        async def lane(claims: asyncio.Queue[Claimed | None]) -> None:
            try:
                while (claimed := await claims.get()) is not None:
                    try:
                        await self._publish_claim(claimed)
                    finally:
                        self._slots.release()
                        self._unpublished -= 1
                        self._published.set()
            finally:
                while not claims.empty():
                    if (left := claims.get_nowait()) is not None:
                        left.cancel()

        try:
            async with asyncio.TaskGroup() as group:
                while (entry := await queue.get()) is not None:
                    topic = entry.items[0].topic_id
                    if topic not in lanes:
                        lanes[topic] = asyncio.Queue()
                        group.create_task(lane(lanes[topic]))
                    lanes[topic].put_nowait(entry)
                for claims in lanes.values():
                    claims.put_nowait(None)
        except BaseExceptionGroup as failed:  # a lane stopped the session: its own error, as unordered
            raise failed.exceptions[0]  # noqa: B904 - the group only wraps it

    async def _produce(
        self,
        queue: asyncio.Queue[Claimed | None],
        stop: asyncio.Event,
        work_done: Callable[[], bool],
        planning: Callable[[], bool],
    ) -> None:
        try:
            await self._claim_ahead(queue, stop, work_done, planning)
        finally:
            # Wake the publisher whether claiming ended, failed or the planner died (work_done raised).
            if not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                await queue.put(None)

    async def _claim_ahead(
        self,
        queue: asyncio.Queue[Claimed | None],
        stop: asyncio.Event,
        work_done: Callable[[], bool],
        planning: Callable[[], bool],
    ) -> None:
        idle = 0.05
        short_since: float | None = None  # when a whole forward batch was first not there yet
        while not stop.is_set():
            if not self.link():
                self._hand_back()  # what this session cannot send now, another one can
                await _sleep_or_stop(stop, 0.2)
                continue
            sharing = self._sharing()
            if sharing:
                busy = max(self.limiter.ready_in() - CLAIM_LEAD_SECONDS, 0.0)
            else:
                busy = self._busy_for() if self.options.ordered else 0.0
            if busy:
                # Work claimed now would only wait for this account and hold the route up.
                await _sleep_or_stop(stop, busy)
                continue
            if sharing and self._unpublished:
                # One message at a time: the next one goes to whichever account is ready first.
                self._published.clear()
                await _sleep_or_event(stop, self._published, 0.05)
                continue
            # Ordered, claims ahead only grow: anything lower that comes free is taken at the turn. By topic,
            # each claim is the run of one topic from its lowest claimable message.
            by_topic = self.options.by_topic
            after = self._queued_up_to if self.options.ordered and not by_topic and not queue.empty() else None
            whole = (
                self.options.claim_size >= FORWARD_BATCH
                and planning()
                and (short_since is None or time.monotonic() - short_since < WHOLE_BATCH_WAIT)
            )
            if by_topic:
                await self._slots.acquire()  # released by the lane once the claim is published
            self.work_planned.clear()  # before the claim: a plan during it wakes the next look
            items = self.store.claim(
                self.route.route_id,
                self.session,
                1 if sharing else self.options.claim_size,
                self.options.lease_seconds,
                after=after,
                at_least=self.options.claim_size if whole else 1,
                topic_run=by_topic,
            )
            if not items and by_topic:
                self._slots.release()
            if not items and whole:  # the planner's next page is on its way: a short pause, not an idle
                short_since = short_since or time.monotonic()
                await _sleep_or_stop(stop, 0.02)
                continue
            if not items:
                if work_done():
                    break
                self.progress.touch()  # idle while live is healthy: nothing to copy is not a stall
                # Woken by this session's planner at once; work another session planned (or a lease
                # that ran out) is found by the next look, which backs off to once a second.
                started = time.monotonic()
                await _sleep_or_event(stop, self.work_planned, idle)
                self.stats.idle_seconds += time.monotonic() - started
                idle = min(idle * 2, 1.0)
                continue
            idle, short_since = 0.05, None
            self._queued_up_to = items[-1].source_msg_id
            self._unpublished += 1
            await queue.put(self._claimed(items))

    # ---- preparation ---------------------------------------------------------------------------

    def _claimed(self, items: list[WorkItem]) -> Claimed:
        self.stats.claims += 1
        self.stats.claimed += len(items)
        return Claimed(items, asyncio.create_task(self._prepare_claim(items)))

    async def _prepare_claim(self, items: list[WorkItem]) -> list[tuple[Unit, asyncio.Task[Prepared | None]]]:
        """Fetch a claim's messages (with the ids after them: see sourcecache.py), cut it into units and start
        preparing each."""
        last = items[-1].source_msg_id
        planned = self._planned_up_to()
        ahead = range(last + 1, min(last + READ_AHEAD, planned) + 1)
        messages = await self.source.messages([item.source_msg_id for item in items], ahead=ahead)
        by_id = {item.source_msg_id: message for item, message in zip(items, messages, strict=True)}
        units = units_of(items)
        for unit in units:
            unit.messages = [by_id[i] for i in unit.ids]
        keys = [self._forward_key(unit) for unit in units]
        if any(key is not None for key in keys):
            # A topic's run has no message of its topic that another session holds in between.
            units = forward_batches(units, keys, contiguous=self.options.ordered and not self.options.by_topic)
        return [(unit, asyncio.create_task(self._prepare_in_turn(unit))) for unit in units]

    async def _fetch(self, ids: list[int]) -> list[Any]:
        self.stats.reads += 1
        self.stats.read_ids += len(ids)
        messages = await self.limiter.call(
            "GetMessages", lambda: self.client.get_messages(self.route.source_peer, ids=ids)
        )
        return list(messages)

    def _planned_up_to(self) -> int:
        return next((r.high_water for r in self.store.routes() if r.id == self.route.route_id), 0)

    def _forward_key(self, unit: Unit) -> Hashable | None:
        """What a forwarded unit may share a batch by, or None when it is not forwarded: its topic and the
        message it replies to, for ``forwardMessages`` takes one reply target for the whole call (a reply
        is forwarded in a call of its own, or with neighbours that answer the same message)."""
        if any(skip_reason(m) is not None for m in unit.messages) or self._transfer_for(unit.messages) != "forward":
            return None
        first = unit.messages[0]
        return ("topic", topic_of(first, self.route.source_is_forum), "reply", replied_id(first))

    async def _prepare_in_turn(self, unit: Unit) -> Prepared | None:
        async with self._preparing:  # files are transferred for a bounded number of units at once
            return await self._prepare(unit)

    def _transfer_for(self, messages: Sequence[Any]) -> Transfer:
        mode = self.options.mode
        if mode != "auto":
            return mode
        protected = self.forwards_restricted or any(getattr(m, "noforwards", False) for m in messages)
        if protected:
            return "reupload"
        return "copy" if self.options.rules.transforms.active else "forward"  # a forward cannot change text

    async def _prepare(self, unit: Unit) -> Prepared | None:
        sendable: list[tuple[WorkItem, Any]] = []
        skipped: dict[str, list[int]] = {}
        for item, message in zip(unit.items, unit.messages, strict=True):
            reason = skip_reason(message)
            if reason != "deleted":
                reason = self.options.rules.filtered(message) or reason
            if reason is None:
                sendable.append((item, message))
            else:
                skipped.setdefault(reason, []).append(item.source_msg_id)
        if not sendable:
            return Prepared("copy", Placement(self.route.target_peer), [], skipped)
        transfer = self._transfer_for([m for _, m in sendable])
        if transfer != "forward":
            sendable = _without_uncopyable(sendable, skipped)
            if not sendable:
                return Prepared(transfer, Placement(self.route.target_peer), [], skipped)
        first = sendable[0][1]
        topic = await self.topics.target_topic(topic_of(first, self.route.source_is_forum))
        placement = Placement(self.route.target_peer, topic_id=topic)
        prepared = Prepared(transfer, placement, sendable, skipped)
        if transfer != "forward":
            album = len(sendable) > 1
            prepared.outs = [await self._outgoing(m, transfer, album) for _, m in sendable]
            _without_empty(prepared)
            if not prepared.sendable:
                return Prepared(transfer, placement, [], prepared.skipped)
        return prepared

    async def _outgoing(self, message: Any, transfer: Transfer, album: bool) -> Outgoing:
        media = message.media
        limits = await self._account_limits()
        limit = limits.caption
        mentions = await self._mention_inputs(message)
        topic = topic_of(message, self.route.source_is_forum)
        shown = self.options.rules.shown(message, text_entities(message, mentions), topic=topic)
        if not limits.premium and not self._custom_emoji_noted and _has_custom_emoji(shown[1]):
            self._custom_emoji_noted = True  # Telegram drops them from a non-premium sender's message
            log.warning("this account is not premium: custom emoji arrive in the target as their plain emoji")
        if is_file_media(media):
            if transfer == "reupload":
                if self.reuploader is None:
                    raise RuntimeError("streaming reupload is not available in this build")
                built = await self.reuploader.media(
                    self.client, message, for_album=album, target_peer=self.route.target_peer
                )
                return outgoing(message, built, caption_limit=limit, shown=shown)
            return outgoing(message, reference_media(media), caption_limit=limit, shown=shown)
        return outgoing(message, recreated_media(media), caption_limit=limit, shown=shown)

    async def _account_limits(self) -> appconfig.AccountLimits:
        async with self._limits_lock:
            if self._limits is None:
                self._limits = await self.limiter.call("GetAppConfig", lambda: appconfig.account_limits(self.client))
            return self._limits

    def _input_user(self, user_id: int) -> Callable[[], Awaitable[Any]]:
        async def resolve() -> Any:  # from the entity cache: the fetched message brought its users along
            return utils.get_input_user(await self.client.get_input_entity(user_id))

        return resolve

    async def _mention_inputs(self, message: Any) -> dict[int, Any]:
        """user id → InputUser for the users a message mentions by id; one this account cannot
        resolve (no access hash) is left out, and its mention is sent as plain text."""
        found: dict[int, Any] = {}
        for user_id in mentioned_users(message):
            try:
                found[user_id] = await self.limiter.call("GetUsers", self._input_user(user_id))
            except (SessionStopped, Stopping):
                raise
            except Exception as exc:
                log.warning(
                    "message %d mentions user %d, whom this account cannot resolve (%s): the mention is sent as "
                    "plain text",
                    message.id,
                    user_id,
                    error_name(exc),
                    extra={"event": "mention_plain", "msg_id": message.id},
                )
        return found

    # ---- publishing ----------------------------------------------------------------------------

    async def _publish_claim(self, claimed: Claimed) -> None:
        try:
            units = await claimed.units
        except Stopping:
            return
        except SessionStopped:
            raise
        except Exception as exc:  # the claim's messages could not be read
            await self._failed(Unit(claimed.items), [i.source_msg_id for i in claimed.items], exc, "SOURCE_CHAT")
            return
        for position, (unit, preparing) in enumerate(units):
            try:
                await self._publish(unit, preparing)
            except BaseException:
                for _unit, later in units[position + 1 :]:
                    later.cancel()
                raise

    async def _publish(self, unit: Unit, preparing: asyncio.Task[Prepared | None]) -> None:
        try:
            prepared = await preparing
        except Stopping:
            return
        except SessionStopped:
            raise
        except Exception as exc:
            await self._failed(unit, unit.ids, exc)
            return
        if prepared is None:
            return
        parts = units_of(unit.items)
        refused_since = prepared.transfer == "forward" and self.forwards_restricted
        if refused_since or (prepared.transfer != "forward" and len(parts) > 1):
            # Forwarding was refused after this unit was prepared: copy it send by send (albums whole).
            by_id = dict(zip(unit.ids, unit.messages, strict=True))
            for part in parts:
                part.messages = [by_id[i] for i in part.ids]
                await self._publish(part, asyncio.create_task(self._prepare_in_turn(part)))
            return
        for reason, ids in prepared.skipped.items():
            self.store.skip(self.route.route_id, ids, reason, self.session)
            self.progress.skipped += len(ids)
        if not prepared.sendable:
            return
        ids = [item.source_msg_id for item, _ in prepared.sendable]
        self._publishing.update(ids)
        try:
            await self._publish_prepared(unit, prepared, ids)
        finally:
            self._publishing.difference_update(ids)

    async def _publish_prepared(self, unit: Unit, prepared: Prepared, ids: list[int]) -> None:
        if self.options.ordered:
            try:
                started = time.monotonic()
                try:
                    in_turn = await self._wait_turn(prepared.sendable[0][0])
                finally:
                    self.stats.turn_seconds += time.monotonic() - started
                if not in_turn:
                    return  # handed over meanwhile: the unit is the others' now (or done), nothing to send here
                if self.options.by_topic:
                    await self._wait_replied(prepared)
            except Stopping:
                return
        async with self._send_turn:
            await self._send_in_turn(unit, prepared, ids)

    async def _send_in_turn(self, unit: Unit, prepared: Prepared, ids: list[int]) -> None:
        if self.options.ordered and self._busy_for(_method(prepared)) and self._others_alive():
            self._hand_back()  # another account can send it sooner than this one
            return
        if not self.link():
            self._hand_back()  # cut off from Telegram: a send now would only wait in the client's queue
            return
        self._map_reply(prepared)
        try:
            if any(item.takeover for item, _ in prepared.sendable) and await self._adopt_earlier_copy(prepared):
                return
            started = time.monotonic()
            try:
                targets = await self._send(prepared)  # marked sending right before its request (confirm_send)
            finally:
                self.stats.send_seconds += time.monotonic() - started
        except HandedBack:
            return  # Telegram refused the send for now and the unit went to the other sessions
        except LeaseLost:
            # Nothing was sent. Handed over earlier, the unit is someone else's and this session's other
            # leases stay; still held with too little time left (a stall), everything unsent goes.
            if self._holds_any(ids):
                self._hand_back_refused(prepared)
            return
        except Stopping:
            self._hand_back_refused(prepared)  # refused by a flood wait, and this session is leaving
            return
        except SessionStopped:
            raise
        except Exception as exc:
            if error_name(exc) == "TOPIC_DELETED":
                await self._send_to_recreated_topic(unit, prepared, exc)
            else:
                await self._recover(unit, prepared, exc)
            return
        self.store.complete(self.route.route_id, targets, self.session)
        self.progress.copied(len(targets))
        self.stats.sends += 1
        self._unknown = ("", [])
        log.debug("copied %s -> %s", list(targets), list(targets.values()), extra={"event": "copied", "msg_id": ids[0]})
        if len(targets) < len(ids):
            await self._settle_uncopied([i for i in ids if i not in targets])

    async def _settle_uncopied(self, ids: list[int]) -> None:
        """A forward answers only for the messages it copied (one deleted meanwhile is left out): settle the
        rest at once, never leaving them leased and marked sending, which would hold an ordered route."""
        try:
            fresh = await self._fetch(ids)
        except (SessionStopped, Stopping):
            raise
        except Exception:
            fresh = []  # could not look: all of them are retried
        gone = [i for i, message in zip(ids, fresh, strict=False) if skip_reason(message) == "deleted"]
        if gone:
            log.info("%s were deleted from the source before the forward: skipped", gone, extra={"event": "skipped"})
            self.store.skip(self.route.route_id, gone, "deleted", self.session)
            self.progress.skipped += len(gone)
        rest = [i for i in ids if i not in gone]
        if rest:
            reason = "NOT_FORWARDED"  # Telegram executed the call without copying them: send them again later
            log.warning("%s were not copied by the forward: retried", rest, extra={"event": "send_failed"})
            self.store.fail(
                self.route.route_id,
                rest,
                reason,
                self.session,
                retryable=True,
                max_attempts=self.options.max_attempts,
                backoff_seconds=1.0,
            )

    def _map_reply(self, prepared: Prepared) -> None:
        """Point the copy at the copy of the message it answers, in every mode. Mapped only at send time:
        in order, the replied message was published before this one; unordered, what is known by then.
        A reply to a message never copied (skipped, deleted, a service message) goes without one."""
        replied = replied_id(prepared.sendable[0][1])
        if replied is not None:
            target = self.store.target_ids(self.route.route_id, [replied]).get(replied)
            prepared.placement = dataclasses.replace(prepared.placement, reply_to_msg_id=target)

    async def _send_to_recreated_topic(self, unit: Unit, prepared: Prepared, exc: Exception) -> None:
        """TOPIC_DELETED: the mapped target topic is gone. Create it again once (a new mapping in the
        checkpoint) and send there; a second TOPIC_DELETED is a problem of the chat, not of a message."""
        ids = [item.source_msg_id for item, _ in prepared.sendable]
        source_topic = topic_of(prepared.sendable[0][1], self.route.source_is_forum)
        deleted = prepared.placement.topic_id
        if source_topic is None or deleted is None:
            await self._failed(unit, ids, exc)
            return
        try:
            recreated = await self.topics.recreate(source_topic, deleted)
            prepared.placement = dataclasses.replace(prepared.placement, topic_id=recreated)
            targets = await self._send(prepared, may_hand_back=False)
        except Stopping:
            self._hand_back_refused(prepared)
            return
        except SessionStopped:
            raise
        except Exception as again:
            if error_name(again) != "TOPIC_DELETED":
                await self._recover(unit, prepared, again)
                return
            self.store.release(self.session, route_id=self.route.route_id, only_unsent=True)
            raise SessionStopped(
                f"Telegram answered TOPIC_DELETED again for the topic created anew for source topic {source_topic}: "
                "topics of the target are being deleted; stop whoever deletes them, then start the session again"
            ) from again
        self.store.complete(self.route.route_id, targets, self.session)
        self.progress.copied(len(targets))

    async def _send(self, prepared: Prepared, *, may_hand_back: bool = True) -> dict[int, int]:
        items = [item for item, _ in prepared.sendable]
        placement = prepared.placement
        method = _method(prepared)
        ids = [item.source_msg_id for item in items]
        hand_back = self._hand_back_on_flood(prepared) if may_hand_back else None
        spare = min(self.options.lease_seconds / 3, LEASE_SPARE_SECONDS)

        def still_ours() -> bool:  # right before the request: no send under a lease about to lapse; marks it sending
            return self.store.confirm_send(self.route.route_id, ids, self.session, spare)

        def not_sent() -> None:
            # A flood refusal is Telegram's answer: the refused request was not executed, so the unit is
            # waiting, not sending — when that request was the whole unit (_refusal_settles).
            if _refusal_settles(prepared):
                self.store.unmark_refused(self.route.route_id, ids, self.session)

        if prepared.transfer == "forward":  # a unit holds at most FORWARD_BATCH messages
            return await self.limiter.call(
                method,
                lambda: _answered(
                    sender.forward(
                        self.client,
                        self.route.source_peer,
                        placement,
                        [i.source_msg_id for i in items],
                        [i.random_id for i in items],
                    )
                ),
                messages=len(items),
                hand_back=hand_back,
                guard=still_ours,
                refused=not_sent,
            )
        if len(items) == 1:
            item = items[0]
            target = await self.limiter.call(
                method,
                lambda: _answered(sender.send_one(self.client, placement, item.random_id, prepared.outs[0])),
                hand_back=hand_back,
                guard=still_ours,
                refused=not_sent,
            )
            return {item.source_msg_id: target}
        members = [(item.random_id, out) for item, out in zip(items, prepared.outs, strict=True)]
        by_random = await self.limiter.call(
            method,
            lambda: _answered(sender.send_album(self.client, placement, members)),
            messages=len(members),
            hand_back=hand_back,
            guard=still_ours,
            refused=not_sent,
        )
        return {item.source_msg_id: by_random[item.random_id] for item in items}

    async def _recover(self, unit: Unit, prepared: Prepared, exc: Exception) -> None:
        """Decide what a failed send means: count a failure, or (a refusal that executed nothing) send
        again part by part, recording each part as it lands."""
        if error_name(exc) == "REPLY_MESSAGE_ID_INVALID" and prepared.placement.reply_to_msg_id is not None:
            await self._send_without_reply(unit, prepared)
            return
        kind = classify(exc)
        if kind.kind is ErrorKind.FORWARDS_RESTRICTED and prepared.transfer == "forward":
            log.warning("the source refuses forwarding (protected content): switching to reupload")
            self.forwards_restricted = True
            parts = units_of(unit.items)  # a forward batch is copied message by message (albums whole)
        elif kind.kind is ErrorKind.FILE_REFERENCE_EXPIRED:
            parts = [unit]
        elif error_name(exc) in CAPTION_REFUSALS and _captioned(prepared):
            await self._send_captions_apart(unit, prepared, exc)
            return
        else:
            await self._failed(unit, [item.source_msg_id for item, _ in prepared.sendable], exc)
            return
        for position, part in enumerate(parts):
            try:
                targets = await self._retry_prepared(part)
            except Stopping:  # this part and the rest were not sent (a caption follow-up aside: they are looked for)
                self._hand_back(doubtful=[i for rest in parts[position:] for i in rest.ids])
                return
            if targets:
                self.store.complete(self.route.route_id, targets, self.session)
                self.progress.copied(len(targets))

    async def _send_without_reply(self, unit: Unit, prepared: Prepared) -> None:
        """The replied message's copy is gone from the target (deleted there): Telegram refused the send
        and posted nothing, so it goes again as a plain message, as for a reply to a message never copied."""
        log.warning(
            "the copy %s that %s replies to is gone from the target: sending without the reply",
            prepared.placement.reply_to_msg_id,
            unit.ids,
        )
        prepared.placement = dataclasses.replace(prepared.placement, reply_to_msg_id=None)
        await self._send_again(unit, prepared)

    async def _send_captions_apart(self, unit: Unit, prepared: Prepared, refusal: Exception) -> None:
        """Telegram found a caption too long (its count or limit differs from ours): send the media
        without it and the caption as a follow-up reply, as for a caption known to be too long."""
        log.info(
            "Telegram answered %s for %s: sending the caption as a follow-up message",
            error_name(refusal),
            unit.ids,
            extra={"event": "caption_follow_up", "msg_id": unit.first_id},
        )
        await self._send_again(unit, dataclasses.replace(prepared, outs=_captions_apart(prepared.outs)))

    async def _send_again(self, unit: Unit, prepared: Prepared) -> None:
        """Send a unit already marked sending once more, as the caller changed it, and record what lands."""
        ids = [item.source_msg_id for item, _ in prepared.sendable]
        try:
            targets = await self._send(prepared, may_hand_back=False)  # the unit is marked sending: finish it here
        except Stopping:
            self._hand_back_refused(prepared)
            return
        except SessionStopped:
            raise
        except Exception as exc:
            await self._failed(unit, ids, exc)
            return
        self.store.complete(self.route.route_id, targets, self.session)
        self.progress.copied(len(targets))

    async def _retry_prepared(self, unit: Unit) -> dict[int, int] | None:
        try:
            unit.messages = await self._fetch(unit.ids)  # fresh file references, current noforwards
            prepared = await self._prepare(unit)
            if prepared is None or not prepared.sendable:
                return None
            self._map_reply(prepared)
            return await self._send(prepared, may_hand_back=False)  # the unit is marked sending: finish it here
        except (SessionStopped, Stopping):
            raise
        except Exception as exc:
            await self._failed(unit, unit.ids, exc)
            return None

    # ---- sharing an ordered route --------------------------------------------------------------

    def _busy_for(self, method: str | None = None) -> float:
        """Ordered: how long this account would hold the route's next message beyond what is worth
        waiting for (0: it may send). Pacing (``SEND_INTERVAL`` or a learned spread) and flood waits up to
        HANDOVER_SECONDS are sat out."""
        return max(self.limiter.ready_in(method) - HANDOVER_SECONDS, 0.0)

    def _sharing(self) -> bool:
        """Ordered, copying (preparing a unit takes moments), with other live sessions: the next message
        goes to whichever account can send it first, one at a time. Forwards keep their batches, and
        reuploads their transfers ahead, by claiming ahead as alone."""
        return self.options.ordered and self._transfer_for(()) == "copy" and self._others_alive()

    def _others_alive(self) -> bool:
        looked, count = self._others
        if time.monotonic() - looked > 2.0:
            count = self.store.others_alive(self.session, self.options.lease_seconds)
            self._others = (time.monotonic(), count)
        return count > 0

    def _holds_any(self, ids: Sequence[int]) -> bool:
        return any(
            (held := self.store.open_item(self.route.route_id, i)) is not None and held.holder == self.session
            for i in ids
        )

    def _hand_back(self, refused: Sequence[int] = (), doubtful: Sequence[int] = ()) -> None:
        given = self.store.hand_back(self.route.route_id, self.session, refused, doubtful)
        self.stats.hand_backs += 1
        self.stats.handed += given
        log.debug("handed %d unsent messages to the other sessions", given, extra={"event": "hand_back"})

    def _hand_back_refused(self, prepared: Prepared) -> None:
        """Give a unit Telegram refused back with the other unsent leases: unmarked when the refusal proves
        nothing of it was sent, else with its mark, so whoever takes it looks in the target first."""
        ids = [item.source_msg_id for item, _ in prepared.sendable]
        if _refusal_settles(prepared):
            self._hand_back(refused=ids)
        else:
            self._hand_back(doubtful=ids)

    def _hand_back_on_flood(self, prepared: Prepared) -> Callable[[], Awaitable[bool]] | None:
        """Ordered with other sessions alive: a flood-waited send goes to them rather than waiting here."""
        if not self.options.ordered:
            return None

        async def hand_back() -> bool:
            if not self._others_alive():
                return False
            self._hand_back_refused(prepared)  # FLOOD_WAIT: Telegram did not execute the request it refused
            return True

        return hand_back

    async def _failed(self, unit: Unit, ids: Sequence[int], exc: BaseException, chat_key: str = "TARGET_CHAT") -> None:
        """Act on a failed unit by the error's scope: skip (message), stop (chat, account), or count an attempt."""
        kind = classify(exc)
        if isinstance(exc, TransferFailed) and exc.error:
            kind = classify_name(exc.error)  # a transfer part's refusal, known by its name only
        name = kind.name
        if kind.kind is ErrorKind.ACCOUNT:
            raise SessionStopped(f"session {self.session}: Telegram answered {name}: {kind.fix}.") from exc
        if kind.kind is ErrorKind.CHAT:
            self._stop_route(f"{chat_key}: Telegram answered {name}: {kind.fix}.", exc)
        if isinstance(exc, TransferError) and not exc.retryable and not isinstance(exc, SourceChanged):
            reason = exc.reason if isinstance(exc, TooLarge) else (getattr(exc, "error", "") or exc.reason)
            log.warning("skipping %s: %s", list(ids), exc, extra={"event": "skipped", "msg_id": ids[0]})
            self.store.skip(self.route.route_id, ids, reason, self.session)
            self.progress.skipped += len(ids)
            return
        if kind.kind is ErrorKind.MESSAGE:
            log.warning("skipping %s: %s", list(ids), name, extra={"event": "skipped", "msg_id": ids[0]})
            self.store.skip(self.route.route_id, ids, name, self.session)
            self.progress.skipped += len(ids)
            return
        if kind.kind is ErrorKind.UNKNOWN:
            self._count_unknown(kind, ids[0], exc, chat_key)
        attempts = max(item.attempts for item in unit.items) + 1
        backoff = min(2.0**attempts, 300.0)
        if isinstance(exc, FloodWaitTooLong):
            backoff = max(backoff, exc.seconds)
        if isinstance(exc, SendTimedOut):
            backoff = 0.0  # the unit is in doubt: whoever can reach Telegram settles it by the takeover rules now
        log.warning(
            "attempt %d on %s failed: %s; retrying in %.0fs",
            attempts,
            list(ids),
            name,
            backoff,
            extra={"event": "send_failed", "msg_id": ids[0]},
        )
        failed = self.store.fail(
            self.route.route_id,
            ids,
            name,
            self.session,
            retryable=True,
            max_attempts=self.options.max_attempts,
            backoff_seconds=backoff,
        )
        if failed and attempts >= self.options.max_attempts:
            self.progress.failed += len(ids)

    def _stop_route(self, sentence: str, exc: BaseException) -> None:
        """A chat-level problem: nothing is skipped; the unsent leases go back and the session stops."""
        self.store.release(self.session, route_id=self.route.route_id, only_unsent=True)
        self.store.set_session_state(self.session, "blocked", sentence)
        raise SessionStopped(sentence) from exc

    def _count_unknown(self, kind: Classified, first_id: int, exc: BaseException, chat_key: str) -> None:
        """An unlisted refusal is retried like a transient one, but met UNKNOWN_STREAK times in a row (on one
        message or several) it is about the chat or the account: stop before any message is failed by it."""
        name, units = self._unknown
        units = units if name == kind.name else []
        units.append(first_id)
        self._unknown = (kind.name, units)
        if len(units) >= UNKNOWN_STREAK:
            self._stop_route(
                f"{chat_key}: Telegram refused messages {sorted(set(units))} {len(units)} times in a row with "
                f"{kind.name}, which telepi does not know; nothing was skipped: check the chat and the account's "
                "rights in it, then start the session again",
                exc,
            )

    async def _wait_replied(self, prepared: Prepared) -> None:
        """ORDERED=topic: a reply waits until the message it answers is published, which may be in a topic
        that is behind, for Telegram cannot point a sent message at another reply later. Publishes that
        message itself when nobody holds it. It has a lower id, and every wait in this mode is for lower
        ids only, so the lowest unit still held can always go: no two sessions wait for each other."""
        replied = replied_id(prepared.sendable[0][1])
        if replied is None:
            return
        pause = TURN_POLL[0]
        while (awaited := self.store.open_item(self.route.route_id, replied)) is not None:
            if self.limiter.stop.is_set():
                raise Stopping("reply")
            if awaited.claimable and not self._busy_for():
                items = self.store.claim(
                    self.route.route_id,
                    self.session,
                    1,
                    self.options.lease_seconds,
                    after=replied - 1,
                    before=replied + 1,
                )
                if items:
                    await self._publish_claim(self._claimed(items))
                    continue
            self.progress.touch()
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, TURN_POLL[1])

    async def _wait_turn(self, first: WorkItem) -> bool:
        """Return True once every message before ``first`` (of its topic, ORDERED=topic) is published,
        publishing what nobody holds; False when ``first`` is no longer this session's to send: handed
        over meanwhile (pending, or claimed by another session) or already settled. Sending it anyway
        would only meet the lease guard, and its refusal would hand over this session's other leases
        too: two accounts would keep taking each other's work away, neither sending (the 2-account
        ``ORDERED=topic`` stall)."""
        first_id = first.source_msg_id
        topic: TopicFilter = first.topic_id if self.options.by_topic else ANY_TOPIC
        pause = TURN_POLL[0]
        while True:
            head = self.store.head(self.route.route_id, topic)
            if head is None or head.source_msg_id > first_id:
                return False  # ``first`` is no longer open: another session settled it
            if head.source_msg_id == first_id:
                return head.holder == self.session
            if self.limiter.stop.is_set():
                raise Stopping("turn")
            if head.holder == self.session and not head.claimable and head.source_msg_id not in self._publishing:
                # Ours but queued behind this unit (claimed back after a hand-over): let it go round.
                self._hand_back()
            elif head.claimable and not self._busy_for() and self.link():
                items = self.store.claim(
                    self.route.route_id,
                    self.session,
                    1 if self._sharing() else self.options.claim_size,
                    self.options.lease_seconds,
                    before=first_id,
                    topic_run=self.options.by_topic,
                    topic=topic,
                )
                if items:
                    await self._publish_claim(self._claimed(items))
                    pause = TURN_POLL[0]
                    continue
            self.progress.touch()
            if self.store.notifies and not head.claimable and head.holder not in (None, self.session):
                # Another session holds the head: its complete (or hand-back) wakes this wait.
                await asyncio.to_thread(self.store.wait_head, self.route.route_id, HEAD_WAIT)
                continue
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, TURN_POLL[1])

    async def _adopt_earlier_copy(self, prepared: Prepared) -> bool:
        """After a takeover, complete from the copy a previous holder already made — only when it is
        certainly that copy. True when the unit is settled (adopted, or left for review).

        The copy of a unit is a run of consecutive target messages (an album, a forward batch: one atomic
        call each) from the previous holder's account, sent after its first send attempt started, recorded
        for no route into this target, showing what the copy would show (a caption moved to its follow-up
        shows none). Exactly one such run is adopted; none means it was never sent; several (look-alikes) mean
        any choice could be wrong: neither adopted nor sent again, the unit is skipped as
        ``needs_review`` (visible in ``telepi status``; ``telepi verify`` resolves it)."""
        first = prepared.sendable[0][0]
        if first.send_session == self.session:
            return False  # our own earlier send: the same random_id makes Telegram return that message
        sender_id = self.store.session_user_id(first.send_session or "")
        # From its first attempt: a retry after a flood wait or a restart may have come long after the copy.
        since = (first.first_send_at or first.send_started_at or time.time()) - 60
        ids = [item.source_msg_id for item, _ in prepared.sendable]
        recent = await self._target_back_to(since)
        if recent is None:
            why = f"more than {TAKEOVER_READ} messages reached the target since its first attempt"
            return self._hold_for_review(ids, f"{why}: the copy {first.send_session} may have made is beyond reach")
        taken = self.store.mapped_targets(self.route.route_id, [m.id for m in recent if isinstance(m, types.Message)])

        def could_be_ours(candidate: Any) -> bool:
            if not isinstance(candidate, types.Message) or candidate.id in taken:
                return False
            # A channel post carries no sender (from_id None): there only content and time can tell.
            if sender_id is not None and candidate.from_id is not None and candidate.sender_id != sender_id:
                return False
            return candidate.date is None or candidate.date.timestamp() >= since

        wanted = [_copy_signature(prepared, position) for position in range(len(prepared.sendable))]
        runs = [
            recent[start : start + len(wanted)]
            for start in range(len(recent) - len(wanted) + 1)
            if all(
                could_be_ours(candidate) and signature(candidate) == expected
                for candidate, expected in zip(recent[start : start + len(wanted)], wanted, strict=True)
            )
        ]
        if not runs:
            return False
        if len(runs) > 1:
            return self._hold_for_review(
                ids, f"{len(runs)} copies in the target could be the one {first.send_session} made before it died"
            )
        found = {source: int(copy.id) for source, copy in zip(ids, runs[0], strict=True)}
        log.info("found the copy made by %s before it died: %s", first.send_session, found)
        self.store.complete(self.route.route_id, found, self.session)
        self.progress.copied(len(found))
        # A caption too long for its media follows it as a reply, sent after the media: the dead session may
        # have died in between. Only its account may touch its copy, so the follow-up becomes an edit for
        # that account (engine/changes.py sends a missing follow-up, and leaves one already there as it is).
        apart = [source for source, out in zip(ids, prepared.outs, strict=False) if out.overflow_text]
        if apart:
            self.store.enqueue_edits(self.route.route_id, {source: None for source in apart})
        return True

    async def _target_back_to(self, since: float) -> list[Any] | None:
        """The target's messages sent since ``since`` (and the page that reaches back past it), oldest first;
        None when more than TAKEOVER_READ are newer. Other sessions go on copying into the target while a unit
        waits for its takeover (unordered routes), so its copy may lie far below the newest messages."""
        found: list[Any] = []
        offset = 0  # the newest first
        while True:
            page = await self.client.get_messages(self.route.target_peer, limit=READ_PAGE, offset_id=offset)
            found += page
            oldest = min(page, key=lambda m: int(m.id), default=None)
            if oldest is None or len(page) < READ_PAGE or (oldest.date and oldest.date.timestamp() < since):
                return sorted(found, key=lambda m: int(m.id))  # the chat's start, or back past the first attempt
            if len(found) >= TAKEOVER_READ:
                return None
            offset = int(oldest.id)

    def _hold_for_review(self, ids: list[int], why: str) -> bool:
        """Neither adopt a guess nor send again: the unit is skipped as ``needs_review`` for a person."""
        log.warning(
            "%s: %s; not adopting a guess and not sending again: held for review; telepi verify --adopt records "
            "the copy once one is left, telepi verify --requeue sends it when none is",
            ids,
            why,
            extra={"event": "needs_review", "msg_id": ids[0]},
        )
        self.store.skip(self.route.route_id, ids, "needs_review", self.session)
        self.progress.skipped += len(ids)
        return True


Sendable = list[tuple[WorkItem, Any]]


def _copy_signature(prepared: Prepared, position: int) -> str:
    """What the copy of the sendable at ``position`` shows: a copy's own text (a caption that moved to its
    follow-up message is not on it); a forward shows the source's."""
    message = prepared.sendable[position][1]
    if prepared.transfer == "forward" or position >= len(prepared.outs):
        return signature(message)
    return signature(message, shown_text=prepared.outs[position].text)


def _without_uncopyable(sendable: Sendable, skipped: dict[str, list[int]]) -> Sendable:
    """Not forwarded: messages whose media cannot be sent again are skipped at once (``unsupported:story``,
    ``quiz_answer_unknown``), never tried."""
    kept: Sendable = []
    for item, message in sendable:
        reason = cannot_copy(getattr(message, "media", None))
        if reason is None:
            kept.append((item, message))
        else:
            log.warning(
                "skipping %d: %s", item.source_msg_id, reason, extra={"event": "skipped", "msg_id": item.source_msg_id}
            )
            skipped.setdefault(reason, []).append(item.source_msg_id)
    return kept


def _without_empty(prepared: Prepared) -> None:
    """A text message whose transforms left no text cannot be sent: skipped as ``empty``."""
    kept: list[tuple[tuple[WorkItem, Any], Outgoing]] = []
    for pair, out in zip(prepared.sendable, prepared.outs, strict=True):
        if out.media is not None or out.text or out.overflow_text:
            kept.append((pair, out))
        else:
            prepared.skipped.setdefault("empty", []).append(pair[0].source_msg_id)
    prepared.sendable = [pair for pair, _ in kept]
    prepared.outs = [out for _, out in kept]


def _captioned(prepared: Prepared) -> bool:
    return prepared.transfer != "forward" and any(out.media is not None and out.text for out in prepared.outs)


def _captions_apart(outs: list[Outgoing]) -> list[Outgoing]:
    """The captions to move: those over the smallest limit Telegram has (1024), or else every one."""
    long = [out.media is not None and utf16_length(out.text) > CAPTION_LIMIT for out in outs]
    if not any(long):
        return [caption_apart(out) for out in outs]
    return [caption_apart(out) if too_long else out for out, too_long in zip(outs, long, strict=True)]


class SendTimedOut(TimeoutError):
    """Telegram did not answer a send within SEND_TIMEOUT_SECONDS (cut off, say): the request was withdrawn
    and never goes out later; its unit stays marked sending, so whoever takes it looks in the target first."""


async def _answered(send: Awaitable[T]) -> T:
    """The send's answer, or SendTimedOut: past the timeout another session may take the unit over
    (SENDING_STALE_SECONDS), so this one must no longer be able to send it. The client drops a cancelled
    request from its queue (telepi.telegram.client), so a reconnect does not send it after all."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            return await send
    except TimeoutError as exc:
        raise SendTimedOut(f"no answer to the send within {SEND_TIMEOUT_SECONDS:.0f}s: withdrawn") from exc


def _refusal_settles(prepared: Prepared) -> bool:
    """Whether a refusal of this unit's send proves none of it is in the target: the unit goes in one
    request (no caption following its media: that reply is a second request, sent after the media
    landed) and no earlier attempt may have sent it (its claim carried no sending mark)."""
    if any(item.takeover for item, _ in prepared.sendable):
        return False
    return not any(out.overflow_text for out in prepared.outs)


def _method(prepared: Prepared) -> str:
    """The Telegram method that will publish a prepared unit (flood limits are per method)."""
    if prepared.transfer == "forward":
        return "ForwardMessages"
    if len(prepared.sendable) > 1:
        return "SendMultiMedia"
    return "SendMedia" if prepared.outs[0].media is not None else "SendMessage"


async def _sleep_or_event(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def _has_custom_emoji(entities: Sequence[Any] | None) -> bool:
    return any(isinstance(e, types.MessageEntityCustomEmoji) for e in entities or [])
