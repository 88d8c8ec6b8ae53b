"""Mirror source forum topics into the target: each created once per route whatever the sessions do.

Every source topic is mirrored, empty ones included (``mirror_all`` at start-up reads all pages of
source topics), with its title, icon, closed state and, for General, its hidden state.

Exactly once across sessions and crashes: a topic is created under the checkpoint's topic lease,
with a ``random_id`` fixed per (route, source topic) in the checkpoint. Telegram deduplicates
``createForumTopic`` by random_id per account, like sends
(https://core.telegram.org/method/messages.createForumTopic, "random_id: unique client message ID
to prevent duplicate sending"), so the same account retrying after a crash between "created" and
"recorded" gets the same topic back. The dedup protects one account only: when the lease claim says
a *different* account claimed this creation before (it may have created the topic and died before
recording it), the new holder first adopts a target topic with the same title, created by that
account, that the checkpoint has not mapped to any other source topic of the route (the lowest id
if several). A source topic nobody claimed before is created without looking, so two source topics
with the same title stay two, and a topic made in the target by another account is never adopted.
Residual risk, accepted: if one account died twice while creating two same-titled topics, the two
may be swapped between those source topics; neither is duplicated nor lost.

Closed topics are closed right after creation. Creating topics needs the manage-topics right, and
with it an account may still post into a closed topic (TDLib's forumTopicInfo.is_closed: "the user
must have can_manage_topics administrator right to send messages there"); a session whose account
lacks it stops on TOPIC_CLOSED with the fix (a chat/rights problem, never a skip).

A target topic deleted under us (TOPIC_DELETED on a send) is unmapped once and created again.
Non-premium accounts may only use the default topic icons; a custom icon Telegram refuses with
PREMIUM_ACCOUNT_REQUIRED falls back to the colour alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from telethon.tl import functions, types

from telepi.checkpoint.store import Store
from telepi.engine.messages import GENERAL_TOPIC
from telepi.telegram.errors import error_name

log = logging.getLogger(__name__)
TOPIC_LEASE_SECONDS = 60.0
PAGE = 100


async def all_topics(client: Any, peer: Any) -> list[Any]:
    """Every topic of a forum, all pages (no 100-topic cap)."""
    topics: list[Any] = []
    offset_date, offset_id, offset_topic = None, 0, 0
    while True:
        page = await client(
            functions.messages.GetForumTopicsRequest(
                peer=peer, offset_date=offset_date, offset_id=offset_id, offset_topic=offset_topic, limit=PAGE
            )
        )
        batch = [t for t in page.topics if isinstance(t, types.ForumTopic)]
        topics += batch
        if len(page.topics) < PAGE or not batch:
            return topics
        last = batch[-1]
        offset_date, offset_id, offset_topic = last.date, last.top_message, last.id


def load_topic_map(session_dir: Path) -> dict[str, int]:
    """Manual overrides from ``topic_map.json``: {"<source id or title>": <target topic id>}."""
    path = session_dir / "topic_map.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(key): int(value) for key, value in data.items()}


class _Busy(Exception):
    """Another session holds the lease to create this topic."""


class TopicMapper:
    def __init__(
        self,
        client: Any,
        store: Store,
        route_id: int,
        session: str,
        source_peer: Any,
        target_peer: Any,
        *,
        target_is_forum: bool,
        auto_create: bool,
        fixed_target_topic: int | None,
        overrides: dict[str, int] | None = None,
        user_id: int | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.route_id = route_id
        self.session = session
        self.source_peer = source_peer
        self.target_peer = target_peer
        self.target_is_forum = target_is_forum
        self.auto_create = auto_create
        self.fixed = fixed_target_topic
        self.overrides = overrides or {}
        self.user_id = user_id
        self._cache: dict[int, int | None] = {}
        self._known: dict[int, Any] = {}  # source topics read by mirror_all (saves a GetForumTopicsByID each)
        self._lock = asyncio.Lock()
        self._icon_refused = False

    async def mirror_all(self, only: int | None = None) -> int:
        """Map every source topic (or only ``only``) now, empty ones included, in source order, and
        mirror closed/hidden states; returns how many source topics there are."""
        if self.fixed is not None or not self.target_is_forum:
            return 0
        sources = sorted(await all_topics(self.client, self.source_peer), key=lambda t: int(t.id))
        if only is not None:
            sources = [t for t in sources if t.id == only]
        for topic in sources:
            self._known[int(topic.id)] = topic
            with contextlib.suppress(_Busy):  # another session is creating it (and mirrors its state)
                await self.target_topic(int(topic.id), wait=False)
        mine = [t for t in sources if int(t.id) == GENERAL_TOPIC or int(t.id) in self._cache]
        await self._mirror_states(mine, {int(t.id): t for t in await all_topics(self.client, self.target_peer)})
        return len(sources)

    async def sync_state(self, source_topic: int) -> None:
        """A source topic was closed, reopened, hidden or shown: mirror its state now."""
        if self.fixed is not None or not self.target_is_forum:
            return
        self._known.pop(source_topic, None)  # read its state now, not as it was at start-up
        source = await self._source_topic(source_topic)
        target_id = await self._mirrored_target(source_topic)
        if source is None or target_id is None:
            return
        result = await self.client(
            functions.messages.GetForumTopicsByIDRequest(peer=self.target_peer, topics=[target_id])
        )
        targets = {int(t.id): t for t in result.topics if isinstance(t, types.ForumTopic)}
        await self._mirror_states([source], targets)

    async def _mirrored_target(self, source_topic: int) -> int | None:
        """The target topic whose state follows ``source_topic`` (General follows General)."""
        if source_topic == GENERAL_TOPIC:
            return GENERAL_TOPIC if str(GENERAL_TOPIC) not in self.overrides else None
        return await self.target_topic(source_topic)

    async def _mirror_states(self, sources: list[Any], targets: dict[int, Any]) -> None:
        for source in sources:
            target_id = await self._mirrored_target(int(source.id))
            target = targets.get(target_id) if target_id is not None else None
            if target is None:
                continue
            changes: dict[str, bool] = {}
            if bool(source.closed) != bool(target.closed):
                changes["closed"] = bool(source.closed)
            if target_id == GENERAL_TOPIC and bool(source.hidden) != bool(target.hidden):
                changes["hidden"] = bool(source.hidden)  # only General can be hidden
            if changes:
                await self._edit(int(target.id), **changes)

    async def _edit(self, target_id: int, **changes: bool) -> None:
        try:
            await self.client(
                functions.messages.EditForumTopicRequest(peer=self.target_peer, topic_id=target_id, **changes)
            )
        except Exception as exc:
            if error_name(exc) != "TOPIC_NOT_MODIFIED":  # another session mirrored it first
                raise
        log.info("target topic %d now %s", target_id, changes, extra={"event": "topic_state"})

    async def recreate(self, source_topic: int, deleted_target: int) -> int | None:
        """The target topic mapped to ``source_topic`` was deleted: map the source topic to a new one.

        The checkpoint unmaps it only while it still names ``deleted_target``, so when several
        sessions hit the deletion at once one creates the new topic and the others map to it."""
        if self.store.forget_topic(self.route_id, source_topic, deleted_target):
            log.warning(
                "target topic %d of source topic %d was deleted: creating it again",
                deleted_target,
                source_topic,
                extra={"event": "topic_deleted"},
            )
        async with self._lock:
            self._cache.pop(source_topic, None)
        return await self.target_topic(source_topic)

    async def target_topic(self, source_topic: int | None, *, wait: bool = True) -> int | None:
        """Target topic id for a source topic; None means "no topic" (or General). Without ``wait``,
        a topic another session is creating right now raises _Busy instead of waiting for it."""
        if self.fixed is not None:
            return self.fixed
        if source_topic is None or not self.target_is_forum:
            return None
        if source_topic in self._cache:
            return self._cache[source_topic]
        async with self._lock:
            if source_topic not in self._cache:
                self._cache[source_topic] = await self._resolve(source_topic, wait)
        return self._cache[source_topic]

    async def _resolve(self, source_topic: int, wait: bool = True) -> int | None:
        if str(source_topic) in self.overrides:
            return _general_as_none(self.overrides[str(source_topic)])
        if source_topic == GENERAL_TOPIC:
            return None
        source = await self._source_topic(source_topic)
        title = source.title if source is not None else f"Topic {source_topic}"
        if title in self.overrides:
            return _general_as_none(self.overrides[title])
        if not self.auto_create:
            return None
        while True:
            claim = self.store.claim_topic(
                self.route_id, source_topic, self.session, title, TOPIC_LEASE_SECONDS, user_id=self.user_id
            )
            if claim.state == "mapped" and claim.target_topic_id is not None:
                return _general_as_none(claim.target_topic_id)
            if claim.state == "wait":
                if not wait:
                    raise _Busy(source_topic)
                await asyncio.sleep(0.5)
                continue
            target_id = None
            if claim.previous_creator is not None and claim.previous_creator != self.user_id:
                target_id = await self._adopt(title, claim.previous_creator)
            if target_id is None:
                target_id = await self._create(title, source, claim.random_id)
                log.info(
                    "created target topic %r (%d) for source topic %d",
                    title,
                    target_id,
                    source_topic,
                    extra={"event": "topic_created"},
                )
                if source is not None and source.closed:
                    await self._edit(target_id, closed=True)
            self.store.complete_topic(self.route_id, source_topic, target_id, title)
            return _general_as_none(target_id)

    async def _source_topic(self, topic_id: int) -> Any | None:
        if topic_id in self._known:
            return self._known[topic_id]
        result = await self.client(
            functions.messages.GetForumTopicsByIDRequest(peer=self.source_peer, topics=[topic_id])
        )
        return next((t for t in result.topics if isinstance(t, types.ForumTopic)), None)

    async def _adopt(self, title: str, creator: int) -> int | None:
        """A target topic that ``creator`` may have created for this source topic before dying."""
        taken = set(self.store.topic_map(self.route_id).values())
        for topic in sorted(await all_topics(self.client, self.target_peer), key=lambda t: int(t.id)):
            made_by = getattr(topic.from_id, "user_id", None)
            if topic.title == title and made_by == creator and int(topic.id) not in taken:
                log.info("adopting target topic %r (%d) created by user %d", title, topic.id, creator)
                return int(topic.id)
        return None

    async def _create(self, title: str, source: Any | None, random_id: int) -> int:
        emoji = getattr(source, "icon_emoji_id", None)
        try:
            result = await self._create_request(title, source, emoji, random_id)
        except Exception as exc:
            if emoji is None or error_name(exc) != "PREMIUM_ACCOUNT_REQUIRED":
                raise
            if not self._icon_refused:
                self._icon_refused = True
                log.warning("this account is not premium: custom topic icons fall back to the default icon")
            result = await self._create_request(title, source, None, random_id)  # refused: nothing was created
        for update in getattr(result, "updates", None) or []:
            message: Any = getattr(update, "message", None)
            if isinstance(getattr(message, "action", None), types.MessageActionTopicCreate):
                return int(message.id)
        raise RuntimeError(f"topic {title!r} created but its id is missing from the result")

    async def _create_request(self, title: str, source: Any | None, emoji: int | None, random_id: int) -> Any:
        return await self.client(
            functions.messages.CreateForumTopicRequest(
                peer=self.target_peer,
                title=title,
                icon_color=getattr(source, "icon_color", None),
                icon_emoji_id=emoji,
                random_id=random_id,
            )
        )

    async def rename(self, source_topic: int, title: str) -> None:
        """Follow a rename of a source topic in the target (once: the checkpoint keeps the last title)."""
        if self.fixed is not None or not self.target_is_forum or str(source_topic) in self.overrides:
            return
        target = await self.target_topic(source_topic)
        if target is None or self.store.topic_title(self.route_id, source_topic) == title:
            return
        try:
            await self.client(
                functions.messages.EditForumTopicRequest(peer=self.target_peer, topic_id=target, title=title)
            )
        except Exception as exc:
            if error_name(exc) != "TOPIC_NOT_MODIFIED":  # another session renamed it first
                raise
        self.store.complete_topic(self.route_id, source_topic, target, title)
        log.info("renamed target topic %d to %r", target, title, extra={"event": "topic_renamed"})


def _general_as_none(topic_id: int) -> int | None:
    return None if topic_id == GENERAL_TOPIC else topic_id
