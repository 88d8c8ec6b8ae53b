"""Mirror source forum topics into the target, each created once per route whatever the sessions do.

A topic is created under the checkpoint's topic lease; before creating, the holder looks for a target
topic with the same title, so a crash between "created" and "recorded" never makes a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
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
        self._cache: dict[int, int | None] = {}
        self._lock = asyncio.Lock()

    async def target_topic(self, source_topic: int | None) -> int | None:
        """Target topic id for a source topic; None means "no topic" (or General)."""
        if self.fixed is not None:
            return self.fixed
        if source_topic is None or not self.target_is_forum:
            return None
        if source_topic in self._cache:
            return self._cache[source_topic]
        async with self._lock:
            if source_topic not in self._cache:
                self._cache[source_topic] = await self._resolve(source_topic)
        return self._cache[source_topic]

    async def _resolve(self, source_topic: int) -> int | None:
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
            claim = self.store.claim_topic(self.route_id, source_topic, self.session, title, TOPIC_LEASE_SECONDS)
            if claim.state == "mapped" and claim.target_topic_id is not None:
                return _general_as_none(claim.target_topic_id)
            if claim.state == "wait":
                await asyncio.sleep(0.5)
                continue
            target_id = await self._find_by_title(title)
            if target_id is None:
                target_id = await self._create(title, source)
                log.info(
                    "created target topic %r (%d) for source topic %d",
                    title,
                    target_id,
                    source_topic,
                    extra={"event": "topic_created"},
                )
            self.store.complete_topic(self.route_id, source_topic, target_id, title)
            return _general_as_none(target_id)

    async def _source_topic(self, topic_id: int) -> Any | None:
        result = await self.client(
            functions.messages.GetForumTopicsByIDRequest(peer=self.source_peer, topics=[topic_id])
        )
        return next((t for t in result.topics if isinstance(t, types.ForumTopic)), None)

    async def _find_by_title(self, title: str) -> int | None:
        for topic in await all_topics(self.client, self.target_peer):
            if topic.title == title:
                return int(topic.id)
        return None

    async def _create(self, title: str, source: Any | None) -> int:
        result = await self.client(
            functions.messages.CreateForumTopicRequest(
                peer=self.target_peer,
                title=title,
                icon_color=getattr(source, "icon_color", None),
                icon_emoji_id=getattr(source, "icon_emoji_id", None),
                random_id=int.from_bytes(os.urandom(8), "big", signed=True),
            )
        )
        for update in getattr(result, "updates", None) or []:
            message: Any = getattr(update, "message", None)
            if isinstance(getattr(message, "action", None), types.MessageActionTopicCreate):
                return int(message.id)
        raise RuntimeError(f"topic {title!r} created but its id is missing from the result")

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
